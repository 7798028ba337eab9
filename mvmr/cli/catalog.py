"""Listing and housekeeping commands: ``extractors list``, ``teachers list``, ``recipes list|show``, ``cache``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import MVMRError
from . import app, cache_app, extractors_app, recipes_app, teachers_app
from .train import import_modules


def _provider_table(registry, image_size: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "deterministic", f"output size at {image_size}px", "description")
    for name in registry.names():
        factory = registry.factory(name)
        if registry.is_family(name):
            doc = (factory.__doc__ or "").strip().split("\n")[0]
            table.add_row(f"{name}:<spec>", "yes", "depends on spec", doc)
            continue
        provider = registry.create(name)
        table.add_row(name, "yes" if provider.deterministic else "no",
                      f"{provider.output_dim(image_size, image_size):,}", provider.description)
    Console(width=max(Console().width, 120)).print(table)


@extractors_app.command("list")
def extractors_list(image_size: int = typer.Option(96, min=8, help="Image side used to report output sizes.")) -> None:
    """List registered extractors: name, deterministic or not, output size, description."""
    from ..registry import extractors

    _provider_table(extractors, image_size)


@app.command("objectives")
def objectives_list() -> None:
    """List the registered objectives a provider term can use (providers.<name>.objective, --objective)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..registry import objectives

    table = Table("objective", "what it compares")
    for name in objectives.names():
        table.add_row(name, escape(" ".join((objectives.get(name).__doc__ or "").split())[:160]))
    Console(width=max(Console().width, 120)).print(table)


@teachers_app.command("list")
def teachers_list() -> None:
    """List registered teachers (families take a spec after a colon)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..registry import teachers

    table = Table("name", "description")
    for name in teachers.names():
        doc = (teachers.factory(name).__doc__ or "").strip().split("\n")[0]
        table.add_row(f"{name}:<spec>" if teachers.is_family(name) else name, escape(doc))  # "mvmr[lite]" is no markup
    Console(width=max(Console().width, 120)).print(table)


@cache_app.command("build")
def cache_build(recipe: str = typer.Argument(..., help="Recipe: a YAML file or a packaged recipe name."),
                set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
                imports: list[str] = typer.Option([], "--import", help="Import a module that registers providers.")) -> None:
    """Compute the deterministic providers' features of the recipe's training images ahead of training."""
    from ..cache_admin import build_caches
    from ..recipe_files import load_recipe, resolve_recipe

    import_modules(imports)
    for line in build_caches(load_recipe(resolve_recipe(recipe), set_)):
        typer.echo(line)


def _cache_dir(directory: Optional[Path]) -> Path:
    from ..config import TrainerConfig

    return (directory or Path(TrainerConfig().cache_dir)).expanduser()


@cache_app.command("info")
def cache_info(directory: Optional[Path] = typer.Option(None, "--dir", help="Cache folder (default ~/.cache/mvmr).")) -> None:
    """List cached features: provider, dataset, size, how much is filled."""
    from ..cache_admin import cache_entries

    root = _cache_dir(directory)
    if directory is not None and not root.is_dir():
        raise MVMRError(f"cache folder '{root}' does not exist or is not a folder; pass --dir with a cache folder")
    entries = cache_entries(root)
    if not entries:
        typer.echo(f"no caches in {root}")
    for e in entries:
        if "error" in e:
            typer.echo(f"{e['key']}  {e['error']}")
        else:
            typer.echo(f"{e['key']}  {e['provider']:<16} {e['dataset']}/{e['split']}  {e['n']}x{e['dim']}  "
                       f"{100 * e['filled']:.0f}% filled{' (complete)' if e['complete'] else ''}  {e['mb']:.1f} MB")


@cache_app.command("clear")
def cache_clear(directory: Optional[str] = typer.Option(None, "--dir", help="Cache folder (default ~/.cache/mvmr)."),
                dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing.")) -> None:
    """Delete the feature caches mvmr made in the folder (folders named by a cache key, holding mvmr's meta.json);
    nothing else in it is touched, and no symlink is followed."""
    from ..cache_admin import clear_caches

    if directory is not None and not directory.strip():
        raise MVMRError("cache clear: --dir is empty (an unset variable?); name the cache folder, or omit --dir "
                        "for ~/.cache/mvmr")
    root = _cache_dir(Path(directory) if directory is not None else None)
    found = clear_caches(root, dry_run)
    for p in found:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {p}")
    typer.echo(f"{'would remove' if dry_run else 'removed'} {len(found)} cache folder(s) from {root}")




@recipes_app.command("list")
def recipes_list() -> None:
    """The packaged recipes: name and first comment line. Any command takes a name or a path."""
    from ..recipe_files import packaged_recipes

    for name, path in packaged_recipes().items():
        first = next((line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        typer.echo(f"{name:<24} {first}")


@recipes_app.command("show")
def recipes_show(name: str = typer.Argument(..., help="A packaged recipe name (mvmr recipes list).")) -> None:
    """Print a packaged recipe, to copy and edit."""
    from ..recipe_files import resolve_recipe

    typer.echo(resolve_recipe(name).read_text(), nl=False)
