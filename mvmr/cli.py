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
teachers_app = typer.Typer(no_args_is_help=True, help="Frozen pretrained teachers.")
app.add_typer(teachers_app, name="teachers")
cache_app = typer.Typer(no_args_is_help=True, help="The on-disk cache of deterministic providers' features.")
app.add_typer(cache_app, name="cache")


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


@teachers_app.command("list")
def teachers_list() -> None:
    """List registered teachers (families take a spec after a colon)."""
    from rich.console import Console
    from rich.table import Table

    from .registry import teachers

    table = Table("name", "description")
    for name in teachers.names():
        doc = (teachers.factory(name).__doc__ or "").strip().split("\n")[0]
        table.add_row(f"{name}:<spec>" if teachers.is_family(name) else name, doc)
    Console(width=max(Console().width, 120)).print(table)


@cache_app.command("build")
def cache_build(recipe: Path = typer.Argument(..., help="Recipe YAML."),
                set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable).")) -> None:
    """Compute the deterministic providers' features of the recipe's training images ahead of training."""
    from .cache import build_caches
    from .config import load_recipe

    for line in build_caches(load_recipe(recipe, set_)):
        typer.echo(line)


def _cache_dir(directory: Optional[Path]) -> Path:
    from .config import TrainerConfig

    return (directory or Path(TrainerConfig().cache_dir)).expanduser()


@cache_app.command("info")
def cache_info(directory: Optional[Path] = typer.Option(None, "--dir", help="Cache folder (default ~/.cache/mvmr).")) -> None:
    """List cached features: provider, dataset, size, how much is filled."""
    from .cache import cache_entries

    root = _cache_dir(directory)
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
def cache_clear(directory: Optional[Path] = typer.Option(None, "--dir", help="Cache folder (default ~/.cache/mvmr).")) -> None:
    """Delete every cache in the folder."""
    import shutil

    root = _cache_dir(directory)
    removed = [p for p in root.glob("*") if p.is_dir() and ((p / "meta.json").exists() or p.name.startswith("."))]
    for p in removed:
        shutil.rmtree(p)
    typer.echo(f"removed {len(removed)} cache folder(s) from {root}")


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


RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


@app.command()
def distill(teacher: str = typer.Option("clip-vit-b16", "--teacher", help="Teacher name (mvmr teachers list)."),
            recipe: Optional[Path] = typer.Argument(None, help="Recipe YAML (default: recipes/stl10_distill_clip.yaml)."),
            teacher_weights: Optional[Path] = typer.Option(None, "--teacher-weights", help="Local weight file."),
            set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
            out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<recipe name>)."),
            resume: bool = typer.Option(False, "--resume", help="Continue the run in --out.")) -> None:
    """Distil a frozen teacher into the student: MV-MR with the term w·(1 − dCor(z̃, teacher(x)))."""
    from .config import build_recipe, load_recipe
    from .engine import pretrain as run
    from .registry import teachers

    recipe = recipe or RECIPES_DIR / "stl10_distill_clip.yaml"
    out_dir = _out_dir(recipe, out)
    saved = out_dir / "recipe.yaml"
    cfg = load_recipe(saved if resume and saved.is_file() else recipe, set_)
    teachers.lookup(teacher)  # unknown teacher: one clear line before anything else
    tree = cfg.to_dict()
    # The named teacher replaces the recipe's teachers; it keeps their weight (and params when it is the same one).
    old = {n: p for n, p in tree["providers"].items() if n in teachers}
    entry = old.get(teacher) or {"weight": next(iter(old.values()), {"weight": 1.0})["weight"], "params": {}}
    tree["providers"] = {n: p for n, p in tree["providers"].items() if n not in old}
    if teacher_weights is not None:
        entry = {**entry, "params": {**entry["params"], "weights": str(teacher_weights.expanduser().resolve())}}
    tree["providers"][teacher] = entry
    summary = run(build_recipe(tree, source=str(recipe)), out_dir, resume)
    _print_summary(summary, out_dir)


def _print_summary(summary: dict, out_dir: Path) -> None:
    if "knn_top1" in summary:
        init = summary.get("knn_top1_at_init")
        typer.echo(f"k-NN top-1: {summary['knn_top1']:.2f}% learned"
                   + (f" vs {init:.2f}% at initialisation" if init is not None else ""))
    typer.echo(f"run folder: {out_dir}")


def _load_checkpoint(path: Path):
    from .checkpoint import load_checkpoint

    return load_checkpoint(path, with_providers=False)


def _eval_features(protocol: str):
    def run(method, recipe, limit, k, t, device):
        from .eval import evaluate

        return evaluate(method.student.to(device), recipe.data, protocol, k, t, limit, str(device))
    return run


def _eval_clusters(method, recipe, limit, k, t, device):
    import torch

    from .eval import cluster_metrics, labelled_splits

    if not hasattr(method, "predict_clusters"):
        raise MVMRError(f"a '{recipe.method}' checkpoint has no clustering head; 'eval clusters' is for method: mira")
    _, test = labelled_splits(recipe.data, limit)
    method.to(device).eval()
    preds, labels = [], []
    for images, y in torch.utils.data.DataLoader(test, batch_size=256):
        preds.append(method.predict_clusters(images.to(device)).cpu())
        labels.append(torch.as_tensor(y))
    return cluster_metrics(torch.cat(preds), torch.cat(labels))


EVALUATORS = {"knn": _eval_features("knn"), "linear": _eval_features("linear"), "clusters": _eval_clusters}


@app.command("eval")
def eval_(protocol: str = typer.Argument(..., help="knn | linear | clusters"),
          checkpoint: Path = typer.Argument(..., help="A checkpoint written by mvmr (run/checkpoints/last.pt)."),
          data: list[str] = typer.Option([], "--data", help="Override the data section: key=value (e.g. name=cifar10)."),
          limit: Optional[int] = typer.Option(None, help="At most N train and N test images."),
          k: int = typer.Option(20, help="k-NN neighbours."), t: float = typer.Option(0.07, help="k-NN temperature.")) -> None:
    """Evaluate a checkpoint: weighted k-NN or a linear probe on the frozen backbone (top-1, top-5), or the
    prototype assignments of a MIRA head against the labels (NMI, AMI, ARI, Hungarian accuracy)."""
    import json

    from .config import build_recipe
    from .engine import resolve_device

    if protocol not in EVALUATORS:
        raise MVMRError(f"unknown protocol '{protocol}'; use one of {', '.join(EVALUATORS)}")
    recipe, method = _load_checkpoint(checkpoint)
    recipe = build_recipe(recipe.to_dict(), [f"data.{d}" for d in data], source="--data")
    device = resolve_device(recipe.trainer.device)
    result = EVALUATORS[protocol](method, recipe, limit, k, t, device)
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
