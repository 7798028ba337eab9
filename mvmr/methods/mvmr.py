"""MV-MR (Kinakh et al.): invariance, variance and dCor between the embeddings of the original and an augmented
view, plus dCor between the augmented embedding and each provider's features of the original view."""
from __future__ import annotations

from typing import Literal

from ..config import Recipe, Section
from ..data import Batch
from ..distributed import gather_with_grad
from ..losses import MVMRObjective
from ..models import Student
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
    """MV-MR: the student embeds the original view and one augmented view."""

    views = 1
    section = "loss"
    Config = LossConfig

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        s, loss = recipe.student, self.config
        self.student = Student(s.backbone, s.small_stem, s.projector)
        self.objective = MVMRObjective(
            mse=loss.mse, variance=loss.variance, dcor_views=loss.dcor_views,
            providers={name: cfg.weight for name, cfg in recipe.providers.items()},
            std_margin=loss.std_margin, estimator=loss.dcor_estimator,
        )

    def training_step(self, batch: Batch, progress: float):
        # Every term is a statistic of the global batch: gather across processes (a no-op in one process).
        z = gather_with_grad(self.student(batch.original))
        z_aug = gather_with_grad(self.student(batch.views[0]))
        features = {n: gather_with_grad(f) for n, f in self.provider_features(batch.original, batch.index).items()}
        return self.objective(z_aug, z, features)
