"""The ``mvmr`` command line (typer). Every user-facing error is one line on stderr and exit code 2."""
from __future__ import annotations

import sys
from pathlib import Path
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


def _out_dir(recipe_path: Path, out: Optional[Path]) -> Path:
    return out if out is not None else Path("runs") / recipe_path.stem


@app.command()
def pretrain(recipe: Path = typer.Argument(..., help="Recipe YAML."),
             set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
             out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<recipe name>)."),
             resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint.")) -> None:
    """Pretrain a student with the recipe's method (MV-MR or MIRA)."""
    from .config import load_recipe
    from .engine import pretrain as run

    out_dir = _out_dir(recipe, out)
    saved = out_dir / "recipe.yaml"
    # The saved recipe is the truth of a run being resumed (--set may change only where/how long it runs).
    cfg = load_recipe(saved if resume and saved.is_file() else recipe, set_)
    summary = run(cfg, out_dir, resume)
    _print_summary(summary, out_dir)


def _print_summary(summary: dict, out_dir: Path) -> None:
    if "knn_top1" in summary:
        init = summary.get("knn_top1_at_init")
        typer.echo(f"k-NN top-1: {summary['knn_top1']:.2f}% learned"
                   + (f" vs {init:.2f}% at initialisation" if init is not None else ""))
    typer.echo(f"run folder: {out_dir}")


def _load_checkpoint(path: Path):
    import torch

    from .config import build_recipe
    from .methods import build_method

    if not path.is_file():
        raise MVMRError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        recipe = build_recipe(state["recipe"], source=str(path))
    except MVMRError:
        raise
    except Exception as exc:
        raise MVMRError(f"'{path}' is not an mvmr checkpoint ({type(exc).__name__}: {exc})") from None
    method = build_method(recipe)
    method.load_trainable_state(state["method"])
    return recipe, method


@app.command("eval")
def eval_(protocol: str = typer.Argument(..., help="knn | linear"),
          checkpoint: Path = typer.Argument(..., help="A checkpoint written by mvmr (run/checkpoints/last.pt)."),
          data: list[str] = typer.Option([], "--data", help="Override the data section: key=value (e.g. name=cifar10)."),
          limit: Optional[int] = typer.Option(None, help="At most N train and N test images."),
          k: int = typer.Option(20, help="k-NN neighbours."), t: float = typer.Option(0.07, help="k-NN temperature.")) -> None:
    """Evaluate the frozen backbone of a checkpoint: weighted k-NN or a linear probe; prints top-1 and top-5."""
    import json

    from .config import build_recipe
    from .engine import resolve_device
    from .eval import PROTOCOLS, evaluate

    if protocol not in PROTOCOLS:
        raise MVMRError(f"unknown protocol '{protocol}'; use one of {', '.join(PROTOCOLS)}")
    recipe, method = _load_checkpoint(checkpoint)
    recipe = build_recipe(recipe.to_dict(), [f"data.{d}" for d in data], source="--data")
    device = resolve_device(recipe.trainer.device)
    result = evaluate(method.student.to(device), recipe.data, protocol, k, t, limit, str(device))
    typer.echo(json.dumps({"protocol": protocol, **result}))


@app.command()
def export(checkpoint: Path = typer.Argument(..., help="A checkpoint written by mvmr."),
           out: Path = typer.Argument(..., help="Where to write the backbone state_dict (.pt).")) -> None:
    """Write the student's backbone as a plain state_dict for the torchvision/timm constructor of the same name."""
    from .engine import atomic_save

    recipe, method = _load_checkpoint(checkpoint)
    atomic_save(method.student.backbone.state_dict(), out)
    typer.echo(f"wrote {out} ({recipe.student.backbone}{', small stem' if recipe.student.small_stem else ''})")


def main() -> None:
    """Console entry point: run the app, turning mvmr errors into one line and exit code 2."""
    try:
        app()
    except MVMRError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
