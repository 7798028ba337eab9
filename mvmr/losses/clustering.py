"""Pseudo-labels for clustering heads: MIRA's mutual-information-regularised assignment and Sinkhorn-Knopp
equipartition (SeLa / SwAV), plus the swapped-prediction cross-entropy. Marginals are global-batch statistics.

MIRA (Lee et al.) solves  min_W  mean_i KL(w_i ‖ p_i) − β·[H(w̄) − mean_i H(w_i)],  p = softmax(s/τ); for
0 < β < 1 it is strictly convex and its optimum satisfies  w_ik ∝ p_ik^{1/(1−β)} · w̄_k^{−β/(1−β)},  reached by the
fixed-point iteration on v = w̄ below (computed in the log domain: no overflow at small marginals).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..distributed import all_reduce_sum, global_logsumexp


def _float(x: torch.Tensor) -> torch.Tensor:
    """float32, or float64 when given float64."""
    return x if x.dtype == torch.float64 else x.float()


def _sum(x: torch.Tensor, distributed: bool) -> torch.Tensor:
    return all_reduce_sum(x) if distributed else x


def _logsumexp0(x: torch.Tensor, distributed: bool) -> torch.Tensor:
    return global_logsumexp(x, dim=0) if distributed else torch.logsumexp(x, dim=0, keepdim=True)


@torch.no_grad()
def mira_assign(logits: torch.Tensor, tau: float = 0.225, beta: float = 0.75, iters: int = 30,
                distributed: bool = False, prior: Optional[torch.Tensor] = None,
                prior_weight: float = 0.0) -> torch.Tensor:
    """MIRA pseudo-labels (B, K) for logits (B, K); rows sum to 1. Needs 0 < beta < 1. With ``distributed`` the
    marginal is taken over the global batch (all processes' rows). With a ``prior`` (K,) marginal, the marginal
    the fixed point penalises is prior_weight·prior + (1 − prior_weight)·w̄ (``mira.marginal: ema``: a running
    estimate beside the batch's, DINO's centring by analogy); prior_weight 0 is the plain batch marginal."""
    if not 0.0 < beta < 1.0:
        raise ValueError(f"mira beta must be in (0, 1), got {beta}")
    logits = _float(logits)
    n = float(_sum(torch.tensor(float(logits.shape[0]), device=logits.device), distributed))
    c = beta / (1.0 - beta)

    log_k = F.log_softmax(logits / (tau * (1.0 - beta)), dim=1)
    # v is w̄ at the fixed point; each update is v ← w̃(v)^{1−β} · v^β with w̃ the penalised marginal (the batch's
    # w̄ = mean · v^{−c}: the official iteration v ← mean^{1−β}), from v = 1
    def update(mean: torch.Tensor, log_v: torch.Tensor) -> torch.Tensor:
        if prior is None or prior_weight == 0:
            return (1.0 - beta) * torch.log(mean)
        mixed = prior_weight * prior.to(mean) + (1.0 - prior_weight) * mean * torch.exp(-c * log_v)
        return (1.0 - beta) * torch.log(mixed) + beta * log_v

    log_v = update(_sum(log_k.exp().sum(0), distributed) / n, torch.zeros_like(log_k[0]))
    for _ in range(iters):
        log_den = torch.logsumexp(log_k - c * log_v, dim=1, keepdim=True)
        log_v = update(_sum((log_k - log_den).exp().sum(0), distributed) / n, log_v)
    return F.softmax(log_k - c * log_v, dim=1)


@torch.no_grad()
def sinkhorn_assign(logits: torch.Tensor, eps: float = 0.05, iters: int = 3, distributed: bool = False) -> torch.Tensor:
    """SwAV's Sinkhorn-Knopp in the log domain: alternately equalise cluster mass (1/K each) and sample mass
    (1/B each) starting from exp(logits/eps); returns (B, K) with rows summing to 1. With ``distributed`` the
    column sums run over the global batch."""
    log_q = _float(logits) / eps
    b, k = log_q.shape
    n = float(_sum(torch.tensor(float(b), device=log_q.device), distributed))
    log_q = log_q - _logsumexp0(torch.logsumexp(log_q, dim=1, keepdim=True), distributed)
    for _ in range(iters):
        log_q = log_q - _logsumexp0(log_q, distributed) - math.log(k)  # each cluster gets 1/K of the mass
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(n)  # each sample 1/B
    return (log_q + math.log(n)).exp()


def swapped_cross_entropy(targets: list[torch.Tensor], logits: list[torch.Tensor], tau: float,
                          own: bool = False) -> torch.Tensor:
    """Mean over view pairs (i ≠ j; with ``own`` also i = j) of −Σ_k q_i · log softmax(logits_j / tau)."""
    losses = []
    for i, q in enumerate(targets):
        for j, s in enumerate(logits):
            if i != j or own:
                losses.append(-(q * F.log_softmax(s.float() / tau, dim=1)).sum(1).mean())
    return torch.stack(losses).mean()


def mira_objective(w: torch.Tensor, logits: torch.Tensor, tau: float, beta: float) -> torch.Tensor:
    """MIRA's objective F(W) = mean_i KL(w_i ‖ p_i) − β·[H(w̄) − mean_i H(w_i)] (for tests and diagnostics)."""
    log_p = F.log_softmax(logits.double() / tau, dim=1)
    w = w.double()
    xlogx = torch.where(w > 0, w * torch.log(w.clamp_min(1e-300)), torch.zeros_like(w))
    kl = (xlogx - w * log_p).sum(1).mean()
    w_bar = w.mean(0)
    h_bar = -(torch.where(w_bar > 0, w_bar * torch.log(w_bar.clamp_min(1e-300)), torch.zeros_like(w_bar))).sum()
    h_mean = -xlogx.sum(1).mean()
    return kl - beta * (h_bar - h_mean)
