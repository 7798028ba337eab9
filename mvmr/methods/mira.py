"""The ``mira`` method: a clustering head on the student, trained by swapped prediction of pseudo-labels from an
EMA teacher, assigned by MIRA (mutual-information-regularised) or by Sinkhorn-Knopp (SeLa/SwAV), everything else
equal. Optional hybrid: the recipe's providers add MV-MR dCor terms on the student's embedding of an augmented view,
and ``mira.mse / variance / dcor_views`` add MV-MR's terms between the two views' embeddings (at small scale these
do the learning: docs/studies/mira.md).
"""
from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from ..config import Recipe
from ..data import AugmentSpec, Batch, augment_spec
from ..errors import ConfigError
from ..distributed import all_reduce_sum, gather_rows, gather_with_grad, is_distributed, is_main
from ..losses import ViewTerms, mira_assign, sinkhorn_assign, swapped_cross_entropy, weighted_total
from ..models import Student
from ..provider_terms import ProviderTerms, StudentRows
from ..registry import methods
from .base import Method
from .mvmr import ViewTermsConfig

# Marginals are global-batch statistics: the assigners reduce across processes when told to.
# ``prior``: the running marginal of mira.marginal=ema (MIRA only; None: the batch's).
ASSIGNERS = {
    "mira": lambda logits, cfg, beta, prior: mira_assign(logits, cfg.tau_teacher, beta, cfg.iters,
                                                         distributed=is_distributed(), prior=prior,
                                                         prior_weight=cfg.marginal_momentum),
    "sinkhorn": lambda logits, cfg, beta, prior: sinkhorn_assign(logits, cfg.sinkhorn_eps, cfg.sinkhorn_iters,
                                                                 distributed=is_distributed()),
}


class MiraConfig(ViewTermsConfig):
    """The recipe's ``mira`` section (defaults: the official MIRA code). The projector is ``student.projector``.
    ``mse``, ``variance``, ``dcor_views`` (MV-MR's terms between the two global views), ``std_margin`` and
    ``dcor_estimator`` come from ``ViewTermsConfig``; the hybrid terms are off by default (the plain method)."""

    assigner: Literal["mira", "sinkhorn"] = Field("mira", description="how targets are assigned: MIRA's fixed "
                                                  "point, or Sinkhorn-Knopp (SeLa, SwAV)")
    prototypes: int = Field(3000, ge=2, description="K, the number of clusters")
    tau_student: float = Field(0.1, gt=0, description="temperature of the student's predictions")
    tau_teacher: float = Field(0.225, gt=0, description="temperature of the EMA teacher's logits")
    beta: tuple[float, float] = Field((0.75, 2 / 3), description="MIRA's trade-off between fidelity and the "
                                      "marginal's entropy, cosine from start to end")
    iters: int = Field(30, ge=1, description="fixed-point iterations of MIRA's assignment")
    sinkhorn_eps: float = Field(0.05, gt=0, description="Sinkhorn's entropic regularisation")
    sinkhorn_iters: int = Field(3, ge=1, description="Sinkhorn-Knopp iterations")
    ema: tuple[float, float] = Field((0.99, 1.0), description="the EMA teacher's momentum, cosine from start to end")
    views: Literal["official", "recipe"] = Field(
        "official", description="official: MIRA's asymmetric global views; recipe: data.augment for both")
    bottleneck: int = Field(0, ge=0, description="0: prototypes on the projector output (official); n: a Linear "
                            "+ BatchNorm to n dims first (DINO-style head), so hybrid terms keep the wide embedding")
    targets: Literal["swapped", "all"] = Field(
        "swapped", description="swapped: each view predicts the other views' targets (official); all: its own too")
    local_crops: int = Field(0, ge=0, description="multi-crop: small crops predicting both global views' targets")
    queue: int = Field(0, ge=0, description="SwAV's queue: this many past teacher embeddings per global view join "
                       "the batch when assigning (their rows only shape the marginal; 0: off, the official MIRA)")
    queue_start_epoch: float = Field(0, ge=0, description="the queue fills from the first step and takes part in "
                                     "assignments from this epoch on")
    marginal: Literal["batch", "ema"] = Field(
        "batch", description="the marginal MIRA's assignment regularises: the (global) batch's, official; ema: "
        "marginal_momentum·(running mean of past marginals) + (1 − marginal_momentum)·the batch's")
    marginal_momentum: float = Field(0.9, ge=0, lt=1, description="momentum of the running marginal (marginal: ema)")
    local_size: Optional[int] = Field(None, ge=8, description="side of the local crops; default image_size·96/224")
    freeze_prototypes_epochs: float = Field(1, ge=0, description="prototypes get no update for this many epochs")
    prototype_init: Literal["random", "data"] = Field(
        "random", description="random: unit Gaussian directions (official); data: the teacher's embeddings of "
        "random images of the first global batch (of its first micro-batch under optim.accumulate), so the first "
        "targets already group similar images")
    # Hybrid MV-MR terms between the two global views' embeddings: they shape the features from the first step,
    # while the head's targets are still near-uniform.
    mse: float = Field(0.0, description="hybrid: weight of MV-MR's invariance term between the global views")
    variance: float = Field(0.0, description="hybrid: weight of MV-MR's variance hinge")
    dcor_views: float = Field(0.0, description="hybrid: weight of 1 − dCor between the global views")

    @field_validator("ema")
    @classmethod
    def _ema(cls, v):
        if not all(0.0 <= m <= 1.0 for m in v):
            raise ValueError("ema is the teacher's momentum [start, end], each in [0, 1] (official: [0.99, 1.0])")
        return v

    @field_validator("beta")
    @classmethod
    def _beta(cls, v):
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError("beta is the trade-off [start, end], each in [0, 1) (official: [0.75, 0.6667])")
        return v


