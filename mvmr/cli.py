"""The ``mvmr`` command line (typer). Every user-facing error is one line on stderr and exit code 2."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from . import __version__
from .errors import MVMRError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Label-free representation learning and distillation of image encoders (MV-MR, MIRA).")
extractors_app = typer.Typer(no_args_is_help=True, help="Hand-crafted representation providers.")
app.add_typer(extractors_app, name="extractors")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mvmr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                  help="Print the version and exit.")) -> None:
    """mvmr: MV-MR and MIRA pretraining, label-free distillation, evaluation and export."""


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
def extractors_list(image_size: int = typer.Option(96, help="Image side used to report output sizes.")) -> None:
    """List registered extractors: name, deterministic or not, output size, description."""
    from .registry import extractors

    _provider_table(extractors, image_size)


def main() -> None:
    """Console entry point: run the app, turning mvmr errors into one line and exit code 2."""
    try:
        app()
    except MVMRError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
