"""mvmr: label-free representation learning and distillation of image encoders (MV-MR, MIRA).

Public API for providers: ``register_extractor`` / ``register_teacher`` (decorator or function),
``create_extractor`` / ``create_teacher`` / ``create_provider``, ``list_extractors`` / ``list_teachers``.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .errors import MVMRError  # noqa: E402
from .providers import Provider  # noqa: E402
from .registry import create_provider, extractors as _extractors, teachers as _teachers  # noqa: E402


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


__all__ = [
    "MVMRError", "Provider", "__version__",
    "register_extractor", "create_extractor", "list_extractors",
    "register_teacher", "create_teacher", "list_teachers", "create_provider",
]