def cosine_schedule(start: float, end: float, progress: float) -> float:
    """start at progress 0, end at progress 1, along half a cosine."""
    return end - (end - start) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1.0) / 2.0


@methods.register("mira")
class MIRA(Method):
    """Student + weight-normalised prototypes (gain fixed to 1) + EMA teacher sharing the prototypes."""

    views = 2  # global views; multi-crop adds mira.local_crops small ones
    section = "mira"
    Config = MiraConfig
    default_projector = "2048-2048-256"
    default_projector_bias = "last"  # official MIRA: hidden Linears without bias (BN follows), the last with one

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        s, self.cfg = recipe.student, self.config
        self.student = Student.from_config(s)
        width = self.cfg.bottleneck or self.student.out_dim
        self.bottleneck = (nn.Sequential(nn.Linear(self.student.out_dim, width, bias=False),
                                         nn.BatchNorm1d(width, affine=False)) if self.cfg.bottleneck else nn.Identity())
        self.prototypes = nn.Parameter(F.normalize(torch.randn(self.cfg.prototypes, width), dim=1))
        if self.cfg.prototype_init == "data":  # checkpointed, so a resumed run does not initialise them again
            self.register_buffer("prototypes_from_data", torch.zeros((), dtype=torch.bool))
        # One queue per global view of the EMA teacher's embeddings of past global batches, newest first; the same
        # on every process (checkpointed: a resume continues with it).
        self.register_buffer("queue", torch.zeros(2, self.cfg.queue, width))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        if self.cfg.marginal == "ema":  # per global view, global over processes, checkpointed
            if self.cfg.assigner != "mira":
                raise ConfigError("mira.marginal=ema is for mira.assigner=mira (Sinkhorn fixes the marginal to "
                                  "uniform); set mira.marginal=batch")
            self.register_buffer("marginal_ema", torch.full((2, self.cfg.prototypes), 1.0 / self.cfg.prototypes))
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)
        self.teacher_bottleneck = copy.deepcopy(self.bottleneck).requires_grad_(False)
        c = self.cfg
        # Hybrid terms: MV-MR's view terms between the two global views, and the recipe's provider terms with the
        # first global view as the student's augmented view.
        self.view_terms = ViewTerms(c.mse, c.variance, c.dcor_views, c.std_margin, c.dcor_estimator)
        self.provider_terms = ProviderTerms.from_recipe(recipe, self.student, estimator=c.dcor_estimator)
        self.weights = {"swapped_ce": 1.0, **self.view_terms.weights, **self.provider_terms.weights}

    def cluster_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of L2-normalised embeddings to the unit-norm prototypes."""
        return F.normalize(z.float(), dim=1) @ F.normalize(self.prototypes, dim=1).T

    def assign(self, logits: torch.Tensor, progress: float, view: int = 0) -> torch.Tensor:
        """Targets of the batch's rows. With a queue in use, the assigner runs on batch + queue (the queue's rows on
        the first process only: every process holds the same global queue, and the marginal must count it once)
        and only the batch's rows are kept."""
        beta = cosine_schedule(self.cfg.beta[0], self.cfg.beta[1], progress)
        prior = self.marginal_ema[view] if self.cfg.marginal == "ema" else None
        n = int(self.queue_filled)
        in_use = n > 0 and progress * self.recipe.optim.epochs >= self.cfg.queue_start_epoch
        rows = logits
        if in_use and is_main():
            rows = torch.cat([logits, self.cluster_logits(self.queue[view, :n])])
        targets = ASSIGNERS[self.cfg.assigner](rows, self.cfg, beta, prior)
        if prior is not None and self.training:  # the running marginal: of the assigned rows, global
            sums = torch.cat([targets.sum(0).float(), targets.new_full((1,), len(targets), dtype=torch.float32)])
            sums = all_reduce_sum(sums) if is_distributed() else sums  # column sums and row count, global
            m = self.cfg.marginal_momentum
            self.marginal_ema[view] = m * self.marginal_ema[view] + (1.0 - m) * sums[:-1] / sums[-1]
        return targets[: logits.shape[0]]

    @torch.no_grad()
    def enqueue(self, embeddings: list[torch.Tensor]) -> None:
        """Push the global batch's teacher embeddings of each global view to the front of its queue."""
        size = self.queue.shape[1]
        if size == 0:
            return
        for view, e in enumerate(embeddings):
            e = gather_rows(e.detach().to(self.queue.dtype))[:size]
            self.queue[view] = torch.cat([e, self.queue[view, : size - e.shape[0]]])
        self.queue_filled.fill_(min(int(self.queue_filled) + e.shape[0], size))

    @classmethod
    def view_specs(cls, recipe: Recipe) -> list[tuple[int, AugmentSpec]]:
        """Two global views and ``local_crops`` local ones. ``official`` follows the MIRA code's DINO-style
        transform: crop scale (0.14, 1), ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8, grayscale 0.2, blur p 1.0 on the
        first view and 0.1 + solarize 0.2 on the second; local crops at scale (0.05, 0.14) with blur 0.5."""
        cfg, size = recipe.mira, recipe.data.image_size
        if cfg.views == "official":
            common = dict(crop_scale=(0.14, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, gray_p=0.2)
            first, second = AugmentSpec(**common, blur_p=1.0), AugmentSpec(**common, blur_p=0.1, solarize_p=0.2)
            local = AugmentSpec(**{**common, "crop_scale": (0.05, 0.14)}, blur_p=0.5)
        else:
            first = second = augment_spec(recipe.data)
            local = replace(first, crop_scale=(0.05, 0.14))
        local_size = cfg.local_size or max(8, round(size * 96 / 224))
        return [(size, first), (size, second)] + [(local_size, local)] * cfg.local_crops

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        view1, view2 = batch.views[:2]
        images = {"original": batch.original, "augmented": view1}
        student = StudentRows(self.student, images)
        rows = {"z1": student("augmented", "projector"), "z2": self.student(view2)}
        rows.update({f"local{i}": self.student(v) for i, v in enumerate(batch.views[2:])})
        with torch.no_grad():
            t1, t2 = (self.teacher_bottleneck(self.teacher(v)) for v in (view1, view2))
            if self.cfg.prototype_init == "data" and not self.prototypes_from_data:
                self.prototypes_from(torch.cat([t1, t2]))
            rows.update(teacher1=self.cluster_logits(t1), teacher2=self.cluster_logits(t2))
            if self.cfg.queue:
                rows.update(teacher_z1=t1, teacher_z2=t2)
        rows.update(student.rows(self.provider_terms.student_keys()))
        rows.update(self.provider_terms.features(images, batch.index))
        return rows

    @torch.no_grad()
    def prototypes_from(self, embeddings: torch.Tensor) -> None:
        """Prototypes := normalised embeddings of distinct random rows of the global batch (the same rows on every
        process); if K exceeds the rows, the remaining prototypes stay random."""
        rows = gather_rows(embeddings.float())
        g = torch.Generator().manual_seed(self.recipe.trainer.seed)
        chosen = torch.randperm(rows.shape[0], generator=g)[: self.cfg.prototypes].to(rows.device)
        self.prototypes[: chosen.numel()] = F.normalize(rows[chosen], dim=1)
        self.prototypes_from_data.fill_(True)

    def objective(self, rows: dict[str, torch.Tensor], batch: Batch, progress: float):
        z1, z2 = rows["z1"], rows["z2"]
        with torch.no_grad():  # the assignment's marginals are global-batch statistics (all-reduced)
            targets = [self.assign(rows["teacher1"], progress, 0), self.assign(rows["teacher2"], progress, 1)]
            if self.cfg.queue and self.training:
                self.enqueue([rows["teacher_z1"], rows["teacher_z2"]])
        locals_ = [rows[f"local{i}"] for i in range(self.cfg.local_crops)]
        logits = [self.cluster_logits(self.bottleneck(z)) for z in (z1, z2, *locals_)]
        # each global view's targets supervise every other view, the local crops included (multi-crop)
        own = self.cfg.targets == "all"
        terms = {"swapped_ce": swapped_cross_entropy(targets, logits, self.cfg.tau_student, own=own)}
        terms.update(self.diagnostics(logits[:2], targets, z1))
        # The cross-entropy is a per-sample mean (DDP's gradient average makes it global); the view and provider
        # terms are statistics of the global batch.
        if self.view_terms.active:
            terms.update(self.view_terms(gather_with_grad(z1), gather_with_grad(z2)))
        terms.update(self.provider_terms(rows, gather=True))
        return weighted_total(terms, self.weights), terms

    @torch.no_grad()
    def diagnostics(self, logits: list[torch.Tensor], targets: list[torch.Tensor], z: torch.Tensor) -> dict:
        """Logged, not optimised (weight 0): mean per-sample entropy and entropy of the mean of the student's
        predictions and of the targets (nats; uniform = ln K), and the per-dimension std of the normalised
        embedding. Collapse shows as per-sample entropies at ln K with the std falling."""
        def entropies(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            per_sample = -(probs * probs.clamp_min(1e-12).log()).sum(1).mean()
            mean = probs.mean(0)
            return per_sample, -(mean * mean.clamp_min(1e-12).log()).sum()
        student = torch.cat([F.softmax(s.float() / self.cfg.tau_student, dim=1) for s in logits])
        s_each, s_mean = entropies(student)
        t_each, t_mean = entropies(torch.cat(targets))
        return {"diag/student_entropy": s_each, "diag/student_mean_entropy": s_mean,
                "diag/target_entropy": t_each, "diag/target_mean_entropy": t_mean,
                "diag/embedding_std": F.normalize(z.float(), dim=1).std(0).mean()}

    def collapse_warning(self, values: dict[str, float]) -> Optional[str]:
        """A one-line explanation when the student's predictions are uniform (per-sample entropy ≥ 95 % of ln K)."""
        uniform = math.log(self.cfg.prototypes)
        if values.get("diag/student_entropy", 0.0) >= 0.95 * uniform:
            return (f"the student's predictions are uniform (entropy {values['diag/student_entropy']:.2f} of "
                    f"ln K = {uniform:.2f}): the targets carry no signal; usual causes are embeddings near-"
                    f"orthogonal to random prototypes at small batch and short schedules (try fewer prototypes, "
                    f"a lower mira.tau_teacher, or hybrid dCor providers)")
        return None

    def before_optimizer_step(self, progress: float) -> None:
        """The official code's frozen head: no prototype update during the first freeze_prototypes_epochs."""
        if progress * self.recipe.optim.epochs < self.cfg.freeze_prototypes_epochs:
            self.prototypes.grad = None

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        momentum = cosine_schedule(self.cfg.ema[0], self.cfg.ema[1], progress)
        teacher = [*self.teacher.parameters(), *self.teacher_bottleneck.parameters()]
        for t, s in zip(teacher, [*self.student.parameters(), *self.bottleneck.parameters()]):
            t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)

    @torch.no_grad()
    def predict_clusters(self, images: torch.Tensor) -> torch.Tensor:
        """Prototype index of each image (student network)."""
        return self.cluster_logits(self.bottleneck(self.student(images))).argmax(1)

