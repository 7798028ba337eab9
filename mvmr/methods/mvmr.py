"""MV-MR (Kinakh et al.): invariance, variance and dCor between the embeddings of the original and an augmented
view, plus one provider term per representation: by default 1 − dCor between the augmented embedding and the
provider's features of the original view (any objective, view and representation: see ``ProviderConfig``)."""
from __future__ import annotations

from dataclasses import replace
from typing import Literal, Optional

import torch
from pydantic import Field, field_validator

from ..config import Recipe, Section, _ordered_range
from ..data import AugmentSpec, Batch, augment_spec
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

    mse: float = Field(1.0, description="weight of the invariance term: MSE between the two views' embeddings")
    variance: float = Field(1.0, description="weight of the variance hinge on each embedding dimension")
    dcor_views: float = Field(1.0, description="weight of 1 − dCor between the two views' embeddings")
    std_margin: float = Field(1.0, ge=0, description="the variance hinge's target standard deviation")
    dcor_estimator: Literal["biased", "unbiased"] = Field(
        "biased", description="dCor estimator of every dCor term: the paper's biased V-statistic or the unbiased "
                              "dCor²")


class MVMRConfig(ViewTermsConfig):
    """MV-MR's ``loss`` section: the view-term weights, and multi-crop for the provider terms."""

    local_crops: int = Field(0, ge=0, description="multi-crop for the student: this many small crops of each image "
                             "are also compared with every provider term's features (through the term's head), "
                             "the term averaged over the augmented view and the crops; 0: off")
    local_size: Optional[int] = Field(None, ge=8, description="side of the local crops; default image_size·96/224")
    local_scale: tuple[float, float] = Field((0.05, 0.4), description="area fraction of a local crop (DINO's)")

    @field_validator("local_scale")
    @classmethod
    def _local_scale(cls, v):
        return _ordered_range(v, "local_scale", 0.0, 1.0)


@methods.register("mvmr")
class MVMR(Method):
    """MV-MR: the student embeds the original view and one augmented view; view terms tie the two embeddings,
    provider terms tie a student representation to each provider. A step runs only the forwards some term reads
    (the shipped distillation recipe, with view terms off, embeds one view)."""

    views = 1  # the augmented view; loss.local_crops adds small ones
    section = "loss"
    Config = MVMRConfig

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        loss = self.config
        self.student = Student.from_config(recipe.student)
        self.view_terms = ViewTerms(loss.mse, loss.variance, loss.dcor_views, loss.std_margin, loss.dcor_estimator)
        self.local_views = [f"local{i}" for i in range(loss.local_crops)]
        self.provider_terms = ProviderTerms.from_recipe(recipe, self.student, estimator=loss.dcor_estimator,
                                                        local_views=self.local_views)
        self.weights = {**self.view_terms.weights, **self.provider_terms.weights}
        if not any(self.weights.values()):
            raise ConfigError("every term of the objective has weight 0 (loss.mse, loss.variance, loss.dcor_views "
                              "and each providers.<name>.weight); give one a non-zero weight")
        self.rows_used = (set(VIEW_PAIR) if self.view_terms.active else set()) | self.provider_terms.student_keys()

    @classmethod
    def view_specs(cls, recipe: Recipe) -> list[tuple[int, AugmentSpec]]:
        """The augmented view (``data.augment``), then ``loss.local_crops`` small crops of it (its photometric ops
        at ``loss.local_scale``, side ``loss.local_size``)."""
        loss, size = recipe.method_config, recipe.data.image_size
        spec = augment_spec(recipe.data)
        local = replace(spec, crop="resized", crop_scale=tuple(loss.local_scale))
        return [(size, spec)] + [(loss.local_size or max(8, round(size * 96 / 224)), local)] * loss.local_crops

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        images = {"original": batch.original, "augmented": batch.views[0], **dict(zip(self.local_views, batch.views[1:]))}
        rows = StudentRows(self.student, images).rows(self.rows_used)
        rows.update(self.provider_terms.features(images, batch.index))
        return rows

    def objective(self, rows: dict[str, torch.Tensor], batch: Batch, progress: float):
        # Every term is a statistic of the global batch: gather across processes once (a no-op in one process).
        rows = {k: gather_with_grad(v) for k, v in rows.items()}
        terms = self.view_terms(*(rows[k] for k in VIEW_PAIR)) if self.view_terms.active else {}
        terms.update(self.provider_terms(rows))
        return weighted_total(terms, self.weights), terms
