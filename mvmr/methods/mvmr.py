"""MV-MR (Kinakh et al.): invariance, variance and dCor between the embeddings of the original and an augmented
view, plus dCor between the augmented embedding and each provider's features of the original view."""
from __future__ import annotations

import inspect
from typing import Literal

import torch
from torch import nn

from ..config import Recipe, Section
from ..data import Batch
from ..distributed import gather_with_grad
from ..losses import MVMRObjective, weighted_total
from ..losses.distill import build_objective
from ..models import Student
from ..registry import objectives
from .base import Method, register_method


class LossConfig(Section):
    """The recipe's ``loss`` section: weights of the MV-MR terms (provider weights live under ``providers``)."""

    mse: float = 1.0
    variance: float = 1.0
    dcor_views: float = 1.0
    std_margin: float = 1.0
    dcor_estimator: Literal["biased", "unbiased"] = "biased"


@register_method("mvmr")
class MVMR(Method):
    """MV-MR: the student embeds the original view and one augmented view; each provider term compares a student
    representation with the provider's features through its objective (1 − dCor by default; see ProviderConfig)."""

    views = 1
    section = "loss"
    Config = LossConfig

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        s, loss = recipe.student, self.config
        self.student = Student.from_config(s)
        self.mvmr_terms = MVMRObjective(mse=loss.mse, variance=loss.variance, dcor_views=loss.dcor_views,
                                       std_margin=loss.std_margin, estimator=loss.dcor_estimator)
        size = recipe.data.image_size
        heads, self.terms = [], {}
        for name, cfg in recipe.providers.items():
            params = dict(cfg.objective_params)
            if "estimator" in inspect.signature(objectives.get(cfg.objective)).parameters:
                params.setdefault("estimator", loss.dcor_estimator)
            student_dim = self.student.feature_dim if cfg.representation == "backbone" else self.student.out_dim
            heads.append(build_objective(name, cfg.objective, student_dim, self.providers[name].output_dim(size, size),
                                         params))
            self.terms[name] = f"{cfg.objective}/{name}"
        self.heads = nn.ModuleList(heads)  # in recipe order; learned parts (predictors, queues) are checkpointed
        self.weights = {**self.mvmr_terms.weights, **{self.terms[n]: c.weight for n, c in recipe.providers.items()}}

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        h, h_aug = self.student.embed(batch.original), self.student.embed(batch.views[0])
        rows = {"original/backbone": h, "original/projector": self.student.projector(h),
                "augmented/backbone": h_aug, "augmented/projector": self.student.projector(h_aug)}
        cfgs = self.recipe.providers
        on_augmented = [n for n, c in cfgs.items() if c.view == "augmented"]
        features = self.provider_features(batch.original, batch.index, [n for n in cfgs if n not in on_augmented])
        features.update(self.provider_features(batch.views[0], None, on_augmented))
        rows.update({f"provider/{n}": f for n, f in features.items()})
        return rows

    def objective(self, rows: dict[str, torch.Tensor], batch: Batch, progress: float):
        # Every term is a statistic of the global batch: gather across processes (a no-op in one process).
        pairs = {name: (f"{'original' if c.view == 'original' else 'augmented'}/{c.representation}", f"provider/{name}")
                 for name, c in self.recipe.providers.items()}
        used = {"augmented/projector", "original/projector"} | {k for pair in pairs.values() for k in pair}
        rows = {k: gather_with_grad(v) for k, v in rows.items() if k in used}
        terms = self.mvmr_terms.view_terms(rows["augmented/projector"], rows["original/projector"])
        for head, (name, (student, teacher)) in zip(self.heads, pairs.items()):
            terms[self.terms[name]] = head(rows[student], rows[teacher])
        return weighted_total(terms, self.weights), terms
