"""MV-MR's view terms: invariance (MSE), variance hinge and distance correlation between two embeddings, and the
weighted total of named terms.

    L = λ_mse·MSE(z̃, z) + λ_var·(hinge_std(z̃) + hinge_std(z)) + λ_zz·(1 − dCor(z̃, z)) + Σ_k w_k·(1 − dCor(z̃, f_k(x)))

The sum over providers k is ``mvmr.ProviderTerms``. The paper *maximises* dependence with every representation
(terms 1 − dCor); a negative weight w_k minimises dCor instead, which is what the official SSL code does for its
hand-crafted representations.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .dcor import distance_correlation


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


class ViewTerms(nn.Module):
    """MV-MR's terms between two embeddings of the same images: ``forward(z_a, z_b)`` returns the unweighted
    ``mse``, ``variance`` (hinge on both) and ``dcor_views`` (1 − dCor) that have a non-zero weight in
    ``weights``. The provider terms (1 − dCor to f_k(x), or any objective) are ``mvmr.ProviderTerms``."""

    def __init__(self, mse: float = 1.0, variance: float = 1.0, dcor_views: float = 1.0, std_margin: float = 1.0,
                 estimator: str = "biased") -> None:
        super().__init__()
        self.weights = {"mse": mse, "variance": variance, "dcor_views": dcor_views}
        self.std_margin = std_margin
        self.estimator = estimator

    @property
    def active(self) -> bool:
        """True when some term has a non-zero weight (else a method need not embed the second view for them)."""
        return any(self.weights.values())

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        w = self.weights
        if w["mse"]:
            terms["mse"] = invariance_loss(z_a, z_b)
        if w["variance"]:
            terms["variance"] = variance_loss(z_a, self.std_margin) + variance_loss(z_b, self.std_margin)
        if w["dcor_views"]:
            terms["dcor_views"] = 1.0 - distance_correlation(z_a, z_b, self.estimator)
        return terms
