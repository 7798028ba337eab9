"""MV-MR's view terms and its whole objective (view terms + provider terms) against their definitions."""
import pytest
import torch
import torch.nn.functional as F

from mvmr.losses import ViewTerms, distance_correlation, invariance_loss, variance_loss, weighted_total
from mvmr.provider_terms import ProviderTerms


def _batch(seed=0, n=16, d=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


def test_invariance_is_mse():
    a, b = _batch()
    assert torch.allclose(invariance_loss(a, b), ((a - b) ** 2).mean())


def test_variance_hinge():
    a, _ = _batch()
    a = a * torch.linspace(0.1, 3.0, a.shape[1])
    std = torch.sqrt(a.var(dim=0) + 1e-4)
    assert torch.allclose(variance_loss(a, margin=1.0), F.relu(1.0 - std).mean())
    assert variance_loss(a * 100.0).item() == 0.0
    with pytest.raises(ValueError):
        variance_loss(a[:1])


def _objective(weights: dict, providers: dict, estimator: str = "biased"):
    """The MV-MR objective as the method composes it: ViewTerms beside ProviderTerms, one weighted total."""
    views = ViewTerms(**weights, estimator=estimator)
    terms = ProviderTerms({n: {"weight": w, "params": {"pixels_per_cell": 4} if n == "hog" else {}}
                           for n, w in providers.items()}, estimator=estimator)

    def objective(z_aug, z, feats):
        rows = {"augmented/projector": z_aug, **{f"provider/{n}": f for n, f in feats.items()}}
        named = {**views(z_aug, z), **terms(rows)}
        return weighted_total(named, {**views.weights, **terms.weights}), named
    return objective


def test_objective_total_is_weighted_sum_and_negative_weights_flip_terms():
    z_aug, z = _batch(1)
    feats = {"pixels": torch.randn(16, 30), "hog": torch.randn(16, 5)}
    obj = _objective({"mse": 2.0, "variance": 0.5, "dcor_views": 1.5}, {"pixels": 1.0, "hog": -1.0})
    total, terms = obj(z_aug, z, feats)
    expected = (2.0 * invariance_loss(z_aug, z) + 0.5 * (variance_loss(z_aug) + variance_loss(z))
                + 1.5 * (1 - distance_correlation(z_aug, z)) + (1 - distance_correlation(z_aug, feats["pixels"]))
                - (1 - distance_correlation(z_aug, feats["hog"])))
    assert set(terms) == {"mse", "variance", "dcor_views", "dcor/pixels", "dcor/hog"}
    assert torch.allclose(total, expected)


def test_objective_zero_weight_terms_are_skipped_and_missing_features_raise():
    z_aug, z = _batch(2)
    obj = _objective({"mse": 1.0, "variance": 0.0, "dcor_views": 0.0}, {"pixels": 1.0, "lsd": 0.0})
    with pytest.raises(ValueError, match="provider/pixels"):
        obj(z_aug, z, {})
    total, terms = obj(z_aug, z, {"pixels": torch.randn(16, 4)})  # lsd (weight 0) reads nothing
    assert set(terms) == {"mse", "dcor/pixels"}


def test_objective_gradient_flows_to_both_views():
    z_aug, z = _batch(3)
    z_aug.requires_grad_(True)
    z.requires_grad_(True)
    obj = _objective({"mse": 1.0, "variance": 1.0, "dcor_views": 1.0}, {"pixels": 1.0}, estimator="unbiased")
    total, _ = obj(z_aug, z, {"pixels": torch.randn(16, 12)})
    total.backward()
    assert z_aug.grad.abs().sum() > 0 and z.grad.abs().sum() > 0
