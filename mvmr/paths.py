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


def check_writable_folder(path: Path, what: str) -> None:
    """Refuse, before anything is written, a folder setting (``--out``, ``trainer.cache_dir``) that is a file,
    lies under a file, or sits where nothing can be written: one line naming ``what``."""
    import os

    from .errors import ConfigError

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} '{path}' is a file, not a folder; choose another folder")
    parent = next((p for p in [path, *path.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{what} '{path}': '{parent}' is a file, not a folder; choose another folder")
    if parent is not None and (not os.access(parent, os.W_OK) or str(parent.resolve()).startswith(("/proc", "/sys"))):
        raise ConfigError(f"{what} '{path}': cannot write under '{parent}'; choose a writable folder")
