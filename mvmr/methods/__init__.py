"""Training methods. Built-ins: ``mvmr`` (MV-MR) and ``mira`` (MIRA / Sinkhorn-Knopp clustering head); more come
from ``@mvmr.register_method`` or the ``mvmr.methods`` entry-point group."""
from .base import Method, NoSettings, build_method
from . import mira as _mira, mvmr as _mvmr  # noqa: F401  (register the built-in methods)

__all__ = ["Method", "NoSettings", "build_method"]
