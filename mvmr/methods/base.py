"""The Method contract: a module that turns a named ``Batch`` into named loss terms. The engine knows nothing else.

A method registers with ``@mvmr.register_method("name")`` (or the ``mvmr.methods`` entry-point group) and declares:
``views`` (augmented views per image the data must provide), ``section`` and ``Config`` (its own recipe section and
the pydantic model that validates it) and ``default_projector``. It owns the student (``self.student``), may own
frozen providers (``self.providers``: rebuilt from the recipe, never checkpointed) and other trainable state (heads,
EMA teachers), which is checkpointed.
"""
from __future__ import annotations

import abc
from typing import Callable, ClassVar, Mapping, Optional

import torch
from pydantic import BaseModel
from torch import nn

from ..config import Recipe, Section
from ..data import AugmentSpec, Batch, augment_spec
from ..errors import CheckpointError, ConfigError
from ..guards import FiniteMonitor
from ..registry import build_providers, methods


def register_method(name=None, cls=None):
    """Register a Method class under ``method: name``: ``@register_method("name")`` or a function call."""
    return methods.register(name, cls)


def build_method(recipe: Recipe) -> "Method":
    """The recipe's method, with its student and providers."""
    return methods.get(recipe.method)(recipe)


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
        # A plain dict, not a ModuleDict: provider names may hold '.' and ':' (timm:vit_small.augreg, mvmr:PATH),
        # and frozen providers are rebuilt from the recipe, never checkpointed. _apply moves them with the method.
        self.providers: dict[str, nn.Module] = build_providers(recipe)
        size = recipe.data.image_size
        for name, provider in self.providers.items():
            try:
                provider.check_input_size(size, size)
            except ValueError as exc:
                raise ConfigError(f"provider '{name}' at data.image_size={size}: {exc}") from None
        self.feature_source: Optional[Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]] = None
        self.monitor = FiniteMonitor()  # the engine swaps in one that knows the step (and defers on GPUs)

    def provider_features(self, images: torch.Tensor, index: Optional[torch.Tensor],
                          names: Optional[list[str]] = None) -> dict[str, torch.Tensor]:
        """Providers' features of ``images``; from ``feature_source`` (the cache) for deterministic providers when
        ``index`` addresses the deterministic original view (pass None for an augmented view)."""
        out = {}
        for name, provider in self.providers.items():
            if names is not None and name not in names:
                continue
            if self.feature_source is not None and provider.deterministic and index is not None:
                out[name] = self.feature_source(name, images, index)
            else:
                out[name] = provider(images)
            self.monitor.watch(f"provider '{name}' returned NaN or Inf features at step {{step}}; fix the provider "
                               f"(its features must be finite)", out[name])
        return out

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
        return self.objective(self.encode(batch), batch, progress)

    def forward(self, batch: Batch, progress: float):
        """``training_step``: forward is what DistributedDataParallel wraps."""
        return self.training_step(batch, progress)

    def before_optimizer_step(self, progress: float) -> None:
        """Hook between backward and the update (gradients are global): e.g. drop the gradients of frozen parts."""

    def after_optimizer_step(self, progress: float) -> None:
        """Hook for EMA updates and the like."""

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for provider in self.providers.values():
            provider._apply(fn, *args, **kwargs)
        return self

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """State to checkpoint: everything but the frozen providers (which are not submodules)."""
        return self.state_dict()

    def load_trainable_state(self, state: Mapping[str, torch.Tensor]) -> None:
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if getattr(state[k], "shape", None) != own[k].shape)

        def show(keys):
            return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        problems = ([f"missing {show(missing)}"] if missing else []) + \
                   ([f"unexpected {show(unexpected)}"] if unexpected else []) + \
                   ([f"shape differs for {show(wrong)} ({tuple(state[wrong[0]].shape)} vs "
                     f"{tuple(own[wrong[0]].shape)})"] if wrong else [])
        if problems:
            raise CheckpointError(f"the checkpoint's weights do not fit the model of its recipe ({'; '.join(problems)}); "
                                  f"it was written by other code or edited: use the run's own checkpoint")
        self.load_state_dict(state, strict=True)
