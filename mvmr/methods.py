"""Training methods: modules that turn a batch into named loss terms. The engine knows nothing else about them.

Register a method with ``@register_method("name")``; a recipe selects it with ``method: name``. A method owns the
student (``self.student``), and may own frozen providers (``self.providers``, never checkpointed: they are rebuilt
from the recipe) and other trainable state (heads, EMA teachers), which is checkpointed.
"""
from __future__ import annotations

import abc
from typing import Callable, Mapping, Optional

import torch
from torch import nn

from .config import Recipe
from .distributed import gather_with_grad
from .errors import ConfigError
from .guards import FiniteMonitor
from .losses import MVMRObjective
from .models import Student
from .registry import create_provider

_METHODS: dict[str, Callable[[Recipe], "Method"]] = {}


def register_method(name: str):
    """Decorator: register a Method class under ``method: name``."""
    def wrap(cls):
        _METHODS[name] = cls
        return cls
    return wrap


def method_class(name: str):
    if name not in _METHODS:
        raise ConfigError(f"unknown method '{name}' (recipe key 'method'); available: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def build_method(recipe: Recipe) -> "Method":
    return method_class(recipe.method)(recipe)


def build_providers(recipe: Recipe) -> dict[str, nn.Module]:
    """The recipe's providers, built under the recipe's seed: a random-weight teacher (``pretrained: none``) is
    the same network in every process and run, so its cached features stay valid."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.trainer.seed)
        return {name: create_provider(name, **cfg.params) for name, cfg in recipe.providers.items()}


class Method(nn.Module, metaclass=abc.ABCMeta):
    """Base class: ``training_step(batch, progress) -> (loss, terms)``; ``progress`` runs from 0 to 1 over training."""

    student: Student
    extra_views = 0  # augmented views the data must provide beyond the one MV-MR uses

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe
        # A plain dict, not a ModuleDict: provider names may hold '.' and ':' (timm:vit_small.augreg, mvmr:PATH),
        # and frozen providers are rebuilt from the recipe, never checkpointed. _apply moves them with the method.
        self.providers: dict[str, nn.Module] = build_providers(recipe)
        self.feature_source: Optional[Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]] = None
        self.monitor = FiniteMonitor()  # the engine swaps in one that knows the step (and defers on GPUs)

    def provider_features(self, images: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each provider's features of the original view; from ``feature_source`` (e.g. the cache) when set."""
        out = {}
        for name, provider in self.providers.items():
            if self.feature_source is not None and provider.deterministic:
                out[name] = self.feature_source(name, images, index)
            else:
                out[name] = provider(images)
            self.monitor.watch(f"provider '{name}' returned NaN or Inf features at step {{step}}; fix the provider "
                               f"(its features must be finite)", out[name])
        return out

    @abc.abstractmethod
    def training_step(self, batch, progress: float) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
        """The total loss and its named terms for one batch (original, augmented, label, index)."""

    def forward(self, batch, progress: float):
        """``training_step``: forward is what DistributedDataParallel wraps."""
        return self.training_step(batch, progress)

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
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"checkpoint does not fit this recipe's model: {str(exc).splitlines()[0]}") from None


@register_method("mvmr")
class MVMR(Method):
    """MV-MR: invariance, variance and dCor between the two embeddings, plus dCor to each provider's features."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        s, loss = recipe.student, recipe.loss
        self.student = Student(s.backbone, s.small_stem, s.projector)
        self.objective = MVMRObjective(
            mse=loss.mse, variance=loss.variance, dcor_views=loss.dcor_views,
            providers={name: cfg.weight for name, cfg in recipe.providers.items()},
            std_margin=loss.std_margin, estimator=loss.dcor_estimator,
        )

    def training_step(self, batch, progress: float):
        original, augmented, _, index = batch[:4]
        # Every term is a statistic of the global batch: gather across processes (a no-op in one process).
        z = gather_with_grad(self.student(original))
        z_aug = gather_with_grad(self.student(augmented))
        features = {n: gather_with_grad(f) for n, f in self.provider_features(original, index).items()}
        return self.objective(z_aug, z, features)


from . import mira  # noqa: E402,F401  (registers the "mira" method)
