"""Label-free distillation objectives: a student representation s (B, Ds) against a frozen teacher's t (B, Dt).

Each is an ``nn.Module`` built as ``Objective(student_dim, teacher_dim, **params)`` and called ``obj(s, t) ->
loss`` (lower is better), registered by name in ``mvmr.registry.objectives`` (entry-point group
``mvmr.objectives``) and chosen per provider in a recipe: ``providers: {NAME: {weight: 1, objective: cosine}}``.

- ``dcor``: MV-MR's 1 − dCor(s, t) (biased dCor, or the bias-corrected dCor² with ``estimator: unbiased``).
- ``cosine`` / ``mse``: feature regression through a learned predictor head (FitNets; feature distillation).
- ``rkd``: relational KD (Park et al. 2019): pairwise distances (normalised by their mean) and angles of triplets.
- ``sp``: similarity-preserving KD (Tung & Mori 2019): row-normalised Gram matrices of the batch.
- ``seed``: SEED / DisCo-style similarity distillation (Fang et al. 2021): the student matches the teacher's
  softmax similarity distribution over the batch and a queue of past teacher features.
Objectives with state (predictors, the queue) are checkpointed with the method.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import objectives
from .dcor import _distances, distance_correlation


def build_objective(provider: str, name: str, student_dim: int, teacher_dim: int, params: dict) -> nn.Module:
    """The registered objective ``name`` for one provider term; a parameter it does not take or a bad value is
    one line naming ``providers.<provider>.objective_params``."""
    from ..errors import ConfigError, ProviderParamError
    from ..registry import check_params

    cls = objectives.get(name)
    where = f"providers.{provider}.objective_params"
    try:
        check_params(f"objective '{name}' ({where})", cls, params, skip=2)
        return cls(student_dim, teacher_dim, **params)
    except ProviderParamError as exc:
        raise ConfigError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: objective '{name}': {exc}") from None


def predictor(in_dim: int, out_dim: int, hidden: int = 0) -> nn.Module:
    """Linear, or Linear-BN-ReLU-Linear with ``hidden`` > 0: maps the student's space onto the teacher's."""
    if hidden <= 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim))


@objectives.register("dcor")
class DCorObjective(nn.Module):
    """1 − dCor(s, t): dimensions may differ, nothing is learned."""

    def __init__(self, student_dim: int, teacher_dim: int, estimator: str = "biased") -> None:
        super().__init__()
        self.estimator = estimator

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - distance_correlation(s, t, self.estimator)


@objectives.register("cosine")
class CosineRegression(nn.Module):
    """1 − cos(predictor(s), t), averaged over the batch."""

    def __init__(self, student_dim: int, teacher_dim: int, hidden: int = 2048) -> None:
        super().__init__()
        self.predictor = predictor(student_dim, teacher_dim, hidden)

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - F.cosine_similarity(self.predictor(s).float(), t.float(), dim=1).mean()


@objectives.register("mse")
class MSERegression(nn.Module):
    """Mean squared error between predictor(s) and t (FitNets' hint loss on pooled features)."""

    def __init__(self, student_dim: int, teacher_dim: int, hidden: int = 2048) -> None:
        super().__init__()
        self.predictor = predictor(student_dim, teacher_dim, hidden)

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.predictor(s).float(), t.float())


def rkd_distance(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Huber loss between the pairwise distances of s and of t, each divided by its mean over distinct pairs."""
    def normalised(x):
        d = _distances(x)  # zero diagonal, finite gradient at coincident points
        n = x.shape[0]
        return d / (d.sum() / max(n * (n - 1), 1)).clamp_min(1e-12)
    return F.smooth_l1_loss(normalised(s.float()), normalised(t.float()))


def rkd_angle(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Huber loss between the cosines of the angles ∠(x_j − x_i, x_k − x_i) over all triplets."""
    def angles(x):
        diff = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), dim=2)  # (i, j): unit vector from i to j
        return torch.bmm(diff, diff.transpose(1, 2)).flatten()
    return F.smooth_l1_loss(angles(s.float()), angles(t.float()))


@objectives.register("rkd")
class RKD(nn.Module):
    """distance_weight · RKD-D + angle_weight · RKD-A (the paper's 25 and 50, divided by 25)."""

    def __init__(self, student_dim: int, teacher_dim: int, distance_weight: float = 1.0,
                 angle_weight: float = 2.0) -> None:
        super().__init__()
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.distance_weight * rkd_distance(s, t) + self.angle_weight * rkd_angle(s, t)


@objectives.register("sp")
class SimilarityPreserving(nn.Module):
    """‖normalize_rows(s sᵀ) − normalize_rows(t tᵀ)‖²_F / B²."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        gs = F.normalize(s.float() @ s.float().T, dim=1)
        gt = F.normalize(t.float() @ t.float().T, dim=1)
        return (gs - gt).pow(2).sum() / s.shape[0] ** 2


@objectives.register("seed")
class SEED(nn.Module):
    """Cross-entropy between the teacher's and the student's softmax similarities of each image to the batch's
    teacher features and a queue of earlier ones (L2-normalised; the student through a learned predictor)."""

    def __init__(self, student_dim: int, teacher_dim: int, queue: int = 4096, tau_student: float = 0.2,
                 tau_teacher: float = 0.07, hidden: int = 0) -> None:
        super().__init__()
        if queue < 0 or tau_student <= 0 or tau_teacher <= 0:
            raise ValueError(f"queue must be ≥ 0 and the temperatures > 0, got queue={queue}, "
                             f"tau_student={tau_student}, tau_teacher={tau_teacher}")
        self.predictor = predictor(student_dim, teacher_dim, hidden)
        self.tau_student, self.tau_teacher = tau_student, tau_teacher
        self.register_buffer("queue", torch.zeros(queue, teacher_dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = F.normalize(self.predictor(s).float(), dim=1)
        t = F.normalize(t.float(), dim=1)
        bank = torch.cat([t, self.queue[: int(self.filled)]])
        target = F.softmax(t @ bank.T / self.tau_teacher, dim=1)
        loss = -(target * F.log_softmax(s @ bank.T / self.tau_student, dim=1)).sum(1).mean()
        if self.training:
            self._enqueue(t.detach())
        return loss

    @torch.no_grad()
    def _enqueue(self, t: torch.Tensor) -> None:
        k = min(len(t), len(self.queue))
        self.queue = torch.cat([t[:k], self.queue[: len(self.queue) - k]])
        self.filled.fill_(min(int(self.filled) + k, len(self.queue)))
