"""mvmr: label-free representation learning and distillation of image encoders (MV-MR, MIRA).

Everything mvmr can be extended with registers by name, from any module or from an installed package's entry
points, through this public API:

- providers (hand-crafted extractors and frozen teachers): ``register_extractor``, ``register_teacher``, ``Provider``,
  ``FrozenEncoder``; built with ``create_extractor`` / ``create_teacher`` / ``create_provider``;
- training methods: ``register_method``, ``Method`` (with its own recipe ``Section``), ``Student``, ``Batch``;
- datasets: ``register_dataset``;
- ``ProviderTerms``: a student representation against frozen providers through objectives (what every method
  uses); ``FeatureRegularizer``: the same terms inside any training loop.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Provider (torch) is imported on first use, so that `import mvmr` and the CLI start light
    from .providers import Provider

__version__ = "0.3.0"

from .errors import MVMRError  # noqa: E402
from .registry import (create_provider, datasets as _datasets, extractors as _extractors,  # noqa: E402
                       methods as _methods, teachers as _teachers)


def register_extractor(name=None, factory=None, *, family: bool = False):
    """Register an extractor: ``@register_extractor("name")`` or ``register_extractor("name", Factory)``."""
    return _extractors.register(name, factory, family=family)


def create_extractor(name: str, **params: Any) -> Provider:
    """Build a registered extractor, frozen."""
    return _extractors.create(name, **params)


def list_extractors() -> list[str]:
    """Names of all registered extractors, including those installed through entry points."""
    return _extractors.names()


def register_teacher(name=None, factory=None, *, family: bool = False):
    """Register a teacher: ``@register_teacher("name")`` or ``register_teacher("name", Factory)``."""
    return _teachers.register(name, factory, family=family)


def create_teacher(name: str, **params: Any) -> Provider:
    """Build a registered teacher, frozen."""
    return _teachers.create(name, **params)


def list_teachers() -> list[str]:
    """Names of all registered teachers, including those installed through entry points."""
    return _teachers.names()


def register_method(name=None, cls=None):
    """Register a training method (a ``Method`` subclass) under ``method: name``; decorator or function."""
    return _methods.register(name, cls)


def list_methods() -> list[str]:
    """Names of all registered methods (built-in, registered in Python, and installed through entry points)."""
    return _methods.names()


def register_dataset(name=None, builder=None):
    """Register a dataset builder ``(cfg: DataConfig, split) -> Dataset`` under ``data.name``."""
    return _datasets.register(name, builder)


def list_datasets() -> list[str]:
    """Names of all registered datasets."""
    return _datasets.names()


def __getattr__(name: str):
    """The heavier public classes, imported on first use (``import mvmr`` stays light)."""
    lazy = {"Provider": ("providers", "Provider"), "Method": ("methods", "Method"), "Section": ("config", "Section"), "Student": ("models", "Student"),
            "Batch": ("data", "Batch"), "ArrayDataset": ("data.datasets", "ArrayDataset"),
            "FrozenEncoder": ("encoders", "FrozenEncoder"), "DataConfig": ("config", "DataConfig"),
            "FeatureRegularizer": ("regularizer", "FeatureRegularizer"),
            "ProviderTerms": ("provider_terms", "ProviderTerms"), "StudentRows": ("provider_terms", "StudentRows"),
            "ProviderConfig": ("config", "ProviderConfig")}
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'mvmr' has no attribute '{name}'")


__all__ = [
    "MVMRError", "Provider", "__version__", "FrozenEncoder", "FeatureRegularizer", "ProviderTerms", "StudentRows",
    "ProviderConfig", "Method", "Section", "Student", "Batch", "ArrayDataset",
    "DataConfig", "register_extractor", "create_extractor", "list_extractors", "register_teacher", "create_teacher",
    "list_teachers", "create_provider", "register_method", "list_methods", "register_dataset", "list_datasets",
]
