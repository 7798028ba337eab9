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
def extractors_list(image_size: int = typer.Option(96, min=8, help="Image side used to report output sizes.")) -> None:
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
def cache_clear(directory: Optional[str] = typer.Option(None, "--dir", help="Cache folder (default ~/.cache/mvmr)."),
                dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing.")) -> None:
    """Delete the feature caches mvmr made in the folder (folders named by a cache key, holding mvmr's meta.json);
    nothing else in it is touched, and no symlink is followed."""
    from .cache import clear_caches

    if directory is not None and not directory.strip():
        raise MVMRError("cache clear: --dir is empty (an unset variable?); name the cache folder, or omit --dir "
                        "for ~/.cache/mvmr")
    root = _cache_dir(Path(directory) if directory is not None else None)
    found = clear_caches(root, dry_run)
    for p in found:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {p}")
    typer.echo(f"{'would remove' if dry_run else 'removed'} {len(found)} cache folder(s) from {root}")


def _out_dir(recipe_path: Path, out: Optional[Path]) -> Path:
    return out if out is not None else Path("runs") / recipe_path.stem


def _command(name: str, recipe: Path, out_dir: Path, extra: str = "") -> str:
    return f"mvmr {name} {recipe}{extra} --out {out_dir} --resume"


@app.command()
def pretrain(recipe: Path = typer.Argument(..., help="Recipe YAML."),
             set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
             out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<recipe name>)."),
             resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint.")) -> None:
    """Pretrain a student with the recipe's method (MV-MR or MIRA)."""
    from .config import load_recipe
    from .engine import pretrain as run, resume_recipe

    out_dir = _out_dir(recipe, out)
    # On --resume the checkpoint's recipe is the truth (--set may change only where/how long it runs).
    cfg = resume_recipe(out_dir, recipe, set_) if resume else load_recipe(recipe, set_)
    summary = run(cfg, out_dir, resume, source=recipe, resume_command=_command("pretrain", recipe, out_dir))
    _print_summary(summary, out_dir)


RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


@app.command()
def distill(teacher: Optional[str] = typer.Option(None, "--teacher", help="Teacher name (mvmr teachers list); "
                                                  "default clip-vit-b16."),
            recipe: Optional[Path] = typer.Argument(None, help="Recipe YAML (default: recipes/stl10_distill_clip.yaml)."),
            teacher_weights: Optional[Path] = typer.Option(None, "--teacher-weights", help="Local weight file."),
            set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
            out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<recipe name>)."),
            resume: bool = typer.Option(False, "--resume", help="Continue the run in --out.")) -> None:
    """Distil a frozen teacher into the student: MV-MR with the term w·(1 − dCor(z̃, teacher(x)))."""
    from .config import build_recipe, load_recipe
    from .engine import pretrain as run, resume_recipe
    from .registry import teachers

    recipe = recipe or RECIPES_DIR / "stl10_distill_clip.yaml"
    out_dir = _out_dir(recipe, out)
    if teacher is not None:
        teachers.lookup(teacher)  # unknown teacher: one clear line before anything else
    extra = f" --teacher {teacher}" if teacher else ""
    if resume:
        cfg = resume_recipe(out_dir, recipe, set_)
        if teacher is not None and teacher not in cfg.providers:
            raise MVMRError(f"--resume: the run in {out_dir} distils {', '.join(cfg.providers) or 'no teacher'}, "
                            f"not '{teacher}'; resume without --teacher, or start a new run with another --out")
        summary = run(cfg, out_dir, True, source=recipe, resume_command=_command("distill", recipe, out_dir, extra))
        _print_summary(summary, out_dir)
        return
    teacher = teacher or "clip-vit-b16"
    cfg = load_recipe(recipe, set_)
    tree = cfg.to_dict()
    # The named teacher replaces the recipe's teachers; it keeps their weight (and params when it is the same one).
    old = {n: p for n, p in tree["providers"].items() if n in teachers}
    entry = old.get(teacher) or {"weight": next(iter(old.values()), {"weight": 1.0})["weight"], "params": {}}
    tree["providers"] = {n: p for n, p in tree["providers"].items() if n not in old}
    if teacher_weights is not None:
        entry = {**entry, "params": {**entry["params"], "weights": str(teacher_weights.expanduser().resolve())}}
    tree["providers"][teacher] = entry
    summary = run(build_recipe(tree, source=str(recipe)), out_dir, False, source=recipe,
                  resume_command=_command("distill", recipe, out_dir, f" --teacher {teacher}"))
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
          limit: Optional[int] = typer.Option(None, min=1, help="At most N train and N test images."),
          k: int = typer.Option(20, min=1, help="k-NN neighbours."),
          t: float = typer.Option(0.07, min=1e-6, help="k-NN temperature.")) -> None:
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
    from .checkpoint import atomic_save

    _check_output_file(out, checkpoint)
    recipe, method = _load_checkpoint(checkpoint)
    try:
        atomic_save(method.student.backbone.state_dict(), out.expanduser())
    except OSError as exc:
        raise MVMRError(f"export: cannot write '{out}' ({exc.strerror or exc}); choose a writable path") from None
    typer.echo(f"wrote {out} ({recipe.student.backbone}{', small stem' if recipe.student.small_stem else ''})")


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
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
