"""VICReg (Bardes et al.) as an mvmr method, with lightly's ``VICRegLoss``: two augmented views, invariance +
variance + covariance on the projector outputs. Providers in the recipe add MV-MR's dCor terms to it."""
from __future__ import annotations

from pydantic import Field

import mvmr
from mvmr.distributed import gather_with_grad, is_distributed
from mvmr.losses import distance_correlation, weighted_total


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
        self.weights = {"vicreg": 1.0, **{f"dcor/{n}": p.weight for n, p in recipe.providers.items()}}

    def training_step(self, batch: "mvmr.Batch", progress: float):
        z1, z2 = self.student(batch.views[0]), self.student(batch.views[1])
        terms = {"vicreg": self.vicreg(z1.float(), z2.float())}
        features = self.provider_features(batch.original, batch.index)
        if features:
            z_all = gather_with_grad(z1)
            for name, feats in features.items():
                terms[f"dcor/{name}"] = 1.0 - distance_correlation(z_all, gather_with_grad(feats))
        return weighted_total(terms, self.weights), terms
