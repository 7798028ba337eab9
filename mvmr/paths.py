"""Small file-system helpers shared by the run folder, datasets and teachers."""
from __future__ import annotations

from pathlib import Path


def missing_dirs(path: Path) -> list[Path]:
    """The folders that creating ``path`` would make, outermost first (empty when it exists): what to remove
    again when the step that creates it fails."""
    missing = []
    for p in [Path(path), *Path(path).parents]:
        if p.exists():
            break
        missing.append(p)
    return missing[::-1]
