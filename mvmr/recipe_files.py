"""Recipe files: reading YAML (a path or a recipe packaged in the wheel), and writing the resolved recipe."""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Optional, Union

import yaml

from .config import Recipe, build_recipe
from .errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last)."""


MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """A mapping whose own keys are distinct; YAML merge keys (``<<: *defaults``) bring in another mapping's
    keys, which the mapping's own keys then override (the YAML merge-key rule)."""
    seen: set = set()
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise ConfigError(f"key '{key}' appears twice in one mapping (line {line}); keep one of them")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _check_acyclic(tree: object, where: str = "", stack: tuple = ()) -> None:
    """A recursive YAML alias (``a: &p {self: *p}``) makes a tree that contains itself: refuse it by name."""
    if isinstance(tree, (dict, list)):
        if id(tree) in stack:
            raise ConfigError(f"'{where or '(top level)'}' contains itself through a recursive YAML alias; "
                              f"write the value out instead")
        items = tree.items() if isinstance(tree, dict) else enumerate(tree)
        for k, v in items:
            _check_acyclic(v, f"{where}.{k}" if where else str(k), stack + (id(tree),))


def parse_yaml(text: str) -> object:
    """Safe YAML with duplicate keys and recursive aliases refused (ConfigError)."""
    try:
        tree = yaml.load(text, Loader=_StrictLoader)
    except yaml.constructor.ConstructorError as exc:
        if "recursive" not in str(exc):
            raise
        raise ConfigError(f"a recursive YAML alias (line {exc.problem_mark.line + 1 if exc.problem_mark else '?'}) "
                          f"makes a value contain itself; write the value out instead") from None
    _check_acyclic(tree)
    return tree


def read_recipe_tree(path: Union[str, Path]) -> dict:
    """The YAML mapping of a recipe file, or one clear error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe '{path}' " + ("is a folder; name a .yaml file" if path.is_dir() else "does not exist"))
    try:
        tree = parse_yaml(path.read_text()) or {}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise ConfigError(f"recipe file '{path}' cannot be read ({exc.strerror or exc}); fix its permissions "
                          f"or copy it somewhere readable") from None
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
        raise ConfigError(f"recipe '{path}' is a folder; name a .yaml file")
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
