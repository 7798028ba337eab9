"""ProviderTerms: one implementation of "a student representation against a frozen provider through an objective",
honoured by every method (MV-MR, MIRA, the VICReg plug-in) and by FeatureRegularizer; a step computes only what its
terms read."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import mvmr
from mvmr.config import build_recipe
from mvmr.data import Batch
from mvmr.errors import ConfigError
from mvmr.losses import distance_correlation
from mvmr.methods import build_method

ROOT = Path(__file__).resolve().parent.parent


def _batch(n=6, size=16, seed=0, views=1):
    g = torch.Generator().manual_seed(seed)
    original = torch.rand(n, 3, size, size, generator=g)
    augmented = [torch.rand(n, 3, size, size, generator=g) for _ in range(views)]
    return Batch(original, augmented, torch.zeros(n, dtype=torch.long), torch.arange(n))


def _mira(providers, **mira):
    return build_method(build_recipe({
        "method": "mira", "data": {"image_size": 16}, "student": {"backbone": "resnet18", "projector": "32-8"},
        "providers": providers, "mira": {"prototypes": 5, **mira}})).train()


def test_mira_honours_a_provider_objective_mse_on_backbone_features():
    method = _mira({"pixels": {"weight": 2.0, "objective": "mse", "representation": "backbone",
                               "objective_params": {"hidden": 0}}})
    head = method.provider_terms.heads[0]
    assert isinstance(head.predictor, torch.nn.Linear) and head.predictor.in_features == 512
    assert head.predictor.out_features == 3 * 16 * 16
    batch = _batch(views=2)
    rows = method.encode(batch)
    loss, terms = method.objective(rows, batch, 0.0)
    with torch.no_grad():
        h1 = method.student.embed(batch.views[0])  # cross: the student's first (augmented) view
        expected = F.mse_loss(head.predictor(h1), batch.original.flatten(1))
    assert set(terms) >= {"swapped_ce", "mse/pixels"} and "dcor/pixels" not in terms
    assert torch.allclose(terms["mse/pixels"], expected, atol=1e-6)
    assert torch.allclose(loss, terms["swapped_ce"] + 2.0 * expected, atol=1e-5)


def test_mira_with_view_augmented_reads_the_provider_on_the_augmented_view():
    method = _mira({"pixels": {"view": "augmented"}})
    batch = _batch(views=2)
    rows = method.encode(batch)
    assert torch.equal(rows["provider/pixels"], batch.views[0].flatten(1))
    _, terms = method.objective(rows, batch, 0.0)
    assert torch.allclose(terms["dcor/pixels"], 1 - distance_correlation(rows["z1"], batch.views[0].flatten(1)))
    original = _mira({"pixels": {"view": "original"}})  # the student's original view: embedded for it
    rows = original.encode(batch)
    with torch.no_grad():
        assert torch.allclose(rows["original/projector"], original.student(batch.original), atol=1e-5)


def test_feature_regularizer_takes_the_recipe_spec_and_trains_its_cosine_head():
    torch.manual_seed(0)
    reg = mvmr.FeatureRegularizer({"pixels": {"weight": 1.0, "objective": "cosine",
                                              "objective_params": {"hidden": 0}}}, embedding_dim=12, image_size=8)
    assert set(reg.state_dict()) == {"terms.heads.0.predictor.weight", "terms.heads.0.predictor.bias"}
    images = torch.rand(16, 3, 8, 8)
    z = torch.randn(16, 12)
    opt = torch.optim.Adam(reg.parameters(), lr=0.05)
    before = reg.terms.heads[0].predictor.weight.detach().clone()
    first, terms = reg(images, z)
    assert set(terms) == {"cosine/pixels"}
    for _ in range(30):
        loss, _ = reg(images, z)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(before, reg.terms.heads[0].predictor.weight) and loss < first - 0.1


def test_feature_regularizer_views_cross_and_refuses_original():
    images, original, z = torch.rand(8, 3, 8, 8), torch.rand(8, 3, 8, 8), torch.randn(8, 4)
    cross = mvmr.FeatureRegularizer({"pixels": {"view": "cross"}})
    _, terms = cross(images, z, original=original)
    assert torch.allclose(terms["dcor/pixels"], 1 - distance_correlation(z, original.flatten(1)))
    with pytest.raises(ValueError, match="original view"):
        cross(images, z)
    with pytest.raises(ConfigError, match="view=original.*FeatureRegularizer does not compute"):
        mvmr.FeatureRegularizer({"pixels": {"view": "original"}})
    with pytest.raises(ConfigError, match="embedding_dim"):
        mvmr.FeatureRegularizer({"pixels": {"objective": "mse"}})


def test_the_vicreg_example_has_no_dcor_code_of_its_own():
    source = (ROOT / "examples" / "vicreg_plugin" / "mvmr_example" / "vicreg.py").read_text()
    assert "ProviderTerms" in source
    for own in ("distance_correlation", "dcor/", "gather_with_grad"):
        assert own not in source, own


def test_distill_recipe_never_embeds_the_original_view():
    """cifar10_distill: view terms at 0, the teacher on the augmented view, backbone features: one forward."""
    recipe = build_recipe(mvmr_recipe("cifar10_distill"), [
        "data.name=digits", "data.image_size=32", 'providers={"pixels": {"weight": 1.0, "objective": "mse", '
        '"view": "augmented", "representation": "backbone"}}'])
    method = build_method(recipe).train()
    seen = []
    method.student.backbone.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    batch = _batch(n=4, size=32)
    normalised = {}
    method.student.backbone.register_forward_pre_hook(lambda m, inputs: normalised.setdefault("x", inputs[0]))
    rows = method.encode(batch)
    assert len(seen) == 1 and set(rows) == {"augmented/backbone", "provider/pixels"}
    expected = (batch.views[0] - method.student.mean) / method.student.std
    assert torch.allclose(normalised["x"], expected)  # the one forward was the augmented view
    loss, terms = method.objective(rows, batch, 0.0)
    assert set(terms) == {"mse/pixels"} and torch.isfinite(loss)


def mvmr_recipe(name: str) -> dict:
    from mvmr.recipe_files import read_recipe_tree, resolve_recipe

    return read_recipe_tree(resolve_recipe(name))


def test_mvmr_embeds_both_views_when_its_view_terms_are_on():
    method = build_method(build_recipe({"data": {"image_size": 16}, "providers": {"pixels": {}},
                                        "student": {"backbone": "resnet18", "projector": "16-8"}})).train()
    calls = []
    method.student.backbone.register_forward_hook(lambda *args: calls.append(1))
    rows = method.encode(_batch())
    assert len(calls) == 2 and {"augmented/projector", "original/projector", "provider/pixels"} <= set(rows)


def test_a_method_that_ignores_the_providers_is_refused():
    class Plain(mvmr.Method):
        def __init__(self, recipe):
            super().__init__(recipe)
            self.student = mvmr.Student("resnet18", projector="8")

        def training_step(self, batch, progress):
            z = self.student(batch.views[0])
            return z.pow(2).mean(), {}

    from mvmr.registry import methods

    methods.register("t_plain_ignores", Plain)
    try:
        with pytest.raises(ConfigError, match="does not use providers"):
            build_method(build_recipe({"method": "t_plain_ignores", "providers": {"pixels": {}}}))
        build_method(build_recipe({"method": "t_plain_ignores"}))  # without providers it is fine
    finally:
        methods.unregister("t_plain_ignores")


def test_provider_terms_gather_flag_and_zero_weights_skip_the_provider():
    calls = []
    terms = mvmr.ProviderTerms({"pixels": 1.0, "lsd": 0.0})
    terms.providers["lsd"].extract = lambda images: calls.append(1)
    images = {"original": torch.rand(4, 3, 8, 8), "augmented": torch.rand(4, 3, 8, 8)}
    rows = terms.features(images)
    assert calls == [] and set(rows) == {"provider/pixels"}
    rows["augmented/projector"] = torch.randn(4, 5)
    assert set(terms(rows, gather=True)) == {"dcor/pixels"}  # gather is a no-op in one process
