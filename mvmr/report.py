"""``mvmr report``: pictures of runs (every loss term, dCor per provider, k-NN per epoch, throughput) as PNG files,
several runs overlaid, and a markdown table of their results. Needs matplotlib (``pip install 'mvmr[report]'``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import MVMRError

FIGSIZE, DPI = (8, 5), 100  # every figure is 800 × 500 pixels


def load_run(folder: Path) -> dict[str, Any]:
    """A run folder's name, recipe, metrics records and summary."""
    folder = Path(folder)
    metrics = folder / "metrics.jsonl"
    if not metrics.is_file():
        raise MVMRError(f"report: '{folder}' is not a run folder (no metrics.jsonl); pass folders written by "
                        f"mvmr pretrain/distill")
    return {"name": folder.name, "recipe": _read_mapping(folder / "recipe.yaml", yaml.safe_load),
            "records": read_records(metrics), "summary": _read_mapping(folder / "summary.json", json.loads)}


def _read_mapping(path: Path, parse) -> dict[str, Any]:
    """A run's recipe.yaml or summary.json (absent: empty), or one line naming the damaged file."""
    if not path.is_file():
        return {}
    try:
        tree = parse(path.read_text())
    except (OSError, ValueError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MVMRError(f"report: '{path}' is damaged ({type(exc).__name__}); restore it, or delete it to report "
                        f"without it") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise MVMRError(f"report: '{path}' holds a {type(tree).__name__}, not a mapping; restore it or delete it")
    return tree


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of metrics.jsonl. A last line cut short (a run still writing, or killed) is skipped; any other
    bad line is one error naming the file and the line."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise MVMRError(f"report: cannot read '{path}' ({exc})") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                continue  # the run is still writing it, or was killed mid-line
            raise MVMRError(f"report: '{path}' line {number} is not JSON; a metrics file holds one JSON record per "
                            f"line (remove that line)") from None
        if not isinstance(record, dict):
            raise MVMRError(f"report: '{path}' line {number} is {type(record).__name__} {line.strip()[:20]!r}, not a "
                            f"record (a JSON object); remove that line")
        if "loss" in record and not isinstance(record.get("step"), int):
            raise MVMRError(f"report: '{path}' line {number} has a loss but no integer 'step'; remove that line")
        records.append(_numbers_only(record, f"'{path}' line {number}"))
    return records


def _numbers_only(record: dict[str, Any], where: str) -> dict[str, Any]:
    """The record without the values a figure cannot draw, each named in one warning line: a value that is not a
    number (null, text), and a k-NN value without the integer ``epoch`` it is drawn at."""
    import sys

    kept = {}
    for key, value in record.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            print(f"warning: report: {where}: '{key}' is {json.dumps(value)[:20]}, not a number; drawn without it",
                  file=sys.stderr)
        else:
            kept[key] = value
    knn = [k for k in kept if k.startswith("knn_")]
    if knn and not isinstance(kept.get("epoch"), int):
        print(f"warning: report: {where}: {', '.join(knn)} without an integer 'epoch'; drawn without it",
              file=sys.stderr)
        kept = {k: v for k, v in kept.items() if k not in knn}
    return kept


def _minutes(run: dict[str, Any]) -> Optional[float]:
    if "minutes" in run["summary"]:
        return run["summary"]["minutes"]
    times = [r["time"] for r in run["records"] if "time" in r]
    return (max(times) - min(times)) / 60 if len(times) > 1 else None


def summary_table(runs: list[dict[str, Any]]) -> str:
    """Markdown: run, method, epochs, final k-NN, init k-NN, minutes (numbers from each run's summary.json)."""
    def num(v, fmt="{:.2f}"):
        return fmt.format(v) if isinstance(v, (int, float)) else "n/a"
    rows = ["| run | method | epochs | final k-NN | init k-NN | minutes |", "|---|---|---|---|---|---|"]
    for run in runs:
        s = run["summary"]
        rows.append(f"| {run['name']} | {run['recipe'].get('method', 'n/a')} | {num(s.get('epochs_completed'), '{}')} "
                    f"| {num(s.get('knn_top1'))} | {num(s.get('knn_top1_at_init'))} | {num(_minutes(run), '{:.1f}')} |")
    return "\n".join(rows)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MVMRError("mvmr report needs matplotlib: pip install 'mvmr[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt, keys: list[str], title: str):
    cols = min(3, max(1, len(keys)))
    rows = max(1, -(-len(keys) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=FIGSIZE, dpi=DPI, squeeze=False)
    fig.suptitle(title)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    return fig, dict(zip(keys, axes.flat))


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def plot_runs(runs: list[dict[str, Any]], out: Path) -> list[Path]:
    """Write terms.png, dcor.png, knn.png and throughput.png into ``out``; returns the files written."""
    if out.exists() and not out.is_dir():
        raise MVMRError(f"report: --out '{out}' is a file; name a folder for the PNG files")
    plt = _pyplot()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MVMRError(f"report: cannot create '{out}' ({exc.strerror or exc}); choose a writable --out") from None
    steps = [[r for r in run["records"] if "loss" in r] for run in runs]
    skip = {"step", "epoch", "lr", "time", "images_per_s"}
    terms = sorted({k for recs in steps for r in recs for k in r if k not in skip}, key=lambda k: (k != "loss", k))
    written = []
    for name, keys, value, title in [
        ("terms.png", terms, lambda r, k: r[k], "loss terms"),
        ("dcor.png", [k for k in terms if k.startswith("dcor")], lambda r, k: 1.0 - r[k],
         "dependence per representation (1 − term: dCor, or dCor² for the unbiased estimator)"),
    ]:
        fig, axes = _grid(plt, keys or ["(none)"], title)
        for run, recs in zip(runs, steps):
            for k, ax in axes.items():
                pts = [(r["step"], value(r, k)) for r in recs if k in r]
                if pts:
                    ax.plot(*zip(*pts), label=run["name"])
                ax.set_title(k, fontsize=9)
                ax.set_xlabel("step", fontsize=8)
        next(iter(axes.values())).legend(fontsize=7)
        written.append(_save(fig, out / name))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    for i, run in enumerate(runs):
        pts = [(r["epoch"], r["knn_top1"]) for r in run["records"] if "knn_top1" in r]
        line = ax.plot(*zip(*pts), marker="o", label=run["name"])[0] if pts else ax.plot([], [], label=run["name"])[0]
        init = run["summary"].get("knn_top1_at_init")
        if init is not None:
            ax.axhline(init, linestyle="--", color=line.get_color(), label=f"{run['name']} at initialisation")
    ax.set(xlabel="epoch", ylabel="k-NN top-1 (%)", title="online k-NN")
    ax.legend(fontsize=8)
    written.append(_save(fig, out / "knn.png"))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    for run, recs in zip(runs, steps):
        pts = [(r["step"], r["images_per_s"]) for r in recs if "images_per_s" in r]
        if pts:
            ax.plot(*zip(*pts), label=run["name"])
    ax.set(xlabel="step", ylabel="images / s", title="throughput")
    ax.legend(fontsize=8)
    written.append(_save(fig, out / "throughput.png"))
    plt.close(fig)
    return written
