"""The recipe ``mvmr distill`` runs: a recipe whose teachers are replaced by the one named on the command line."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .registry import objectives, teachers


def with_teacher(providers: dict[str, dict[str, Any]], teacher: str, weights: Optional[Path] = None,
                 objective: Optional[str] = None) -> dict[str, dict[str, Any]]:
    """``providers`` (a resolved recipe's section) with ``teacher`` in place of every teacher in it. The new entry
    keeps the replaced teacher's weight, objective, view and representation (and its params when it is the same
    teacher; another teacher starts from its own defaults); ``weights`` sets its local weight file and
    ``objective`` its objective (with the objective's default params). Extractors stay as they are."""
    teachers.lookup(teacher)  # an unknown teacher: one clear line, with the closest name
    if objective is not None:
        objectives.lookup(objective)
    old = {n: p for n, p in providers.items() if n in teachers}
    template = next(iter(old.values()), {"weight": 1.0})
    entry = old.get(teacher) or {**{k: v for k, v in template.items() if k != "params"}, "params": {}}
    if weights is not None:
        entry = {**entry, "params": {**entry.get("params", {}), "weights": str(Path(weights).expanduser().resolve())}}
    if objective is not None:
        entry = {**entry, "objective": objective, "objective_params": {}}
    return {**{n: p for n, p in providers.items() if n not in old}, teacher: entry}
