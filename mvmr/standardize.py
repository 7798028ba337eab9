"""How a provider's features are rescaled before the objective, so that every dimension (and, with several teachers,
every teacher) weighs alike: ``layernorm``, ``dimension`` and ``phis`` (RADIO's PHI-S)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError


def _paley(q: int) -> torch.Tensor:
    """Paley's construction I: a Hadamard matrix of order q + 1 from the quadratic residues of a prime q = 3 mod 4."""
    squares = {(i * i) % q for i in range(1, q)}
    chi = torch.tensor([0] + [1 if a in squares else -1 for a in range(1, q)], dtype=torch.float64)
    jacobsthal = torch.stack([chi[(torch.arange(q) - i) % q] for i in range(q)])  # Q[i, j] = chi(j - i)
    s = torch.zeros(q + 1, q + 1, dtype=torch.float64)
    s[0, 1:], s[1:, 0], s[1:, 1:] = 1.0, -1.0, jacobsthal
    return s + torch.eye(q + 1, dtype=torch.float64)


def hadamard(n: int) -> torch.Tensor:
    """An orthonormal n x n matrix whose entries are all ±1/√n, for n = 2^k, 12·2^k or 20·2^k (Sylvester's doubling
    of 1, or of Paley's orders 12 and 20): the widths of common teachers (512, 768, 1024, 1280, 1536)."""
    for base, q in ((1, None), (12, 11), (20, 19)):
        k = n // base
        if n % base == 0 and k > 0 and k & (k - 1) == 0:
            h = torch.ones(1, 1, dtype=torch.float64) if q is None else _paley(q)
            while len(h) < n:
                h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
            return h / n ** 0.5
    raise ConfigError(f"standardize: phis rotates the features with a Hadamard matrix, which exists here for widths "
                      f"2^k, 12·2^k and 20·2^k; this provider gives {n}; use standardize: dimension or layernorm")


class Standardize(nn.Module):
    """A provider's features rescaled before the objective: ``layernorm`` (each row to zero mean, unit variance:
    FD's non-affine LayerNorm), ``dimension`` (each dimension to zero mean, unit variance over every training row
    seen so far) or ``phis`` (PHI-S, Ranzinger et al. 2024, RADIO: the centred features rotated into their principal
    axes, then by a Hadamard matrix, which spreads the variance evenly over the dimensions, and divided by one
    scalar, so every dimension has unit variance and the teacher's total variance is its width). ``dimension`` and
    ``phis`` keep running float64 sums of the global batches, checkpointed; a frozen teacher's statistics do not
    drift, so the estimate only sharpens. ``phis`` re-derives its rotation (an eigendecomposition) each time the
    rows seen have doubled, so a run pays O(log rows) of them."""

    def __init__(self, mode: str, dim: int) -> None:
        super().__init__()
        self.mode = mode
        if mode == "dimension":
            self.register_buffer("moments", torch.zeros(3, dim, dtype=torch.float64))  # count, Σx, Σx²
        if mode == "phis":
            self.register_buffer("hadamard", hadamard(dim), persistent=False)  # rebuilt, never checkpointed
            self.register_buffer("sums", torch.zeros(dim + 1, dim + 1, dtype=torch.float64))  # [1, x]ᵀ[1, x] summed
            self.register_buffer("mean", torch.zeros(dim))
            self.register_buffer("rotation", torch.eye(dim))  # features -> standardised: (x - mean) @ rotation
            self.register_buffer("derived_at", torch.zeros((), dtype=torch.float64))  # the row count it is from

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return t
        if self.mode == "layernorm":
            return F.layer_norm(t.float(), t.shape[-1:], eps=1e-6)
        if self.mode == "phis":
            return self._phis(t)
        x = t.detach().double()
        if self.training or not self.moments[0, 0]:
            self.moments += torch.stack([torch.full_like(x[0], len(x)), x.sum(0), x.pow(2).sum(0)])
        count, total, squares = self.moments
        mean = total / count
        std = (squares / count - mean.pow(2)).clamp_min(0).add(1e-6).sqrt()
        return ((t.double() - mean) / std).float()

    def _phis(self, t: torch.Tensor) -> torch.Tensor:
        if self.training or not self.sums[0, 0]:
            x = F.pad(t.detach().double(), (1, 0), value=1.0)
            self.sums += x.T @ x
            if self.sums[0, 0] >= 2 * self.derived_at:
                self._derive()
        return (t.float() - self.mean) @ self.rotation

    @torch.no_grad()
    def _derive(self) -> None:
        """mean, and rotation = U Hᵀ / α (Σ = U Λ Uᵀ, α² = mean(Λ): each dimension's variance after H)."""
        count = self.sums[0, 0]
        mean = self.sums[0, 1:] / count
        cov = self.sums[1:, 1:] / count - torch.outer(mean, mean)
        eigenvalues, u = torch.linalg.eigh((cov + cov.T) / 2)
        alpha = eigenvalues.clamp_min(0).mean().add(1e-12).sqrt()
        self.mean.copy_(mean)
        self.rotation.copy_(u @ self.hadamard.T / alpha)
        self.derived_at.copy_(count)
