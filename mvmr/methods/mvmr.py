"""MV-MR (Kinakh et al.): invariance, variance and dCor between the embeddings of the original and an augmented
view, plus one provider term per representation: by default 1 − dCor between the augmented embedding and the
provider's features of the original view (any objective, view and representation: see ``ProviderConfig``)."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from ..config import Recipe, Section
from ..data import Batch
from ..errors import ConfigError
from ..distributed import gather_with_grad
from ..losses import ViewTerms, weighted_total
from ..models import Student
from ..provider_terms import ProviderTerms, StudentRows
from ..registry import methods
from .base import Method

VIEW_PAIR = ("augmented/projector", "original/projector")  # the view terms compare these two rows


class ViewTermsConfig(Section):
    """Weights of MV-MR's view terms and the dCor estimator of every dCor term (provider weights live under
    ``providers``). The recipe's ``loss`` section; MIRA's hybrid terms reuse it with the view terms off."""

    mse: float = 1.0
    variance: float = 1.0
    dcor_views: float = 1.0
    std_margin: float = Field(1.0, ge=0)
    dcor_estimator: Literal["biased", "unbiased"] = "biased"



@methods.register("mvmr")
class MVMR(Method):
    """MV-MR: the student embeds the original view and one augmented view; view terms tie the two embeddings,
    provider terms tie a student representation to each provider. A step runs only the forwards some term reads
    (the shipped distillation recipe, with view terms off, embeds one view)."""

    views = 1
    section = "loss"
    Config = ViewTermsConfig

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        loss = self.config
        self.student = Student.from_config(recipe.student)
        self.view_terms = ViewTerms(loss.mse, loss.variance, loss.dcor_views, loss.std_margin, loss.dcor_estimator)
        self.provider_terms = ProviderTerms.from_recipe(recipe, self.student, estimator=loss.dcor_estimator)
        self.weights = {**self.view_terms.weights, **self.provider_terms.weights}
        if not any(self.weights.values()):
            raise ConfigError("every term of the objective has weight 0 (loss.mse, loss.variance, loss.dcor_views "
                              "and each providers.<name>.weight); give one a non-zero weight")
        self.rows_used = (set(VIEW_PAIR) if self.view_terms.active else set()) | self.provider_terms.student_keys()

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        images = {"original": batch.original, "augmented": batch.views[0]}
        rows = StudentRows(self.student, images).rows(self.rows_used)
        rows.update(self.provider_terms.features(images, batch.index))
        return rows

    def objective(self, rows: dict[str, torch.Tensor], batch: Batch, progress: float):
        # Every term is a statistic of the global batch: gather across processes once (a no-op in one process).
        rows = {k: gather_with_grad(v) for k, v in rows.items()}
        terms = self.view_terms(*(rows[k] for k in VIEW_PAIR)) if self.view_terms.active else {}
        terms.update(self.provider_terms(rows))
        return weighted_total(terms, self.weights), terms
