"""MV-MR objective terms: invariance (MSE), variance hinge, and distance-correlation dependence terms.

    L = λ_mse·MSE(z̃, z) + λ_var·(hinge_std(z̃) + hinge_std(z)) + λ_zz·(1 − dCor(z̃, z)) + Σ_k w_k·(1 − dCor(z̃, f_k(x)))

The paper *maximises* dependence with every representation (terms 1 − dCor). A negative weight w_k turns a term
into a minimisation of dCor, which is what the official SSL code does for its hand-crafted representations.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .dcor import ESTIMATORS, distance_correlation


def invariance_loss(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """Mean squared error between two embeddings of the same images."""
    return F.mse_loss(z_a.float(), z_b.float())


def variance_loss(z: torch.Tensor, margin: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Hinge on the per-dimension standard deviation over the batch: mean(relu(margin − sqrt(var + eps)))."""
    if z.shape[0] < 2:
        raise ValueError(f"variance_loss needs a batch of at least 2 samples, got {z.shape[0]}")
    std = torch.sqrt(z.float().var(dim=0) + eps)
    return F.relu(margin - std).mean()


def weighted_total(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """Σ weight·term over the terms that have a non-zero weight."""
    parts = [weights[k] * v for k, v in terms.items() if weights.get(k, 0.0) != 0.0]
    if not parts:
        raise ValueError("the objective has no term with a non-zero weight")
    return torch.stack(parts).sum()


class MVMRObjective(nn.Module):
    """Named, weighted MV-MR terms. ``forward`` returns the total loss and every term's (unweighted) value.

    Provider terms are named ``dcor/<provider>``; their weights come from ``providers`` (name -> weight, may be
    negative to minimise the dependence instead, as the official SSL code does).
    """

    def __init__(self, mse: float = 1.0, variance: float = 1.0, dcor_views: float = 1.0,
                 providers: Optional[Mapping[str, float]] = None, std_margin: float = 1.0,
                 estimator: str = "biased") -> None:
        super().__init__()
        if estimator not in ESTIMATORS:
            raise ValueError(f"dcor estimator '{estimator}' is unknown; use one of {', '.join(ESTIMATORS)}")
        self.weights = {"mse": mse, "variance": variance, "dcor_views": dcor_views}
        self.weights.update({f"dcor/{name}": w for name, w in (providers or {}).items()})
        self.std_margin = std_margin
        self.estimator = estimator

    def view_terms(self, z_aug: torch.Tensor, z_orig: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted terms between the two embeddings that have a non-zero weight."""
        terms: dict[str, torch.Tensor] = {}
        w = self.weights
        if w["mse"]:
            terms["mse"] = invariance_loss(z_aug, z_orig)
        if w["variance"]:
            terms["variance"] = variance_loss(z_aug, self.std_margin) + variance_loss(z_orig, self.std_margin)
        if w["dcor_views"]:
            terms["dcor_views"] = 1.0 - distance_correlation(z_aug, z_orig, self.estimator)
        return terms

    def forward(self, z_aug: torch.Tensor, z_orig: torch.Tensor,
                features: Optional[Mapping[str, torch.Tensor]] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        w = self.weights
        terms = self.view_terms(z_aug, z_orig)
        for name, feats in (features or {}).items():
            key = f"dcor/{name}"
            if key not in w:
                raise KeyError(f"features for '{name}' were given but the objective has no weight for it")
            if w[key]:
                terms[key] = 1.0 - distance_correlation(z_aug, feats, self.estimator)
        missing = [k for k in w if k.startswith("dcor/") and w[k] and k not in terms]
        if missing:
            raise KeyError(f"the objective expects features for {', '.join(m[5:] for m in missing)}")
        return weighted_total(terms, w), terms
