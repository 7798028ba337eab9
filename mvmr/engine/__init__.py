"""The engine: a run's set-up (``run``), one short training loop (``loop``) and the callbacks it calls."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..checkpoint import atomic_save
from ..config import Recipe
from .callbacks import Callback, Checkpoint, MetricsLog, OnlineKNN, ProgressBar, RunFolder, default_callbacks
from .loop import StepInfo, fit
from .optim import autocast_for, build_optimizer, effective_precision, lr_at, resolve_device, seed_everything
from .resume import RESUMABLE_KEYS, recipe_differences, resume_recipe
from .run import EpochSampler, Run


def pretrain(recipe: Recipe, out_dir: Path, resume: bool = False, source: Optional[Path] = None,
             resume_command: Optional[str] = None, callbacks: Optional[list[Callback]] = None,
             state: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Train ``recipe`` into ``out_dir`` (or continue it with ``resume``, from ``state`` when the caller already
    read and checked the checkpoint: ``resume_recipe``); returns the summary."""
    run = Run(recipe, out_dir, resume, source, resume_command, state)
    return fit(run, callbacks if callbacks is not None else default_callbacks(run))


__all__ = ["pretrain", "Run", "fit", "StepInfo", "Callback", "RunFolder", "OnlineKNN", "MetricsLog", "ProgressBar",
           "Checkpoint", "default_callbacks", "EpochSampler", "autocast_for", "build_optimizer", "lr_at",
           "resolve_device", "seed_everything", "effective_precision", "resume_recipe", "recipe_differences",
           "RESUMABLE_KEYS", "atomic_save"]
