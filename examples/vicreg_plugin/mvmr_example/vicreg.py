"""VICReg (Bardes et al.) as an mvmr method, with lightly's ``VICRegLoss``: two augmented views, invariance +
variance + covariance on the projector outputs. Providers in the recipe add their terms to it through
``mvmr.ProviderTerms`` (1 − dCor by default, or any objective, view and representation), the first view playing
the augmented one."""
from __future__ import annotations

from pydantic import Field

import mvmr
from mvmr.distributed import is_distributed
from mvmr.losses import weighted_total


class VICRegConfig(mvmr.Section):
    """The recipe's ``vicreg`` section (defaults: the VICReg paper)."""

    lambda_param: float = Field(25.0, ge=0, description="invariance weight")
    mu_param: float = Field(25.0, ge=0, description="variance weight")
    nu_param: float = Field(1.0, ge=0, description="covariance weight")


@mvmr.register_method("vicreg")
class VICReg(mvmr.Method):
    views = 2
    section = "vicreg"
    Config = VICRegConfig
    default_projector = "2048-2048-2048"

    def __init__(self, recipe) -> None:
        super().__init__(recipe)
        from lightly.loss import VICRegLoss  # optional dependency of this plug-in only

        self.student = mvmr.Student.from_config(recipe.student)
        # VICReg's statistics are global-batch ones: lightly gathers across processes when told to.
        self.vicreg = VICRegLoss(self.config.lambda_param, self.config.mu_param, self.config.nu_param,
                                 gather_distributed=is_distributed())
        self.provider_terms = mvmr.ProviderTerms.from_recipe(recipe, self.student)
        self.weights = {"vicreg": 1.0, **self.provider_terms.weights}

    def training_step(self, batch: "mvmr.Batch", progress: float):
        images = {"original": batch.original, "augmented": batch.views[0]}
        student = mvmr.StudentRows(self.student, images)
        z1, z2 = student("augmented", "projector"), self.student(batch.views[1])
        terms = {"vicreg": self.vicreg(z1.float(), z2.float())}
        rows = {**student.rows(self.provider_terms.student_keys()), **self.provider_terms.features(images, batch.index)}
        terms.update(self.provider_terms(rows, gather=True))
        return weighted_total(terms, self.weights), terms
