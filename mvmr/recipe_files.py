"""Recipe files: reading YAML (a path or a recipe packaged in the wheel), and writing the resolved recipe."""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Optional, Union

import yaml

from .config import Recipe, build_recipe
from .errors import ConfigError


def read_recipe_tree(path: Union[str, Path]) -> dict:
    """The YAML mapping of a recipe file, or one clear error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe file '{path}' does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections, got {type(tree).__name__}")
    return tree


def packaged_recipes() -> dict[str, Path]:
    """The recipes shipped in the wheel (package ``mvmr_recipes``, the repository's recipes/): name -> file."""
    from importlib.resources import files

    try:
        folder = files("mvmr_recipes")
    except ModuleNotFoundError:
        return {}
    return {Path(str(f.name)).stem: Path(str(f)) for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith(".yaml")}


def resolve_recipe(name_or_path: Union[str, Path]) -> Path:
    """A recipe argument: an existing file, or the name of a packaged recipe (with or without .yaml)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    packaged = packaged_recipes()
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if stem in packaged and (len(path.parts) == 1 or path.parts[0] == "recipes"):
        return packaged[stem]
    if path.is_dir():
        raise ConfigError(f"recipe file '{path}' does not exist (it is a folder)")
    close = difflib.get_close_matches(stem, list(packaged), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"recipe file '{path}' does not exist and is no packaged recipe{hint} "
                      f"(mvmr recipes list: {', '.join(packaged)})")


def load_recipe(path: Union[str, Path], overrides: Optional[list[str]] = None) -> Recipe:
    """Read a YAML recipe, apply overrides, validate. Errors name the key and the file."""
    return build_recipe(read_recipe_tree(path), overrides, str(path))


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file through a temporary name and a rename: readers never see half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_recipe(recipe: Recipe, path: Path) -> None:
    atomic_write_text(Path(path), yaml.safe_dump(recipe.to_dict(), sort_keys=False))
