"""Label-free distillation objectives: a student representation s (B, Ds) against a frozen teacher's t (B, Dt).

Each is an ``nn.Module`` built as ``Objective(student_dim, teacher_dim, **params)`` and called ``obj(s, t) ->
loss`` (lower is better), registered by name in ``mvmr.registry.objectives`` (entry-point group
``mvmr.objectives``) and chosen per provider in a recipe: ``providers: {NAME: {weight: 1, objective: cosine}}``.

- ``dcor``: MV-MR's 1 − dCor(s, t) (biased dCor, or the bias-corrected dCor² with ``estimator: unbiased``).
- ``cosine`` / ``mse``: feature regression through a learned predictor head (FitNets; feature distillation).
- ``cos_smoothl1``: AM-RADIO's / PHI-S's summary loss, cosine plus smooth-L1 through an adaptor (by default
  RADIO's Linear → LayerNorm → GELU → Linear).
- ``rkd``: relational KD (Park et al. 2019): pairwise distances (normalised by their mean) and angles of triplets.
- ``sp``: similarity-preserving KD (Tung & Mori 2019): row-normalised Gram matrices of the batch.
- ``seed``: SEED / DisCo-style similarity distillation (Fang et al. 2021): the student matches the teacher's
  softmax similarity distribution over the batch and a queue of past teacher features.
- ``crd``: contrastive representation distillation (Tian et al. 2020) with the batch's negatives: the student's
  embedding of each image must pick out the teacher's embedding of that image among the batch's (InfoNCE).
- ``kd``: Hinton et al.'s soft targets: KL(softmax(t/T) ‖ softmax(head(s)/T))·T² through a linear head, for a
  teacher read as class logits (``params: {output: logits}`` of a ``torchvision:`` or ``timm:`` classifier).
Objectives with state (predictors, the queue) are checkpointed with the method. The regression objectives
(``per_location = True``) also take dense features: ``ProviderTerms`` hands them one row per location of the
teacher's grid (``representation: spatial``), so their adaptor is a per-location MLP (a 1×1 convolution).
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


ADAPTORS = ("bn", "radio", "identity")


def predictor(in_dim: int, out_dim: int, hidden: int = 0, adaptor: str = "bn") -> nn.Module:
    """Linear with ``hidden`` = 0; else Linear → BN → ReLU → Linear (``bn``, the SimSiam/BYOL predictor) or
    Linear → LayerNorm → GELU → Linear (``radio``, AM-RADIO's per-teacher adaptor): maps the student's space onto the
    teacher's. ``identity``: no head, for a student already in the teacher's space (a fine-tuning tied to the
    features of the model it started from, as DELTA does), so the term is 0 at the start."""
    if adaptor not in ADAPTORS:
        raise ValueError(f"adaptor must be one of {', '.join(ADAPTORS)}, got {adaptor!r}")
    if adaptor == "identity":
        if in_dim != out_dim:
            raise ValueError(f"adaptor 'identity' needs the student's width to equal the teacher's, got {in_dim} "
                             f"and {out_dim}; use adaptor: radio or bn")
        return nn.Identity()
    if hidden <= 0:
        return nn.Linear(in_dim, out_dim)
    norm, act = (nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)) if adaptor == "bn" else (nn.LayerNorm(hidden), nn.GELU())
    return nn.Sequential(nn.Linear(in_dim, hidden), norm, act, nn.Linear(hidden, out_dim))


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

    per_location = True

    def __init__(self, student_dim: int, teacher_dim: int, hidden: int = 2048, adaptor: str = "bn") -> None:
        super().__init__()
        self.predictor = predictor(student_dim, teacher_dim, hidden, adaptor)

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - F.cosine_similarity(self.predictor(s).float(), t.float(), dim=1).mean()


@objectives.register("mse")
class MSERegression(nn.Module):
    """Mean squared error between predictor(s) and t (FitNets' hint loss on pooled features)."""

    per_location = True

    def __init__(self, student_dim: int, teacher_dim: int, hidden: int = 2048, adaptor: str = "bn") -> None:
        super().__init__()
        self.predictor = predictor(student_dim, teacher_dim, hidden, adaptor)

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.predictor(s).float(), t.float())


@objectives.register("cos_smoothl1")
class CosineSmoothL1(nn.Module):
    """``cosine`` · (1 − cos(a(s), t)) + ``smooth_l1`` · SmoothL1_β(a(s), t), averaged over the batch (and the
    teacher's dimensions for smooth-L1): AM-RADIO's summary/feature loss, its adaptor ``a`` Linear → LayerNorm →
    GELU → Linear. The cosine aligns directions; smooth-L1 also matches the teacher's scale, robust to outliers."""

    per_location = True

    def __init__(self, student_dim: int, teacher_dim: int, hidden: int = 2048, adaptor: str = "radio",
                 cosine: float = 1.0, smooth_l1: float = 1.0, beta: float = 1.0) -> None:
        super().__init__()
        if cosine < 0 or smooth_l1 < 0 or cosine + smooth_l1 == 0 or beta <= 0:
            raise ValueError(f"cosine and smooth_l1 must be ≥ 0 and not both 0, beta > 0; got cosine={cosine}, "
                             f"smooth_l1={smooth_l1}, beta={beta}")
        self.predictor = predictor(student_dim, teacher_dim, hidden, adaptor)
        self.cosine, self.smooth_l1, self.beta = cosine, smooth_l1, beta

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        p, t = self.predictor(s).float(), t.float()
        loss = self.cosine * (1.0 - F.cosine_similarity(p, t, dim=1).mean())
        return loss + self.smooth_l1 * F.smooth_l1_loss(p, t, beta=self.beta)


@objectives.register("kd")
class SoftTargetKD(nn.Module):
    """KL(softmax(t/T) ‖ softmax(head(s)/T)) · T², averaged over the batch (Hinton et al. 2015): the student's
    features, through a linear head (``hidden`` > 0: an MLP, as ``predictor``), predict the teacher's class
    posterior at temperature T. The T² keeps the gradient's scale independent of T."""

    def __init__(self, student_dim: int, teacher_dim: int, temperature: float = 4.0, hidden: int = 0,
                 adaptor: str = "bn") -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.head = predictor(student_dim, teacher_dim, hidden, adaptor)
        self.temperature = temperature

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        T = self.temperature
        log_p = F.log_softmax(self.head(s).float() / T, dim=1)
        return F.kl_div(log_p, F.log_softmax(t.float() / T, dim=1), reduction="batchmean", log_target=True) * T * T


@objectives.register("crd")
class ContrastiveKD(nn.Module):
    """CRD (Tian et al. 2020), its negatives the other images of the batch (the global batch under DDP) instead of
    its memory bank: s and t through linear embeddings to ``dim`` (the student's an MLP with ``hidden`` > 0),
    L2-normalised, and the InfoNCE of each student row against the teacher rows and of each teacher row against
    the student rows, averaged, at ``temperature``. Where the regression objectives ask for the teacher's
    coordinates, this asks that each image's nearest teacher neighbour be its own, the geometry k-NN reads."""

    def __init__(self, student_dim: int, teacher_dim: int, dim: int = 128, temperature: float = 0.07,
                 hidden: int = 0) -> None:
        super().__init__()
        if dim <= 0 or temperature <= 0:
            raise ValueError(f"dim and temperature must be > 0, got dim={dim}, temperature={temperature}")
        self.student_embed = predictor(student_dim, dim, hidden)
        self.teacher_embed = nn.Linear(teacher_dim, dim)
        self.temperature = temperature

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        zs = F.normalize(self.student_embed(s).float(), dim=1)
        zt = F.normalize(self.teacher_embed(t.float()), dim=1)
        logits = zs @ zt.T / self.temperature
        own = torch.arange(len(s), device=s.device)
        return 0.5 * (F.cross_entropy(logits, own) + F.cross_entropy(logits.T, own))


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
        if distance_weight < 0 or angle_weight < 0 or distance_weight + angle_weight == 0:
            raise ValueError(f"distance_weight and angle_weight must be ≥ 0 and not both 0 (the term would always be "
                             f"0), got distance_weight={distance_weight}, angle_weight={angle_weight}")
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
