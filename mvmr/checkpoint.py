"""Checkpoints: written atomically and only with finite values, read back with ``weights_only=True``.

A checkpoint holds tensors, dicts, lists, numbers and strings only, so it never needs (and mvmr never allows) the
unpickling of arbitrary objects: a crafted file cannot run code through ``eval``, ``export``, ``--resume`` or an
``mvmr:<ckpt>`` teacher.
"""
from __future__ import annotations

import errno
import os
import shutil
import pickle
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from . import __version__
from .errors import CheckpointError, MVMRError, NonFiniteError

# The layout of what a checkpoint holds (recipe shape, state names). A change bumps it; files of another format are
# refused with one line, never migrated silently.
FORMAT = 1


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: a crash never leaves a half-written file.
    The temporary name is ``.<name>.<random>.tmp``; :func:`remove_stale_temporaries` clears those a kill -9 left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                torch.save(obj, f)
            except RuntimeError as exc:  # torch's zip writer reports a failed write (a full disk) as RuntimeError
                free = shutil.disk_usage(path.parent).free / 2**20
                raise OSError(errno.ENOSPC if free < 1 else errno.EIO,
                              f"{'No space left on device' if free < 1 else 'the write failed'} ({free:.1f} MB free; "
                              f"torch: {str(exc).strip().splitlines()[0][:80]})") from None
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions a plain open would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files that an interrupted :func:`atomic_save` of ``path`` left behind."""
    path = Path(path)
    stale = [p for p in path.parent.glob(f".{path.name}.*.tmp") if p.is_file() and not p.is_symlink()]
    for p in stale:
        p.unlink()
    return stale


def first_nonfinite(state: Any, prefix: str = "") -> Optional[str]:
    """Name of the first floating-point tensor holding NaN or Inf in a nested dict/list of tensors, else None."""
    if torch.is_tensor(state):
        if state.is_floating_point() or state.is_complex():
            return None if bool(torch.isfinite(state).all()) else (prefix or "<tensor>")
        return None
    if isinstance(state, Mapping):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        bad = first_nonfinite(value, f"{prefix}.{key}" if prefix else str(key))
        if bad is not None:
            return bad
    return None


def save_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """Write a training checkpoint atomically; refuse (keeping the previous one) if any weight or optimizer
    statistic is NaN or Inf."""
    bad = first_nonfinite({"method": state.get("method", {}), "optimizer": state.get("optimizer", {})})
    kept = (f"the last good one stays at {path}" if Path(path).is_file() else "no earlier checkpoint exists")
    if bad is not None:
        raise NonFiniteError(f"'{bad}' holds NaN or Inf at step {state.get('step')}: not writing a checkpoint; "
                             f"{kept} (lower optim.lr, or check the providers)")
    try:
        atomic_save({**state, "format": FORMAT}, path)
    except OSError as exc:
        raise CheckpointError(f"cannot write the checkpoint of step {state.get('step')} to {path} "
                              f"({exc.strerror or exc}); {kept}: free disk space (or fix the folder) and resume "
                              f"with --resume") from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw dict of an mvmr checkpoint, loaded without unpickling arbitrary objects."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' " + ("is a folder; name the file, e.g. RUN/checkpoints/last.pt"
                                                         if path.is_dir() else "does not exist"))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise CheckpointError(f"'{path}' holds objects other than tensors, numbers and strings: refused to "
                                  f"unpickle it (mvmr checkpoints never do; do not load files of unknown origin)") from None
        raise CheckpointError(f"'{path}' is truncated or not a torch checkpoint (unreadable pickle); "
                              f"use an intact checkpoint, or start over") from None
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise CheckpointError(f"'{path}' is truncated or not a torch checkpoint ({first}); use an intact "
                              f"checkpoint, or start over") from None
    if not isinstance(state, dict) or "recipe" not in state or "method" not in state:
        raise CheckpointError(f"'{path}' is not an mvmr checkpoint (no recipe and method inside); "
                              f"pass a run's checkpoints/last.pt")
    if not isinstance(state["recipe"], dict):
        raise CheckpointError(f"'{path}': its recipe is a {type(state['recipe']).__name__}, not a mapping; it was not "
                              f"written by mvmr (or was edited): use the run's own checkpoint")
    method = state["method"]
    if not isinstance(method, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in method.items()):
        raise CheckpointError(f"'{path}': its 'method' entry is not a state_dict of tensors; it was not written by "
                              f"mvmr (or was edited): use the run's own checkpoint")
    if state.get("format") != FORMAT:
        found = state.get("format", "none: written before mvmr 0.3")
        raise CheckpointError(f"'{path}' is a checkpoint of format {found}; this mvmr ({__version__}) reads format "
                              f"{FORMAT}: use the mvmr version that wrote it, or train again")
    return state


def load_checkpoint(path: str | Path, with_providers: bool = True):
    """(recipe, method) of a checkpoint written by mvmr; ``with_providers=False`` skips building the providers
    (and the learned heads of their terms, which nothing reads without them). Non-finite weights are refused."""
    from .methods import build_method

    recipe, weights = _recipe_and_weights(path)
    if not with_providers:
        recipe = recipe.model_copy(update={"providers": {}})
        weights = {k: v for k, v in weights.items() if not k.startswith("provider_terms.")}
    method = build_method(recipe)
    method.load_trainable_state(weights)
    method.eval()
    return recipe, method


def load_student(path: str | Path):
    """(recipe, student) of a checkpoint: the student alone (no method, no providers, no objective), what
    ``eval``, ``export`` and an ``mvmr:<ckpt>`` teacher read; a distillation run whose only terms are its
    teachers' loads like any other."""
    from .models import Student

    recipe, weights = _recipe_and_weights(path)
    student = Student.from_config(recipe.student)
    own = {k[len("student."):]: v for k, v in weights.items() if k.startswith("student.")}
    check_state_fits(student.state_dict(), own)
    student.load_state_dict(own)
    return recipe, student.eval()


def _recipe_and_weights(path: str | Path):
    """The validated recipe and the finite method weights of a checkpoint."""
    from .config import Recipe, build_recipe

    path = Path(path).expanduser()
    state = read_checkpoint(path)
    try:
        recipe: Recipe = build_recipe(state["recipe"], source=str(path))
    except MVMRError:
        raise
    except Exception as exc:
        raise CheckpointError(f"'{path}' is not an mvmr checkpoint ({type(exc).__name__}: {exc})") from None
    bad = first_nonfinite(state["method"])
    if bad is not None:
        raise NonFiniteError(f"checkpoint '{path}': weight '{bad}' holds NaN or Inf; use an earlier checkpoint "
                             f"or train again with a lower optim.lr")
    return recipe, state["method"]


def check_state_fits(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> None:
    """Refuse, in one line, weights whose names or shapes differ from the model's (``own``: its state_dict)."""
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
