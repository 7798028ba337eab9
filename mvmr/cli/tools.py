"""Commands on finished runs: ``eval`` (k-NN, linear probe, clusters) and ``export`` (a plain backbone)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import MVMRError
from . import app


def _with_data(recipe, data: list[str]):
    """The checkpoint's recipe with ``--data`` overrides, and the device its trainer section names."""
    from ..config import build_recipe
    from ..engine import resolve_device

    recipe = build_recipe(recipe.to_dict(), [f"data.{d}" for d in data], source="--data")
    return recipe, resolve_device(recipe.trainer.device)


def _eval_features(protocol: str):
    def run(checkpoint, data, limit, k, t):
        from ..checkpoint import load_student
        from ..eval import evaluate

        recipe, student = load_student(checkpoint)
        recipe, device = _with_data(recipe, data)
        return evaluate(student.to(device), recipe.data, protocol, k, t, limit, str(device))
    return run


def _eval_clusters(checkpoint, data, limit, k, t):
    from ..checkpoint import load_checkpoint
    from ..eval import evaluate_clusters

    recipe, method = load_checkpoint(checkpoint, with_providers=False)  # the clustering head, not just the student
    recipe, device = _with_data(recipe, data)
    return evaluate_clusters(method, recipe.data, limit, device)


EVALUATORS = {"knn": _eval_features("knn"), "linear": _eval_features("linear"), "clusters": _eval_clusters}


@app.command("eval")
def eval_(protocol: str = typer.Argument(..., help="knn | linear | clusters"),
          checkpoint: Path = typer.Argument(..., help="A checkpoint written by mvmr (run/checkpoints/last.pt)."),
          data: list[str] = typer.Option([], "--data", help="Override the data section: key=value (e.g. name=cifar10)."),
          limit: Optional[int] = typer.Option(None, min=1, help="At most N train and N test images."),
          k: int = typer.Option(20, min=1, help="k-NN neighbours."),
          t: float = typer.Option(0.07, min=1e-6, help="k-NN temperature.")) -> None:
    """Evaluate a checkpoint: weighted k-NN or a linear probe on the frozen backbone (top-1, top-5), or the
    prototype assignments of a MIRA head against the labels (NMI, AMI, ARI, Hungarian accuracy)."""
    import json

    if protocol not in EVALUATORS:
        raise MVMRError(f"unknown protocol '{protocol}'; use one of {', '.join(EVALUATORS)}")
    result = EVALUATORS[protocol](checkpoint, data, limit, k, t)
    typer.echo(json.dumps({"protocol": protocol, **result}))


def _check_output_file(out: Path, source: Path) -> None:
    """Refuse an export target that would overwrite the input, is a folder, or cannot be written."""
    import os

    out = out.expanduser()
    if out.exists() and out.resolve() == source.expanduser().resolve():
        raise MVMRError(f"export: '{out}' is the checkpoint being exported; choose another output file")
    if out.is_dir():
        raise MVMRError(f"export: '{out}' is a folder; give a file name such as {out / 'backbone.pt'}")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise MVMRError(f"export: cannot create '{out}': '{parent}' is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK) or str(out.resolve()).startswith(("/proc/", "/sys/", "/dev/")):
        raise MVMRError(f"export: cannot write under '{parent}'; choose a writable path")


@app.command()
def export(checkpoint: Path = typer.Argument(..., help="A checkpoint written by mvmr."),
           out: Path = typer.Argument(..., help="Where to write the backbone state_dict (.pt).")) -> None:
    """Write the student's backbone as a plain state_dict for the torchvision/timm constructor of the same name."""
    from ..checkpoint import atomic_save, load_student

    _check_output_file(out, checkpoint)
    recipe, student = load_student(checkpoint)
    try:
        atomic_save(student.backbone.state_dict(), out.expanduser())
    except OSError as exc:
        raise MVMRError(f"export: cannot write '{out}' ({exc.strerror or exc}); choose a writable path") from None
    typer.echo(f"wrote {out} ({recipe.student.backbone}, {recipe.student.stem} stem)")




@app.command()
def report(runs: list[Path] = typer.Argument(..., help="Run folders (written by mvmr pretrain/distill)."),
           out: Optional[Path] = typer.Option(None, "--out", help="Folder for the PNG files (default: FIRST_RUN/report).")) -> None:
    """Draw runs (loss terms, dCor per provider, k-NN per epoch, images/s; several runs overlaid) and print a
    markdown table of their results."""
    from ..report import load_run, plot_runs, summary_table

    loaded = [load_run(r) for r in runs]
    for path in plot_runs(loaded, out or runs[0] / "report"):
        typer.echo(f"wrote {path}")
    typer.echo(summary_table(loaded))
