"""Figures of the documentation, drawn from benchmarks/results.jsonl with the same selections as its tables
(``python benchmarks/figures.py [OUT_DIR]``, default docs/studies/img; needs matplotlib: ``mvmr[report]``)."""
from __future__ import annotations

import sys
from pathlib import Path

import tables


def save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def real_teacher(rows: list[dict], out: Path) -> Path:
    """k-NN of every real-teacher row against its measured minutes, the teacher's own k-NN as a line."""
    import matplotlib.pyplot as plt

    teacher = tables.one(rows, "real_teacher", variant="teacher", teacher="efficientnet-lite0@128")
    runs = tables.latest([r for r in tables.select(rows, "real_teacher", teacher="efficientnet-lite0@128")
                          if "student_knn" in r], "variant", "seed")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (variant, seed), r in sorted(runs.items()):
        plain = variant.startswith("plain")
        ax.scatter(r["minutes"], r["student_knn"], marker="s" if plain else "o", color="tab:gray" if plain else
                   "tab:blue")
        ax.annotate(f"{variant} s{seed}", (r["minutes"], r["student_knn"]), fontsize=7, xytext=(4, 2),
                    textcoords="offset points")
    ax.axhline(teacher["knn_top1"], color="tab:red", linestyle="--", linewidth=1)
    ax.text(ax.get_xlim()[0], teacher["knn_top1"] + 0.3, "the teacher (EfficientNet-Lite0 at 128 px)", fontsize=8,
            color="tab:red")
    ax.set_xlabel("measured minutes on 2 CPU cores (budget 10, teacher passes included)")
    ax.set_ylabel("student k-NN top-1 (%)")
    ax.set_title("A real teacher into a ResNet-18 at one CPU budget (squares: the 30-line loops)", fontsize=10)
    return save(fig, out / "real_teacher.png")


def objective_ratios(rows: list[dict], out: Path) -> Path:
    """Student k-NN over teacher k-NN for each objective of the first distillation round (6 epochs)."""
    import matplotlib.pyplot as plt

    span = (9, 36)
    ref = tables.one(rows, "distill_transfer", span, variant="teacher")["knn_top1"]
    runs = tables.latest([r for r in tables.select(rows, "distill_transfer", span) if "student_knn" in r],
                         "variant", "seed")
    seed0 = sorted(((v, r["student_knn"] / ref) for (v, s), r in runs.items() if s == 0), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 4.8))
    ax.barh([v for v, _ in seed0], [x for _, x in seed0],
            color=["tab:gray" if v.startswith("plain") else "tab:blue" for v, _ in seed0])
    ax.axvline(1.0, color="tab:red", linestyle="--", linewidth=1)
    ax.set_xlabel("student k-NN / teacher k-NN (seed 0, 6 epochs; gray: the 30-line loop)")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title("Which objective moves an in-domain teacher into the student", fontsize=10)
    return save(fig, out / "objective_ratios.png")


def main(argv: list[str]) -> int:
    import matplotlib

    matplotlib.use("Agg")
    out = Path(argv[0]) if argv else tables.DOCS / "studies" / "img"
    out.mkdir(parents=True, exist_ok=True)
    rows = tables.lines()
    for draw in (real_teacher, objective_ratios):
        print(draw(rows, out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
