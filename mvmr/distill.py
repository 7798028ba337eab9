"""The recipe ``mvmr distill`` runs: a recipe whose teachers are replaced by the ones named on the command line."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from .errors import ConfigError
from .registry import objectives, teachers


def kind(name: str, entry: dict[str, Any]) -> str:
    """The registered provider a ``providers`` entry builds: its ``provider`` field, else its name."""
    return entry.get("provider") or name


def teacher_entries(providers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The entries of a resolved ``providers`` section that build teachers (the rest are extractors)."""
    return {n: p for n, p in providers.items() if kind(n, p) in teachers}


def with_teachers(providers: dict[str, dict[str, Any]], names: Optional[Sequence[str]] = None,
                  weights: Sequence[Optional[Path]] = (), objective: Optional[str] = None) -> dict[str, dict[str, Any]]:
    """``providers`` (a resolved recipe's section) with the teachers ``names`` in place of every teacher in it, one
    term each (a name given twice, e.g. two checkpoints of one architecture, is keyed ``NAME#2``); ``None`` keeps
    the recipe's teachers. A teacher the recipe already holds under that key keeps its entry; another starts from
    the recipe's first teacher's weight, objective, view, representation, standardisation and objective params, and
    its params too (but its weight file) when it is the same kind (e.g. a second CIFAR ResNet-18 read at the first
    one's size and statistics); another kind has its own (empty) params, but for how the first is read (``output:
    logits``: a teacher that has no logits to give is refused unless ``objective`` replaces the recipe's).
    ``weights`` (none, one per teacher in order, or ``KEY=FILE`` for some of them) sets their local weight files;
    ``objective`` every teacher's objective (with the objective's default params). Extractors stay as they are."""
    old = teacher_entries(providers)
    for name in names or ():
        teachers.lookup(name)  # an unknown teacher: one clear line, with the closest name
    if objective is not None:
        objectives.lookup(objective)
    if names is None:
        chosen = dict(old)
    else:
        first_name, first = next(iter(old.items()), (None, {"weight": 1.0}))
        template = {k: v for k, v in first.items() if k not in ("params", "provider")}
        chosen = {}
        for i, name in enumerate(names):
            seen = list(names[:i]).count(name)
            key = name if not seen else f"{name}#{seen + 1}"
            chosen[key] = old.get(key) or {**template, "params": _read_as(first_name, first, name, objective),
                                           **({"provider": name} if seen else {})}
    files = weight_files(list(chosen), [str(w) for w in weights])
    for key, entry in chosen.items():
        if key in files:
            path = str(Path(files[key]).expanduser().resolve())
            entry = {**entry, "params": {**entry.get("params", {}), "weights": path}}
        if objective is not None:
            entry = {**entry, "objective": objective, "objective_params": {}}
        chosen[key] = entry
    return {**{n: p for n, p in providers.items() if n not in old}, **chosen}


def weight_files(keys: Sequence[str], weights: Sequence[str]) -> dict[str, str]:
    """Each teacher key's weight file from ``--teacher-weights``: one per teacher in order, or ``KEY=FILE`` for the
    teachers that need one (e.g. an in-domain checkpoint beside a teacher whose weights ship in a package)."""
    named = [w.split("=", 1) for w in weights if "=" in w and w.split("=", 1)[0] in keys]
    if named and len(named) == len(weights):
        return dict(named)
    if weights and len(weights) != len(keys):
        raise ConfigError(f"--teacher-weights was given {len(weights)} time(s) for {len(keys)} teacher(s); give "
                          f"one per teacher, in the same order, or KEY=FILE for some of them (keys: "
                          f"{', '.join(keys)})")
    return dict(zip(keys, weights))


def as_ensemble(providers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``providers`` with its teachers folded into one ``ensemble`` term (``mvmr distill --ensemble``): the first
    teacher's term settings (weight, objective, view, ...) on the teachers' averaged outputs, e.g. one ``kd`` head
    on the ensemble's logits. Extractors stay as they are."""
    old = teacher_entries(providers)
    if len(old) < 2:
        raise ConfigError(f"--ensemble averages two or more teachers and this run has {len(old)}; add --teacher NAME "
                          f"once per teacher")
    members = [{"teacher": kind(n, p), "params": p.get("params") or {}} for n, p in old.items()]
    term = {k: v for k, v in next(iter(old.values())).items() if k not in ("params", "provider")}
    return {**{n: p for n, p in providers.items() if n not in old}, "ensemble": {**term, "params": {"members": members}}}


def _read_as(first_name: Optional[str], first: dict[str, Any], name: str, objective: Optional[str]) -> dict[str, Any]:
    """The params a new teacher takes from the recipe's first one (``first_name``: its key): all but the weight file
    when it is the same kind; else its ``output`` (e.g. class logits, for ``objective: kd``) when the new teacher
    can be read that way, so every teacher gives the objective what it compares; a teacher that cannot is refused
    unless ``objective`` replaces the recipe's (it is then read as features)."""
    import inspect

    if first_name is not None and name == kind(first_name, first):
        return {k: v for k, v in (first.get("params") or {}).items() if k != "weights"}
    output = first.get("params", {}).get("output")
    if output in (None, "features"):
        return {}
    entry, _ = teachers.lookup(name)
    if "output" in inspect.signature(entry.factory).parameters:
        return {"output": output}
    if objective is not None:
        return {}
    raise ConfigError(f"the recipe reads its teacher as {output} (objective {first.get('objective', 'dcor')}), "
                      f"which teacher '{name}' cannot give; add --objective cos_smoothl1 to distil its features")
