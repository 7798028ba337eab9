"""The ``mvmr`` command line (typer). Every user-facing error is one line on stderr and exit code 2.

Commands live in ``train`` (pretrain, distill), ``tools`` (eval, export) and ``catalog`` (extractors, teachers,
recipes, cache); ``main`` is the console entry point.
"""
from __future__ import annotations

import sys
from typing import Optional

import typer

from .. import __version__
from ..errors import MVMRError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Label-free representation learning and distillation of image encoders (MV-MR, MIRA).")
extractors_app = typer.Typer(no_args_is_help=True, help="Hand-crafted representation providers.")
app.add_typer(extractors_app, name="extractors")
teachers_app = typer.Typer(no_args_is_help=True, help="Frozen pretrained teachers.")
app.add_typer(teachers_app, name="teachers")
cache_app = typer.Typer(no_args_is_help=True, help="The on-disk cache of deterministic providers' features.")
app.add_typer(cache_app, name="cache")
recipes_app = typer.Typer(no_args_is_help=True, help="The recipes that ship with mvmr.")
app.add_typer(recipes_app, name="recipes")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mvmr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                  help="Print the version and exit.")) -> None:
    """mvmr: MV-MR and MIRA pretraining, label-free distillation, evaluation and export."""


def _usage_errors() -> tuple[type, ...]:
    """click's UsageError (typer ≥ 0.29 vendors click as typer._click; older typer uses the click package)."""
    import importlib

    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(module).UsageError)
        except ImportError:
            pass
    return tuple(found)


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point. A user-facing problem (mvmr's errors and command-line usage errors) is one line on
    stderr and exit code 2; an interrupted run exits 130 (SIGINT) or 143 (SIGTERM) after saving."""
    try:
        code = app(args=argv, prog_name="mvmr", standalone_mode=False)
    except MVMRError as exc:
        typer.echo(f"error: {exc}" if exc.exit_code == 2 else str(exc), err=True)
        sys.exit(exc.exit_code)
    except _usage_errors() as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "mvmr"
        typer.echo(f"error: {exc.format_message().rstrip('.')} (see '{where} --help')", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C outside a training loop (start-up, evaluation, ...)
        code = 130
    if code == 130:  # typer ≥ 0.29 turns a KeyboardInterrupt into a silent exit code 130
        typer.echo("aborted", err=True)
    sys.exit(code if isinstance(code, int) else 0)


from . import catalog, tools, train  # noqa: E402,F401  (register the commands)
