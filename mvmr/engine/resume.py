"""What ``--resume`` may change, and the recipe a resumed run continues with."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ..checkpoint import read_checkpoint
from ..config import Recipe, build_recipe
from ..recipe_files import parse_yaml, read_recipe_tree
from ..errors import ConfigError, MVMRError

# Keys that may change when a run is resumed: where and how long it runs, not what it computes.
RESUMABLE_KEYS = ("max_steps", "progress", "num_workers", "device", "checkpoint_every", "log_every", "tensorboard",
                  "use_cache", "cache_dir")


# Keys that say where the data lives, not what the run computes: a resume may change them when the dataset found
# there is the same (name, length, files; checked by Run against the identity saved in the checkpoint).
MOVABLE_KEYS = ("data.root",)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def recipe_differences(a: dict, b: dict) -> list[str]:
    """Dotted keys whose values differ between two resolved recipes, ignoring the resumable trainer keys."""
    fa, fb = _flatten(a), _flatten(b)
    skip = {f"trainer.{k}" for k in RESUMABLE_KEYS}
    return sorted(k for k in set(fa) | set(fb) if k not in skip and fa.get(k) != fb.get(k))


def show_keys(keys: list[str], limit: int = 5) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def resume_recipe(out_dir: Path, recipe_path: Optional[Path], overrides: list[str]) -> tuple[Recipe, dict[str, Any]]:
    """The recipe a ``--resume`` continues with, and the checkpoint it continues from (read once, here): the
    recipe saved in the run's checkpoint, plus ``--set`` overrides of resumable keys only. Refuses (one line,
    nothing written) a missing or damaged checkpoint, a recipe file edited since the run started, and overrides
    that would change what the run computes."""
    ckpt = Path(out_dir) / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        raise ConfigError(f"--resume: no checkpoint at {ckpt}; start a new run without --resume")
    try:
        state = read_checkpoint(ckpt)
    except MVMRError as exc:
        raise type(exc)(f"--resume: {exc}; to start over, delete {ckpt} or pass another --out") from None
    saved = build_recipe(state["recipe"], source=str(ckpt))
    source = state.get("source") or {}
    edits: list[str] = []
    if recipe_path is not None and Path(recipe_path).is_file():
        given = Path(recipe_path).resolve()
        if str(given) == source.get("path") and "text" in source:
            then = build_recipe(parse_yaml(source["text"]) or {}, source=str(given))
            what = f"{recipe_path} was edited since the run started"
        else:
            then, what = saved, f"{recipe_path} is not the recipe of this run"
        now = build_recipe(read_recipe_tree(given), source=str(given)).to_dict()
        diff = recipe_differences(then.to_dict(), now)
        # keys a resume may change, edited in the file since: applied as --set would apply them (--set wins)
        before, after = _flatten(then.to_dict()), _flatten(now)
        may_change = {f"trainer.{k}" for k in RESUMABLE_KEYS} | set(MOVABLE_KEYS)
        edits = [f"{k}={json.dumps(after.get(k))}" for k in sorted(may_change) if before.get(k) != after.get(k)]
        if diff:
            raise ConfigError(f"--resume: {what} (differs in {show_keys(diff)}); the run continues only with its "
                              f"saved recipe {Path(out_dir) / 'recipe.yaml'}: pass that file, or start a new run "
                              f"with another --out")
    recipe = build_recipe(saved.to_dict(), [*edits, *overrides], source="--set")
    diff = [k for k in recipe_differences(saved.to_dict(), recipe.to_dict()) if k not in MOVABLE_KEYS]
    if diff:
        raise ConfigError(f"--resume: --set {show_keys(diff)} would change what the run computes; on resume only "
                          f"trainer.{{{','.join(RESUMABLE_KEYS)}}} and data.root (same data, moved) may change")
    return recipe, state
