"""Tables of the documentation, generated from benchmarks/results.jsonl: never typed by hand.

A page holds each table between ``<!-- table:NAME -->`` and ``<!-- /table -->``; ``python benchmarks/tables.py``
rewrites those blocks from the result lines (the latest line of each row wins: a rerun replaces its row), and
``--check`` only reports (exit 1) the blocks that differ from what the lines give, as the test suite does.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.jsonl"
PAGES = [ROOT / "README.md"]
BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def lines(path: Path = RESULTS) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def latest(rows: list[dict], *keys: str) -> dict[tuple, dict]:
    """The last row of each distinct ``keys`` value (a rerun replaces the earlier line of the same row)."""
    out: dict[tuple, dict] = {}
    for row in rows:
        out[tuple(row.get(k) for k in keys)] = row
    return out


ROW_NAMES = {
    "plain_online": "the 30-line loop, teacher online on every batch",
    "plain_cached": "the 30-line loop, teacher cached on the original image",
    "mvmr_online": "mvmr, teacher online on the student's view (no bank)",
    "mvmr_cross": "mvmr, teacher cached on the original view (MV-MR's cross view)",
    "mvmr_bank1": "mvmr, teacher bank of 1 epoch (same view, the same views every epoch)",
    "mvmr_bank2": "mvmr, teacher bank of 2 epochs (same view)",
    "mvmr_bank4": "mvmr, teacher bank of 4 epochs (same view)",
    "mvmr_bank16": "mvmr, teacher bank of 16 epochs (same view)",
    "kd_bank4": "mvmr, `kd` on the 1000 ImageNet logits (T = 1), bank of 4",
    "kd_cross": "mvmr, `kd` on the 1000 ImageNet logits (T = 1), cached on the original view",
    "dcor_bank4": "mvmr, the paper's 1 − dCor, bank of 4",
    "mvmr_cross_hand": "cross view, cos + smooth-L1, + MV-MR's pixels / HOG / LSD (1 − dCor, 0.1)",
    "mvmr_cross_views": "cross view, cos + smooth-L1, + MV-MR's view dCor (0.1)",
    "mvmr_bank4_hand": "bank of 4, cos + smooth-L1, + pixels / HOG / LSD (1 − dCor, 0.1)",
    "mvmr_bank4_views": "bank of 4, cos + smooth-L1, + MV-MR's view dCor (0.1)",
    "kd_bank4_hand": "bank of 4, `kd`, + pixels / HOG / LSD (1 − dCor, 0.1)",
    "kd_bank4_views": "bank of 4, `kd`, + MV-MR's view dCor (0.1)",
}


def real_teacher(rows: list[dict]) -> str:
    """bench_real_teacher.py: every student row at one budget, seeds side by side, against the teacher's k-NN."""
    mine = [r for r in rows if r.get("bench") == "real_teacher"]
    teacher = latest([r for r in mine if r["variant"] == "teacher"], "teacher")
    runs = latest([r for r in mine if "student_knn" in r], "variant", "seed", "budget_minutes")
    out = []
    for (t,), row in teacher.items():
        out.append(f"Teacher {t}: k-NN **{row['knn_top1']}**, linear probe {row['linear_probe']} "
                   f"({row['labels']:,} labels), one pass over the train images {row['pass_minutes']} min.\n")
        ref = row["knn_top1"]
    budgets = sorted({k[2] for k in runs})
    for budget in budgets:
        out += [f"| row (budget {budget:g} CPU-minutes) | epochs (seeds 0 / 1) | minutes | k-NN seed 0 | k-NN seed 1 "
                f"| best of the teacher |",
                "|---|---|---|---|---|---|"]
        for variant in ROW_NAMES:
            seeds = {s: runs[(variant, s, budget)] for s in (0, 1) if (variant, s, budget) in runs}
            if not seeds:
                continue
            knn = [seeds[s]["student_knn"] if s in seeds else None for s in (0, 1)]
            shown = [f"{k:.2f}" if k is not None else "" for k in knn]
            ratio = max(k for k in knn if k is not None) / ref
            epochs = " / ".join(str(seeds[s]["epochs"]) for s in sorted(seeds))
            minutes = " / ".join(f"{seeds[s]['minutes']:.1f}" for s in sorted(seeds))
            out.append(f"| {ROW_NAMES[variant]} | {epochs} | {minutes} | {shown[0]} | {shown[1]} | {ratio:.3f} |")
    steps = latest([r for r in mine if r["variant"] == "step_ratio"], "variant")
    for row in steps.values():
        out.append(f"\nA step reading the bank: {row['step_ms_bank']} ms; the same step with the teacher's outputs in "
                   f"memory (no teacher at all): {row['step_ms_no_teacher']} ms (**{row['bank_over_no_teacher']}x**); "
                   f"with the teacher online: {row['step_ms_online']} ms ({row['online_over_no_teacher']}x).")
    return "\n".join(out) + "\n"


def quickstart_distill(rows: list[dict]) -> str:
    """The quickstart_distill recipe's runs (bench: quickstart_distill lines)."""
    runs = latest([r for r in rows if r.get("bench") == "quickstart_distill"], "seed")
    out = ["| seed | student k-NN | at initialisation | teacher's own k-NN | minutes |", "|---|---|---|---|---|"]
    for (seed,), r in sorted(runs.items()):
        out.append(f"| {seed} | {r['knn_top1']:.2f} | {r['knn_top1_at_init']:.2f} | {r['teacher_knn_top1']:.2f} | "
                   f"{r['minutes']:.1f} |")
    return "\n".join(out) + "\n"


TABLES: dict[str, Callable[[list[dict]], str]] = {"real_teacher": real_teacher, "quickstart_distill": quickstart_distill}


def render(text: str, rows: list[dict]) -> str:
    """``text`` with every table block regenerated."""
    def one(m: re.Match) -> str:
        if m.group("name") not in TABLES:
            raise SystemExit(f"unknown table '{m.group('name')}' (tables: {', '.join(TABLES)})")
        return m.group(1) + TABLES[m.group("name")](rows) + m.group(4)
    return BLOCK.sub(one, text)


def main(check: bool = False) -> int:
    rows, stale = lines(), []
    for page in PAGES:
        text = page.read_text()
        new = render(text, rows)
        if new != text:
            stale.append(page.name)
            if not check:
                page.write_text(new)
    if check and stale:
        print(f"tables out of date in {', '.join(stale)}: run python benchmarks/tables.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
