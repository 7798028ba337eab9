"""Training commands: ``pretrain`` and ``distill``."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

import typer

from ..errors import MVMRError
from . import app

IMPORT_HELP = "Import a module (or .py file) that registers teachers, extractors, methods or datasets (repeatable)."


def import_modules(names: list[str]) -> None:
    """``--import``: user modules whose import registers plug-ins through the public API."""
    for name in names:
        try:
            if name.endswith(".py"):
                path = Path(name).expanduser()
                if not path.is_file():
                    raise MVMRError(f"--import: '{path}' " + ("is a folder; name the .py file" if path.is_dir()
                                                               else "does not exist"))
                # under a private name: a plug-in file named like a module (json.py) never replaces that module
                private = f"mvmr_plugin_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
                spec = importlib.util.spec_from_file_location(private, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[private] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(name)
        except MVMRError:
            raise
        except SystemExit as exc:  # a plug-in that exits on import must not end the command with its code
            raise MVMRError(f"--import {name}: importing it called sys.exit({exc.code!r}); a plug-in module must "
                            f"only register things when imported") from None
        except Exception as exc:
            raise MVMRError(f"--import {name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; "
                            f"give an importable module name or a .py file") from None


def _out_dir(recipe_path: Path, out: Optional[str]) -> Path:
    if out is not None and not out.strip():
        raise MVMRError("--out is empty (an unset variable?); name the run folder, e.g. --out runs/my_run")
    return Path(out).expanduser() if out is not None else Path("runs") / recipe_path.stem


def _command(name: str, recipe: str, out_dir: Path, extra: str = "", imports: Sequence[str] = ()) -> str:
    """The command that resumes a run, with the --import modules its plug-ins need."""
    shown = "".join(f" --import {shlex.quote(m)}" for m in imports)
    return f"mvmr {name} {shlex.quote(str(recipe))}{extra} --out {shlex.quote(str(out_dir))} --resume{shown}"


@app.command()
def pretrain(recipe_name: str = typer.Argument(..., metavar="RECIPE",
                                               help="Recipe: a YAML file or a packaged recipe name (mvmr recipes list)."),
             set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
             out: Optional[str] = typer.Option(None, "--out", help="Run folder (default: runs/<recipe name>)."),
             resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint."),
             imports: list[str] = typer.Option([], "--import", help=IMPORT_HELP)) -> None:
    """Pretrain a student with the recipe's method (MV-MR, MIRA, or a plug-in's)."""
    from ..recipe_files import load_recipe, resolve_recipe
    from ..engine import pretrain as run, resume_recipe

    import_modules(imports)
    recipe = resolve_recipe(recipe_name)
    out_dir = _out_dir(recipe, out)
    # On --resume the checkpoint's recipe is the truth (--set may change only where/how long it runs).
    cfg, state = resume_recipe(out_dir, recipe, set_) if resume else (load_recipe(recipe, set_), None)
    summary = run(cfg, out_dir, resume, source=recipe, state=state,
                  resume_command=_command("pretrain", recipe_name, out_dir, imports=imports))
    _print_summary(summary, out_dir)


@app.command()
def distill(teacher: list[str] = typer.Option([], "--teacher", help="Teacher name (mvmr teachers list); repeat it "
                                             "for several teachers, one term each. Default: the recipe's teachers."),
            recipe_name: str = typer.Argument("stl10_distill_clip", metavar="[RECIPE]",
                                              help="Recipe: a YAML file or a packaged recipe name."),
            teacher_weights: list[Path] = typer.Option([], "--teacher-weights", help="Local weight file; with several "
                                                       "--teacher, one per teacher in the same order, or KEY=FILE "
                                                       "for the teachers that need one."),
            objective: Optional[str] = typer.Option(None, "--objective", help="The teacher terms' objective "
                                                    "(mvmr objectives: cos_smoothl1, mse, cosine, dcor, ...); "
                                                    "default: the recipe's."),
            ensemble: bool = typer.Option(False, "--ensemble", help="One term on the teachers' averaged outputs "
                                          "(with a kd recipe: the ensemble's class posterior, one head) instead of "
                                          "one term each."),
            set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
            out: Optional[str] = typer.Option(None, "--out", help="Run folder (default: runs/<recipe name>)."),
            resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
            imports: list[str] = typer.Option([], "--import", help=IMPORT_HELP)) -> None:
    """Distil frozen teachers into the student, label-free: the recipe's objective between a student
    representation and each teacher's features (e.g. cosine + smooth-L1 through an adaptor, or MV-MR's 1 − dCor)."""
    from ..config import build_recipe
    from ..distill import as_ensemble, kind, teacher_entries, with_teachers
    from ..engine import pretrain as run, resume_recipe
    from ..recipe_files import load_recipe, resolve_recipe
    from ..registry import teachers

    import_modules(imports)
    recipe = resolve_recipe(recipe_name)
    out_dir = _out_dir(recipe, out)
    for name in teacher:
        teachers.lookup(name)  # unknown teacher: one clear line before anything else
    extra = "".join(f" --teacher {name}" for name in teacher)
    if resume:
        for flag, value in (("--objective", objective), ("--teacher-weights", teacher_weights or None),
                            ("--ensemble", ensemble or None)):
            if value is not None:
                raise MVMRError(f"--resume continues the run with its saved teacher settings; {flag} would change "
                                f"them: resume without {flag}, or start a new run with another --out")
        cfg, state = resume_recipe(out_dir, recipe, set_)
        saved = {kind(n, p.model_dump()) for n, p in cfg.providers.items()}
        for name in teacher:
            if name not in saved:
                raise MVMRError(f"--resume: the run in {out_dir} distils {', '.join(cfg.providers) or 'no teacher'}, "
                                f"not '{name}'; resume without --teacher, or start a new run with another --out")
        summary = run(cfg, out_dir, True, source=recipe, state=state,
                      resume_command=_command("distill", recipe_name, out_dir, extra, imports))
        _print_summary(summary, out_dir)
        return
    tree = load_recipe(recipe, set_).to_dict()
    if not teacher and not teacher_entries(tree["providers"]):
        teacher = ["clip-vit-b16"]  # a recipe without a teacher distils the MV-MR paper's
    tree["providers"] = with_teachers(tree["providers"], teacher or None, teacher_weights, objective)
    if ensemble:
        tree["providers"] = as_ensemble(tree["providers"])
    names = [kind(n, p) for n, p in teacher_entries(tree["providers"]).items()]
    summary = run(build_recipe(tree, source=str(recipe)), out_dir, False, source=recipe,
                  resume_command=_command("distill", recipe_name, out_dir,
                                          "".join(f" --teacher {n}" for n in names), imports))
    _print_summary(summary, out_dir)


def _print_summary(summary: dict, out_dir: Path) -> None:
    """The k-NN result beside the same network at initialisation, and where the run is."""
    if "knn_top1" in summary:
        init = summary.get("knn_top1_at_init")
        typer.echo(f"k-NN top-1: {summary['knn_top1']:.2f}% learned"
                   + (f" vs {init:.2f}% at initialisation" if init is not None else "")
                   + "".join(f"; teacher {name}: {value:.2f}%" for name, value in summary.get("teacher_knn_top1", {}).items()))
    typer.echo(f"run folder: {out_dir}")
    typer.echo(f"draw it: mvmr report {out_dir}")


