"""The Method contract: a module that turns a named ``Batch`` into named loss terms. The engine knows nothing else.

A method registers with ``@mvmr.register_method("name")`` (or the ``mvmr.methods`` entry-point group) and declares:
``views`` (augmented views per image the data must provide), ``section`` and ``Config`` (its own recipe section and
the pydantic model that validates it) and ``default_projector``. It owns the student (``self.student``), the
recipe's provider terms (``self.provider_terms``, a ``ProviderTerms``: frozen providers never checkpointed, learned
heads checkpointed) and other trainable state (heads, EMA teachers), which is checkpointed.
"""
from __future__ import annotations

import abc
from typing import Callable, ClassVar, Mapping, Optional

import torch
from pydantic import BaseModel
from torch import nn

from ..checkpoint import check_state_fits
from ..config import Recipe, Section
from ..data import AugmentSpec, Batch, augment_spec
from ..errors import ConfigError
from .. import profile
from ..guards import FiniteMonitor
from ..provider_terms import ProviderTerms
from ..registry import methods


def build_method(recipe: Recipe, cls: Optional[type["Method"]] = None) -> "Method":
    """The recipe's method (``cls`` when the caller looked it up already), with its student and provider terms. A
    method that leaves the recipe's providers unused is refused: a provider in a recipe always does what it says."""
    method = (cls or methods.get(recipe.method))(recipe)
    if recipe.providers and not method.provider_terms.configs:
        raise ConfigError(f"method '{recipe.method}' does not use providers (it builds no ProviderTerms); remove the "
                          f"recipe's providers section, or make the method call ProviderTerms.from_recipe")
    return method


class NoSettings(Section):
    """For a method without a section of its own."""


class Method(nn.Module, metaclass=abc.ABCMeta):
    """Base class: ``training_step(batch, progress) -> (loss, terms)``; ``progress`` runs from 0 to 1 over training."""

    views: ClassVar[int] = 1
    section: ClassVar[Optional[str]] = None
    Config: ClassVar[type[BaseModel]] = NoSettings
    default_projector: ClassVar[str] = "8192-8192-8192"
    default_projector_bias: ClassVar[str] = "none"  # official MV-MR / VICReg: no bias in any projector Linear

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.config = recipe.method_config
        # Replaced by the subclass once its student exists: ProviderTerms.from_recipe(recipe, self.student, ...).
        self.provider_terms = ProviderTerms({})
        self.monitor = FiniteMonitor()

    @property
    def providers(self) -> dict[str, nn.Module]:
        """The frozen providers of the recipe (owned by ``provider_terms``)."""
        return self.provider_terms.providers

    @property
    def feature_source(self) -> Optional[Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]]:
        """The feature cache the engine attaches (deterministic providers on the original view read from it)."""
        return self.provider_terms.source

    @feature_source.setter
    def feature_source(self, source) -> None:
        self.provider_terms.source = source

    @property
    def monitor(self) -> FiniteMonitor:
        """Checks tensors for NaN/Inf; the engine swaps in one that knows the step (and defers on GPUs)."""
        return self._monitor

    @monitor.setter
    def monitor(self, monitor: FiniteMonitor) -> None:
        self._monitor = monitor
        self.provider_terms.monitor = monitor

    @classmethod
    def view_specs(cls, recipe: Recipe) -> list[tuple[int, AugmentSpec]]:
        """(size, augmentation) of each augmented view the data must provide: ``views`` draws of the recipe's
        ``data.augment`` by default; a method overrides it for asymmetric views or multi-crop."""
        return [(recipe.data.image_size, augment_spec(recipe.data))] * cls.views

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-image outputs (one row per image: embeddings, frozen features) that ``objective`` turns into the
        loss. Methods that split this way get exact gradient accumulation (``optim.accumulate``)."""
        raise NotImplementedError(f"{type(self).__name__} does not split into encode/objective")

    def objective(self, rows: dict[str, torch.Tensor], batch: Batch,
                  progress: float) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
        """The loss of the whole (local) batch from ``encode``'s rows; batch statistics live here."""
        raise NotImplementedError(f"{type(self).__name__} does not split into encode/objective")

    def training_step(self, batch: Batch, progress: float) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
        """The total loss and its named terms for one batch (by default ``objective(encode(batch))``)."""
        rows = self.encode(batch)
        with profile.section("objective"):
            return self.objective(rows, batch, progress)

    def forward(self, batch: Batch, progress: float):
        """``training_step``: forward is what DistributedDataParallel wraps."""
        return self.training_step(batch, progress)

    def before_optimizer_step(self, progress: float) -> None:
        """Hook between backward and the update (gradients are global): e.g. drop the gradients of frozen parts."""

    def after_optimizer_step(self, progress: float) -> None:
        """Hook for EMA updates and the like."""

    def collapse_warning(self, values: Mapping[str, float]) -> Optional[str]:
        """A one-line warning when the logged ``values`` show the method collapsing (the engine prints it after a
        few log steps in a row), or None. The default never warns."""
        return None

    def predict_clusters(self, images: torch.Tensor) -> torch.Tensor:
        """Cluster index of each image, for ``mvmr eval clusters``; methods with a clustering head override it."""
        raise ConfigError(f"a '{self.recipe.method}' checkpoint has no clustering head; 'eval clusters' is for "
                          f"method: mira")

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """State to checkpoint: everything but the frozen providers (which are not submodules)."""
        return self.state_dict()

    def load_trainable_state(self, state: Mapping[str, torch.Tensor]) -> None:
        check_state_fits(self.state_dict(), state)
        self.load_state_dict(state, strict=True)
