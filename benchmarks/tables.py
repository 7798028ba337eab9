"""Tables of the documentation, generated from benchmarks/results.jsonl: never typed by hand.

A page holds each table between ``<!-- table:NAME -->`` and ``<!-- /table -->``; ``python benchmarks/tables.py``
(or ``python -m benchmarks.tables``) rewrites those blocks from the result lines, ``--check`` only reports (exit 1)
the blocks that differ from what the lines give, as the test suite does, and ``--unused`` lists the result lines
that no table reads.

Rows are selected by their fields (``bench``, ``variant``, ``seed``, ``epochs``...). ``results.jsonl`` is
append-only, so a measurement round is also a span of its line numbers (1-based, inclusive): a table that shows one
round names its span, and within it the latest line of a row wins (a rerun replaces its row).
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.jsonl"
DOCS = ROOT / "docs"
BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def lines(path: Path = RESULTS) -> list[dict]:
    """Every result line, each with its 1-based line number as ``_line``."""
    out = []
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if text.strip():
            out.append({**json.loads(text), "_line": number})
    return out


def pages() -> list[Path]:
    """The pages that may hold generated tables: the README and every documentation page."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def latest(rows: list[dict], *keys: str) -> dict[tuple, dict]:
    """The last row of each distinct ``keys`` value (a rerun replaces the earlier line of the same row)."""
    out: dict[tuple, dict] = {}
    for row in rows:
        out[tuple(row.get(k) for k in keys)] = row
    return out


def num(value, digits: int = 2) -> str:
    """A measured number as the docs print it: rounded to ``digits``, no trailing zeros beyond one decimal."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    text = f"{round(float(value), digits):.{digits}f}"
    if "." in text:
        text = text.rstrip("0")
    return text + "0" if text.endswith(".") else text


def signed(d: float) -> str:
    """A difference with its sign, as the docs print it."""
    return ("+" if d >= 0 else "−") + num(abs(d))


class Used:
    """The line numbers every table read (for ``--unused``)."""
    lines: set[int] = set()


def select(rows: list[dict], bench: str, span: Optional[tuple[int, int]] = None, **where) -> list[dict]:
    """The lines of ``bench`` within ``span`` whose fields equal ``where``."""
    out = [r for r in rows if r.get("bench") == bench and (span is None or span[0] <= r["_line"] <= span[1])
           and all(r.get(k) == v for k, v in where.items())]
    Used.lines.update(r["_line"] for r in out)
    return out


def one(rows: list[dict], bench: str, span: Optional[tuple[int, int]] = None, **where) -> dict:
    """The latest line matching, or an error naming what is missing (a table never silently loses a row)."""
    found = select(rows, bench, span, **where)
    if not found:
        raise SystemExit(f"no result line for bench={bench} span={span} {where}")
    return found[-1]


# --- a table of runs: one row per selector, one record per seed --------------------------------------------------

@dataclass
class Col:
    """A column: its header and the cell made from the row's records (one per seed, seed order)."""
    header: str
    cell: Callable[[list[dict]], str]


def per_seed(key: str, digits: int = 2, bold: bool = False) -> Callable[[list[dict]], str]:
    def cell(recs: list[dict]) -> str:
        text = " / ".join(num(r.get(key), digits) if r else "–" for r in recs)
        return f"**{text}**" if bold else text
    return cell


def mean_of(key: str) -> Callable[[list[dict]], str]:
    def cell(recs: list[dict]) -> str:
        values = [r[key] for r in recs if r]
        return num(sum(values) / len(values)) if len(values) > 1 else "–"
    return cell


def ratio_to(key: str, ref: float) -> Callable[[list[dict]], str]:
    return lambda recs: " / ".join(num(r[key] / ref, 3) if r else "–" for r in recs)


@dataclass
class Runs:
    """Rows of runs: ``rows`` are (label, fields) where fields select the lines (``seed`` is not among them: every
    seed of ``seeds`` that has a line is shown, in order); ``span`` is the round, overridable per row."""
    bench: str
    rows: list[tuple[str, dict]]
    cols: list[Col]
    span: Optional[tuple[int, int]] = None
    seeds: tuple[int, ...] = (0, 1)
    first: str = "run"

    def __call__(self, data: list[dict]) -> str:
        out = ["| " + " | ".join([self.first] + [c.header for c in self.cols]) + " |",
               "|" + "---|" * (len(self.cols) + 1)]
        for label, where in self.rows:
            where = dict(where)
            span = where.pop("span", self.span)
            bench = where.pop("bench", self.bench)
            seeds = where.pop("seeds", self.seeds)
            by_seed = latest(select(data, bench, span, **where), "seed")
            if not by_seed:
                raise SystemExit(f"table row '{label}': no result line for bench={bench} span={span} {where}")
            if all((s,) not in by_seed for s in seeds):  # a line without seeds (or with others): as it is
                recs = list(by_seed.values())
            else:  # one record per seed in order, None where a seed has no line, none after the last that has
                recs = [by_seed.get((s,)) for s in seeds]
                while recs[-1] is None:
                    recs.pop()
            out.append("| " + " | ".join([label] + [c.cell(recs) for c in self.cols]) + " |")
        return "\n".join(out) + "\n"


# --- the tables ----------------------------------------------------------------------------------------------------

def knn_cols(teacher: float, minutes: bool = True, key: str = "student_knn", seeds: str = "seed 0 / 1",
             mean: bool = False) -> list[Col]:
    cols = [Col(f"k-NN, {seeds}", per_seed(key)), Col("/ teacher", ratio_to(key, teacher))]
    if minutes:
        cols.append(Col("minutes", per_seed("minutes", 1)))
    if mean:
        cols.insert(1, Col("mean", mean_of(key)))
    return cols


def epochs_col() -> Col:
    return Col("epochs", lambda recs: num(next(r for r in recs if r).get("epochs"), 0))


TABLES: dict[str, Callable[[list[dict]], str]] = {}


def table(name: str):
    def register(fn):
        TABLES[name] = fn
        return fn
    return register


@table("real_teacher")
def real_teacher(rows: list[dict]) -> str:
    """bench_real_teacher.py: every student row at one budget, seeds side by side, against the teacher's k-NN."""
    names = {
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
        "dcor_cross": "mvmr, the paper's 1 − dCor, cached on the original view",
        "dcor_bank4": "mvmr, the paper's 1 − dCor, bank of 4",
        "mvmr_cross_hand": "cross view, cos + smooth-L1, + MV-MR's pixels / HOG / LSD (1 − dCor, 0.1)",
        "mvmr_cross_views": "cross view, cos + smooth-L1, + MV-MR's view dCor (0.1)",
        "mvmr_bank4_hand": "bank of 4, cos + smooth-L1, + pixels / HOG / LSD (1 − dCor, 0.1)",
        "mvmr_bank4_views": "bank of 4, cos + smooth-L1, + MV-MR's view dCor (0.1)",
        "kd_bank4_hand": "bank of 4, `kd`, + pixels / HOG / LSD (1 − dCor, 0.1)",
        "kd_bank4_views": "bank of 4, `kd`, + MV-MR's view dCor (0.1)",
    }
    mine = select(rows, "real_teacher")
    teachers = latest([r for r in mine if r["variant"] == "teacher"], "teacher")
    runs = latest([r for r in mine if "student_knn" in r], "variant", "teacher", "seed", "budget_minutes")
    out = []
    for (t,), row in sorted(teachers.items(), key=lambda kv: int(kv[0][0].split("@")[1])):
        out.append(f"Teacher {t}: k-NN **{row['knn_top1']}**, linear probe {row['linear_probe']} "
                   f"({row['labels']:,} labels), one pass over the train images {row['pass_minutes']} min.\n")
    ref = teachers[("efficientnet-lite0@128",)]["knn_top1"]
    inits = {k[2]: r["student_knn_at_init"] for k, r in sorted(runs.items()) if r.get("student_knn_at_init")}
    out.append("The student (ResNet-18, torchvision init) at initialisation: k-NN "
               + " / ".join(f"{num(v)} (seed {s})" for s, v in sorted(inits.items())) + ".\n")
    for budget in sorted({k[3] for k in runs}):
        for t in sorted({k[1] for k in runs}, key=lambda s: int(s.split("@")[1])):
            out += [f"| row ({t}, budget {budget:g} CPU-minutes) | epochs (seeds 0 / 1) | minutes | k-NN seed 0 "
                    f"| k-NN seed 1 | best / the teacher at 128 px |", "|---|---|---|---|---|---|"]
            for variant, label in names.items():
                seeds = {s: runs[(variant, t, s, budget)] for s in (0, 1) if (variant, t, s, budget) in runs}
                if not seeds:
                    continue
                knn = [seeds[s]["student_knn"] if s in seeds else None for s in (0, 1)]
                shown = [num(k) if k is not None else "" for k in knn]
                best = max(k for k in knn if k is not None) / ref
                epochs = " / ".join(str(seeds[s]["epochs"]) for s in sorted(seeds))
                minutes = " / ".join(f"{seeds[s]['minutes']:.1f}" for s in sorted(seeds))
                out.append(f"| {label} | {epochs} | {minutes} | {shown[0]} | {shown[1]} | {best:.3f} |")
            out.append("")
    for row in latest([r for r in mine if r.get("fits") is False], "variant", "budget_minutes").values():
        out.append(f"{names[row['variant']]}: does not fit a {row['budget_minutes']:g}-minute budget (its teacher "
                   f"passes alone take {row['teacher_minutes']} min).\n")
    for row in latest([r for r in mine if r["variant"] == "step_ratio"], "variant").values():
        out.append(f"A step reading the bank: {row['step_ms_bank']} ms; the same step with the teacher's outputs in "
                   f"memory (no teacher at all): {row['step_ms_no_teacher']} ms (**{row['bank_over_no_teacher']}x**); "
                   f"with the teacher online: {row['step_ms_online']} ms ({row['online_over_no_teacher']}x).")
    return "\n".join(out).rstrip("\n") + "\n"


@table("quickstart_distill")
def quickstart_distill(rows: list[dict]) -> str:
    """The quickstart_distill recipe's runs (bench: quickstart_distill lines)."""
    runs = latest(select(rows, "quickstart_distill"), "seed")
    out = ["| seed | student k-NN | at initialisation | teacher's own k-NN | minutes |", "|---|---|---|---|---|"]
    for (seed,), r in sorted(runs.items()):
        out.append(f"| {seed} | {r['knn_top1']:.2f} | {r['knn_top1_at_init']:.2f} | {r['teacher_knn_top1']:.2f} | "
                   f"{r['minutes']:.1f} |")
    return "\n".join(out) + "\n"


@table("methods")
def methods(rows: list[dict]) -> str:
    """bench_methods.py: every method at one budget, from both initialisations."""
    names = {"random_init": "random init", "mvmr": "**MV-MR** (pixels, HOG, LSD providers)",
             "mvmr_no_dcor": "MV-MR without dCor (MSE + variance)",
             "vicreg": "VICReg (lightly's `VICRegLoss`, `examples/vicreg_plugin`)", "mira": "MIRA (K = 300)",
             "sinkhorn": "Sinkhorn (SeLa / SwAV, K = 300)", "mira_hybrid": "MIRA + MV-MR hybrid (`cifar10_mira`)"}
    runs = latest(select(rows, "methods"), "variant", "init")
    out = ["| method | k-NN, zero-init | linear, zero-init | k-NN, torchvision init | linear, torchvision init "
           "| minutes |", "|---|---|---|---|---|---|"]
    for v, label in names.items():
        z, t = runs[(v, "zero_init")], runs[(v, "torchvision_init")]
        mins = sorted({m for m in (z.get("minutes"), t.get("minutes")) if m is not None})
        out.append(f"| {label} | {num(z['knn_top1'])} | {num(z['linear_top1'])} | {num(t['knn_top1'])} | "
                   f"{num(t['linear_top1'])} | {'–'.join(num(m, 1) for m in mins) or '–'} |")
    return "\n".join(out) + "\n"


# --- distillation objectives (bench_distill_transfer.py, in-domain ResNet-18 teachers) ------------------------------

def teacher_line(rows, span, variant="teacher") -> dict:
    return one(rows, "distill_transfer", span, variant=variant)


@table("objectives")
def objectives(rows):
    span = (9, 36)
    ref = teacher_line(rows, span)["knn_top1"]
    spec = [("MV-MR, no teacher (pixels, HOG, LSD)", {"variant": "no_teacher"}),
            ("the paper's form: 1 − dCor(projector, augmented vs original) + MSE / variance / dCor(views)",
             {"variant": "dcor_paper"}),
            ("dcor (biased V-statistic)", {"variant": "dcor_biased"}),
            ("dcor (unbiased)", {"variant": "dcor_unbiased"}),
            ("rkd", {"variant": "rkd"}), ("sp", {"variant": "sp"}), ("seed", {"variant": "seed"}),
            ("cosine", {"variant": "cosine"}), ("mse", {"variant": "mse"}),
            ("cosine, pad-4 crop", {"variant": "cosine_pad"}),
            ("cosine, pad-4 crop, torchvision init", {"variant": "cosine_pad_nozi"}),
            ("cosine, both on the original view", {"variant": "cosine_original"}),
            ("dcor, pad-4 crop, torchvision init", {"variant": "dcor_pad_nozi"}),
            ("seed, pad-4 crop, torchvision init", {"variant": "seed_pad_nozi"}),
            ("mse, pad-4 crop, torchvision init", {"variant": "mse_pad_nozi"}),
            ("mse, student on the augmented view, teacher on the original (cross)", {"variant": "mse_cross_pad_nozi"}),
            ("**mse, pad-4 crop, torchvision init, lr 2e-3**", {"variant": "mse_pad_nozi_lr2e-3"}),
            ("plain 30-line loop (cosine through a 2-layer predictor), lr 1e-3", {"variant": "plain_baseline"}),
            ("plain 30-line loop, lr 2e-3", {"variant": "plain_baseline_lr2e-3"})]
    return (f"Teacher: k-NN {num(ref)}.\n\n"
            + Runs("distill_transfer", spec, knn_cols(ref), span, first="student (6 epochs)")(rows))


@table("objectives_adaptor")
def objectives_adaptor(rows):
    span = (120, 130)
    ref = teacher_line(rows, span)["knn_top1"]
    spec = [("plain 30-line loop, lr 2e-3", {"variant": "plain_baseline_lr2e-3"}),
            ("mse through the BN predictor", {"variant": "mse_pad_nozi_lr2e-3"}),
            ("cos_smoothl1, RADIO adaptor, `standardize: layernorm`", {"variant": "radio_ln"}),
            ("cos_smoothl1, RADIO adaptor, no standardisation", {"variant": "radio_none"})]
    return (f"Teacher A: k-NN {num(ref)}.\n\n"
            + Runs("distill_transfer", spec, knn_cols(ref), span, first="student (6 epochs)")(rows))


@table("objectives_levers")
def objectives_levers(rows):
    span = (131, 142)
    ref = teacher_line(rows, span)["knn_top1"]
    spec = [("plain 30-line loop, lr 1e-3", {"variant": "plain_baseline", "epochs": 6}),
            ("cos_smoothl1 + layernorm", {"variant": "radio_ln", "epochs": 6}),
            ("+ MV-MR dCor between the student's two views, 0.1 (`loss.dcor_views`)",
             {"variant": "radio_ln_views", "epochs": 6}),
            ("+ pixels, HOG, LSD (1 − dCor, 0.1)", {"variant": "radio_ln_hand", "epochs": 6}),
            ("+ mixup α = 1 (`data.mixup`, the teacher on the mixed image)", {"variant": "radio_ln_mix", "epochs": 6}),
            ("+ two 18-px student crops (`loss.local_crops: 2`)", {"variant": "radio_ln_local2", "epochs": 6}),
            ("plain 30-line loop, lr 2e-3", {"variant": "plain_baseline_lr2e-3", "epochs": 30}),
            ("cos_smoothl1 + layernorm", {"variant": "radio_ln", "epochs": 30}),
            ("+ mixup α = 1", {"variant": "radio_ln_mix", "epochs": 30})]
    return (f"Teacher A: k-NN {num(ref)}; seed 0.\n\n"
            + Runs("distill_transfer", spec, [epochs_col(), *knn_cols(ref, seeds="seed 0")], span)(rows))


@table("objectives_seeds")
def objectives_seeds(rows):
    span = (178, 192)
    ref = teacher_line(rows, span)["knn_top1"]
    spec = [("plain 30-line loop, lr 2e-3", {"variant": "plain_baseline_lr2e-3", "epochs": 6}),
            ("cos_smoothl1 + layernorm (`cifar10_distill`)", {"variant": "radio_ln", "epochs": 6}),
            ("+ MV-MR dCor between the two views, 0.1", {"variant": "radio_ln_views", "epochs": 6}),
            ("plain 30-line loop, lr 2e-3", {"variant": "plain_baseline_lr2e-3", "epochs": 30}),
            ("cos_smoothl1 + layernorm (`cifar10_distill`)", {"variant": "radio_ln", "epochs": 30}),
            ("the same through the CLI (`mvmr distill cifar10_distill`)", {"variant": "recipe", "span": (200, 200)})]
    return (f"Teacher A: k-NN {num(ref)}.\n\n"
            + Runs("distill_transfer", spec, [epochs_col(), *knn_cols(ref)], span)(rows))


@table("objectives_logits")
def objectives_logits(rows):
    span = (201, 220)
    ref = teacher_line(rows, span)["knn_top1"]
    spec = [("plain 30-line loop, lr 2e-3", {"variant": "plain_baseline_lr2e-3", "epochs": 6}),
            ("cos_smoothl1 + layernorm", {"variant": "radio_ln", "epochs": 6}),
            ("`kd` on the logits (T = 4)", {"variant": "kd", "epochs": 6}),
            ("`kd` beside cos_smoothl1 on the features (T = 4)", {"variant": "radio_ln_kd", "epochs": 6}),
            ("`kd` beside cos_smoothl1 on the features (T = 1)", {"variant": "radio_ln_kd_t1", "epochs": 6}),
            ("a plain 30-line KD loop (the same KL, a linear head)", {"variant": "plain_kd_lr2e-3", "epochs": 6}),
            ("plain 30-line loop, lr 2e-3", {"variant": "plain_baseline_lr2e-3", "epochs": 30}),
            ("cos_smoothl1 + layernorm", {"variant": "radio_ln", "epochs": 30}),
            ("`kd` on the logits (T = 4)", {"variant": "kd", "epochs": 30})]
    return (f"Teacher A: k-NN {num(ref)}.\n\n"
            + Runs("distill_transfer", spec, [epochs_col(), *knn_cols(ref)], span)(rows))


@table("objectives_one_teacher")
def objectives_one_teacher(rows):
    ref = teacher_line(rows, (234, 244), "teacher_e")["knn_top1"]
    spec = [("`kd_e` (`cifar10_distill_kd`), 6 epochs", {"variant": "kd_e", "epochs": 6, "span": (261, 265)}),
            ("SGD + Nesterov 0.1, weight decay 5e-4, 6 epochs", {"variant": "kd_e_sgd", "epochs": 6}),
            ("AdamW 2e-3, decoupled decay 0.05, 6 epochs", {"variant": "kd_e_adamw", "epochs": 6}),
            ("`kd_e`, 30 epochs (Adam's loop step, as every row down to the 50-epoch ones)",
             {"variant": "kd_e", "epochs": 30, "span": (236, 239)}),
            ("plain 30-line loop, 30 epochs", {"variant": "plain_baseline_lr2e-3_e", "epochs": 30,
                                               "span": (238, 242)}),
            ("AdamW, 30 epochs", {"variant": "kd_e_adamw", "epochs": 30}),
            ("a second `kd` head on the clean image's logits (cross view, cached)", {"variant": "kd_e_cross2"}),
            ("+ MV-MR's view dCor (0.1)", {"variant": "kd_e_views"}),
            ("`kd_e` at 50 epochs", {"variant": "kd_e", "epochs": 50}),
            ("plain 30-line loop at 50 epochs", {"variant": "plain_baseline_lr2e-3_e", "epochs": 50}),
            ("teacher and student on one random resized crop (scale 0.35-1)", {"variant": "kd_e_rrc"}),
            ("+ cos + smooth-L1 on E's features", {"variant": "kd_e_feat"}),
            ("an MLP head for the logits", {"variant": "kd_e_mlp"}),
            ("`kd_e`, 30 epochs, the fused step (as every row below)", {"variant": "kd_e", "epochs": 30,
                                                                       "span": (287, 291)}),
            ("+ CRD on E's features (InfoNCE, batch negatives)", {"variant": "kd_e_crd"}),
            ("CRD on E's features alone, no logits", {"variant": "crd_e"}),
            ("+ MV-MR's pixels, HOG, LSD (1 − dCor, 0.1)", {"variant": "kd_e_hand"})]
    return (f"Teacher E: k-NN {num(ref)}.\n\n"
            + Runs("distill_transfer", spec, [epochs_col(), *knn_cols(ref)], (261, 305), first="change")(rows))


@table("dense")
def dense(rows):
    span = (163, 169)
    ref = one(rows, "distill_transfer", span, variant="teacher_a_at_64px")["knn_top1"]
    spec = [("summary term only (`radio_ln_64`)", {"variant": "radio_ln_64"}),
            ("summary + `spatial` term on the teacher's map (`radio_ln_spatial_64`)", {"variant": "radio_ln_spatial_64"})]
    step = one(rows, "dense_step")
    return (f"Teacher A on the 64-px images: k-NN {num(ref)}.\n\n"
            + Runs("distill_transfer", spec, knn_cols(ref), span, first="student (64 px, 6 epochs)")(rows)
            + f"\nThe step with the dense term beside the summary term: {num(step['dense_over_summary_one_forward'], 3)}× "
              f"the summary-only step ({num(step['summary_ms'], 1)} → {num(step['dense_one_forward_ms'], 1)} ms, one "
              f"teacher forward), {num(step['dense_over_summary_two_forwards'], 3)}× with two forwards.\n")


# --- several teachers ---------------------------------------------------------------------------------------------

@table("teachers")
def teachers(rows):
    span = (266, 271)
    out = ["| teacher | recipe (ResNet-18, CIFAR labels) | test accuracy | k-NN |", "|---|---|---|---|"]
    what = {"teacher": ("A", "pad-4 crop + flip, 10 epochs"), "teacher_b": ("B", "random resized crop, 10 epochs"),
            "teacher_c": ("C", "A + cutout, 10 epochs"), "teacher_d": ("D", "C's kind, 20 epochs"),
            "teacher_e": ("E", "A's kind, 20 epochs"), "teacher_f": ("F", "E's recipe, another seed")}
    for variant, (name, recipe) in what.items():
        r = one(rows, "distill_transfer", span, variant=variant)
        out.append(f"| {name} | {recipe} | {num(r['test_acc'])} | {num(r['knn_top1'])} |")
    t = one(rows, "distill_transfer", (245, 246), variant="teachers")
    out.append("")
    out.append(f"Averaged softmax (test accuracy): A + C {num(t['acc_ensemble_ac'])}, A + D {num(t['acc_ensemble_ad'])}, "
               f"D + E {num(t['acc_ensemble_de'])}, E + F {num(t['acc_ensemble_ef'])}. Features side by side (k-NN): "
               f"A + C {num(t['knn_concatenated_ac'])}, A + D {num(t['knn_concatenated_ad'])}, "
               f"D + E {num(t['knn_concatenated_de'])}.")
    return "\n".join(out) + "\n"


@table("teacher_rounds")
def teacher_rounds(rows):
    """Every teacher the benchmark trained, round by round (a round retrains its teachers from their seeds)."""
    out = ["| results line | teacher | test accuracy | k-NN | minutes |", "|---|---|---|---|---|"]
    pairs = []
    for r in select(rows, "distill_transfer"):
        v = r["variant"]
        if v.startswith("teacher_") and v != "teacher_a_at_64px" or v == "teacher":
            name = "A" if v == "teacher" else v.split("_")[1].upper()
            out.append(f"| {r['_line']} | {name} | {num(r.get('test_acc'))} | {num(r['knn_top1'])} | "
                       f"{num(r.get('minutes'), 1)} |")
        elif v == "teachers":
            side = ", ".join(f"{k.split('_')[-1].upper() if k != 'knn_concatenated' else 'A + B'} {num(x)}"
                             for k, x in r.items() if k.startswith("knn_concatenated"))
            pairs.append(f"line {r['_line']}: {side}")
    out.append("\nFeatures side by side (k-NN of the concatenated, normalised features): " + "; ".join(pairs) + ".")
    return "\n".join(out) + "\n"


@table("teachers_ef")
def teachers_ef(rows):
    ref = teacher_line(rows, (245, 246), "teacher_f")  # noqa: F841 (E is the better teacher)
    e = teacher_line(rows, (234, 234), "teacher_e")["knn_top1"]
    spec = [("plain 30-line loop against E", {"variant": "plain_baseline_lr2e-3_e", "span": (237, 277)}),
            ("teacher E alone (`kd_e`, `cifar10_distill_kd`)", {"variant": "kd_e", "span": (287, 295)}),
            ("teacher F alone (`kd_f`)", {"variant": "kd_f", "span": (287, 295)}),
            ("**E + F, one `kd` term and head each** (`multi_kd_ef`, `cifar10_distill_multi`)",
             {"variant": "multi_kd_ef", "span": (287, 295)}),
            ("the same through the CLI (`recipe_multi_ef`)", {"variant": "recipe_multi_ef", "span": (287, 295)})]
    return (f"Teacher E: k-NN {num(e)} (the better of the two).\n\n"
            + Runs("distill_transfer", spec, knn_cols(e, seeds="seed 0 / 1 / 2 / 3", mean=True), None,
                   seeds=(0, 1, 2, 3), first="student (30 epochs)")(rows))


@table("teachers_ef_history")
def teachers_ef_history(rows):
    e = teacher_line(rows, (234, 234), "teacher_e")["knn_top1"]
    spec = [("teacher E alone (`kd_e`)", {"variant": "kd_e", "epochs": 30, "span": (235, 279)}),
            ("teacher F alone (`kd_f`)", {"variant": "kd_f"}),
            ("E + F, one `kd` term on their `ensemble` (`--ensemble`)", {"variant": "ens_kd_ef"}),
            ("E + F, one `kd` term and head each (`multi_kd_ef`)", {"variant": "multi_kd_ef"}),
            ("the same through the CLI", {"variant": "recipe_multi_ef"})]
    return Runs("distill_transfer", spec, knn_cols(e, seeds="seed 0 / 1 / 2 / 3", mean=True), (245, 279),
                seeds=(0, 1, 2, 3), first="student (30 epochs, Adam's loop step)")(rows)


@table("teachers_de")
def teachers_de(rows):
    span = (226, 244)
    e = teacher_line(rows, span, "teacher_e")["knn_top1"]
    spec = [("plain 30-line loop against D", {"variant": "plain_baseline_lr2e-3_d"}),
            ("teacher A alone (`kd`)", {"variant": "kd", "epochs": 30, "span": (201, 220)}),
            ("teacher D alone (`kd_d`)", {"variant": "kd_d"}),
            ("teachers A + D, one `kd` term and head each (`multi_kd_ad`)", {"variant": "multi_kd_ad"}),
            ("A + D, one `kd` term on their `ensemble` (`ens_kd_ad`)", {"variant": "ens_kd_ad"}),
            ("teacher E alone (`kd_e`)", {"variant": "kd_e"}),
            ("D + E, one `kd` term and head each (`multi_kd_de`)", {"variant": "multi_kd_de"}),
            ("D + E, one `kd` term on their `ensemble` (`ens_kd_de`)", {"variant": "ens_kd_de"}),
            ("the same through the CLI (`--ensemble cifar10_distill_kd`)", {"variant": "recipe_kd_ens_de"})]
    return (f"Ratios are to teacher E (k-NN {num(e)}), the strongest of A, D and E.\n\n"
            + Runs("distill_transfer", spec, knn_cols(e), span, first="student (30 epochs)")(rows))


@table("teachers_weak")
def teachers_weak(rows):
    a = teacher_line(rows, (178, 180))["knn_top1"]
    spec = [("teacher A alone (cos_smoothl1 + layernorm)", {"variant": "radio_ln", "epochs": 30, "span": (191, 191)}),
            ("teacher C alone", {"variant": "radio_ln_c", "span": (198, 200)}),
            ("teachers A + C, a term each", {"variant": "multi_radio_ln_ac", "span": (198, 200)}),
            ("teacher A alone, `kd` (T = 4)", {"variant": "kd", "epochs": 30, "span": (201, 220)}),
            ("teachers A + C, `kd` on each", {"variant": "multi_kd_ac", "epochs": 30, "span": (201, 220)}),
            ("teachers A + C, `kd` on each, C's term at weight 0.3", {"variant": "multi_kd_ac_c03", "span": (201, 220)}),
            ("teachers A + C, `kd` on each, 6 epochs", {"variant": "multi_kd_ac", "epochs": 6, "span": (201, 220)}),
            ("teachers A + C, `kd` and cos_smoothl1 on each, 6 epochs",
             {"variant": "multi_radio_ln_kd_ac", "span": (201, 220)}),
            ("teacher B alone (cos_smoothl1 + layernorm), 6 epochs", {"variant": "radio_ln_b", "span": (120, 130)}),
            ("teachers A + B (cos_smoothl1 + layernorm each), 6 epochs", {"variant": "multi_radio_ln", "span": (120, 130)})]
    return (f"Ratios are to teacher A (k-NN {num(a)}; the round of each row retrained A within a point of it).\n\n"
            + Runs("distill_transfer", spec, knn_cols(a), None, first="student")(rows))


# --- MIRA at small scale ---------------------------------------------------------------------------------------------

MULTI = (343, 10**6)  # bench_multi_teacher.py: EfficientNet-Lite0, Lite2 (ImageNet) and teacher E (CIFAR labels)
TEN = {"budget_minutes": 10.0, "stem": None}  # its main rows: 10 minutes planned, the standard stem
MULTI_MORE = (355, 10**6)  # its later rows: the spatial term (--dense), the 25-minute budget
TEACHER_NAMES = {"lite0": "EfficientNet-Lite0", "lite2": "EfficientNet-Lite2", "e": "E"}


def teacher_set(variant: str) -> str:
    return " + ".join(TEACHER_NAMES[t] for t in variant.split("+"))


@table("multi_real_teachers")
def multi_real_teachers(rows):
    """The three teachers of bench_multi_teacher.py: k-NN, pass minutes, and their features side by side."""
    t = one(rows, "multi_teacher", MULTI, variant="teachers")
    e = one(rows, "distill_transfer", (342, 342), variant="teacher_e")
    size = t["lite2_size"]
    what = {"lite0": "ImageNet, at 128 px", "lite2": f"ImageNet, at {size} px",
            "e": f"the sample's 10,000 labels, at 32 px (ResNet-18, test accuracy {num(e['test_acc'])})"}
    out = ["| teacher | trained on | k-NN | one pass over the train images (min) |", "|---|---|---|---|"]
    out += [f"| {TEACHER_NAMES[k]} | {w} | {num(t['knn_' + k])} | {num(t['pass_minutes'][k])} |" for k, w in what.items()]
    side = ", ".join(f"{teacher_set(k[len('knn_concatenated_'):])} {num(v)}" for k, v in t.items()
                     if k.startswith("knn_concatenated_"))
    return "\n".join(out) + f"\n\nFeatures side by side (each teacher's L2-normalised), k-NN: {side}.\n"


def multi_students(rows, spec: list[tuple[str, dict]], span: tuple[int, int] = MULTI) -> str:
    t = one(rows, "multi_teacher", MULTI, variant="teachers")
    best = max(t["knn_lite0"], t["knn_lite2"], t["knn_e"])
    cols = [Col("k-NN, seed 0 / 1", per_seed("student_knn")), Col("mean", mean_of("student_knn")),
            Col(f"against the best teacher ({num(best)})",
                lambda recs: " / ".join(signed(r["student_knn"] - best) for r in recs if r)),
            epochs_col(), Col("teacher passes (min)", lambda recs: num(next(r for r in recs if r)["teacher_minutes"])),
            Col("minutes a run", per_seed("minutes", 1))]
    return Runs("multi_teacher", spec, cols, span, first="student of")(rows)


@table("multi_real_students")
def multi_real_students(rows):
    """bench_multi_teacher.py's students at one budget: each teacher alone, the pairs and all three (layernorm)."""
    variants = ["lite0", "lite2", "e", "lite0+e", "lite0+lite2", "lite0+lite2+e"]
    return multi_students(rows, [(teacher_set(v), {"variant": v, "standardize": "layernorm", **TEN}) for v in variants])


@table("multi_real_standardize")
def multi_real_standardize(rows):
    """The standardisation of each teacher's features, on the same students."""
    done = latest(select(rows, "multi_teacher", MULTI, **TEN), "variant", "standardize")
    keys = sorted({k for k in done if k[0] != "teachers"}, key=lambda k: (k[0], k[1]))
    variants = sorted({v for v, s in keys if s != "layernorm"})
    spec = [(f"{teacher_set(v)}, {s}", {"variant": v, "standardize": s, **TEN}) for v in variants
            for s in ("layernorm", "dimension", "phis") if (v, s) in keys]
    return multi_students(rows, spec)


@table("multi_real_longer")
def multi_real_longer(rows):
    """The best pair planned at 25 CPU-minutes a run (the issue's ceiling), teacher passes included."""
    spec = [(f"{teacher_set('lite0+e')}, 25 minutes planned",
             {"variant": "lite0+e", "standardize": "layernorm", "budget_minutes": 25.0})]
    return multi_students(rows, spec, MULTI_MORE)


@table("dense_real")
def dense_real(rows):
    """bench_multi_teacher.py: Lite0's summary term alone and with a spatial term on its 4×4 map, one student stem."""
    step = one(rows, "multi_teacher", MULTI_MORE, variant="dense_step")
    stem = step["stem"]
    cols = [Col("k-NN, seed 0 / 1", per_seed("student_knn")), Col("mean", mean_of("student_knn")), epochs_col(),
            Col("minutes a run", per_seed("minutes", 1))]
    where = {"variant": "lite0", "standardize": "layernorm", "stem": stem}
    summary8, summary4, dense = ({**where, "dense_weight": w, "epochs": e} for w, e in ((0.0, 8), (0.0, 4), (1.0, 4)))
    spec = [("summary term, 8 epochs (fewer minutes than the spatial row)", summary8),
            ("summary term, 4 epochs (the spatial row's epochs)", summary4),
            ("summary + `spatial` term (weight 1), 4 epochs", dense),
            ("summary term, `standard` stem (1×1 map), from the several-teachers table",
             {"variant": "lite0", "standardize": "layernorm", "span": MULTI, **TEN})]
    gain = [[a - b for a, b in zip(seeds_of(rows, "multi_teacher", MULTI_MORE, **dense),
                                   seeds_of(rows, "multi_teacher", MULTI_MORE, **base))] for base in (summary4, summary8)]
    return (Runs("multi_teacher", spec, cols, MULTI_MORE, first=f"student (ResNet-18 at 32 px, `{stem}` stem)")(rows)
            + f"\nThe spatial term beside the summary term, seeds 0 / 1: {verdict(gain[0])} at equal epochs, "
            f"{verdict(gain[1])} against the summary term's 8 epochs.\n"
            + f"\nOne training step (batch {step['batch']}): {num(step['summary_ms'], 1)} ms with the summary term "
            f"read from the cache, {num(step['summary_dense_ms'], 1)} ms with the spatial term beside it (Lite0 "
            f"online on the augmented view): {num(step['dense_over_summary'], 2)}×.\n")


def mira_rows(rows, span, minutes: bool = True) -> str:
    out = ["| lever(s) | epochs | K | k-NN init → end | NMI init → end | entropy student / targets (ln K) |"
           + (" min |" if minutes else ""), "|---|---|---|---|---|---|" + ("---|" if minutes else "")]
    for r in select(rows, "mira_search", span):
        cells = [r["variant"].replace("+", " + "), num(r["epochs"], 0), num(r.get("prototypes"), 0),
                 f"{num(r['knn_top1_at_init'])} → {num(r['knn_top1'])}",
                 f"{num(r['nmi_at_init'], 1)} → {num(r['nmi'], 1)}",
                 f"{num(r['student_entropy'])} / {num(r['target_entropy'])} ({num(r['ln_k'])})"]
        if minutes:
            cells.append(num(r.get("minutes"), 1))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


@table("mira_levers")
def mira_levers(rows):
    return mira_rows(rows, (38, 80))


@table("mira_search")
def mira_search(rows):
    return mira_rows(rows, (87, 110))


@table("mira_long")
def mira_long(rows):
    return mira_rows(rows, (146, 166))


@table("quickstart_mira")
def quickstart_mira(rows):
    out = ["| run | k-NN init → end | minutes |", "|---|---|---|"]
    for r in select(rows, "quickstart_mira"):
        out.append(f"| `quickstart_mira`, queue {r['queue']} | {num(r['knn_top1_at_init'])} → {num(r['knn_top1'])} | "
                   f"{num(r['minutes'])} |")
    for r in select(rows, "quickstart_mira_search"):
        out.append(f"| `quickstart_mira` variant `{r['variant']}` | {num(r['knn_top1_at_init'])} → "
                   f"{num(r['knn_top1'])} | {num(r['minutes'])} |")
    return "\n".join(out) + "\n"


# --- feature regularisation -----------------------------------------------------------------------------------------

def regularizer_label(r: dict) -> str:
    """A regulariser line described from its fields."""
    providers = r.get("providers") or []
    if not providers:
        what = "none"
    elif set(providers) == {"hog", "lsd", "pixels"}:
        what = "pixels, HOG, LSD"
    elif providers[0].startswith("efficientnet"):
        what = "EfficientNet-Lite0 (ImageNet) at 128 px"
        if r.get("hand_weight"):  # MV-MR's hand-crafted providers beside the teacher
            what = f"pixels, HOG, LSD ({num(r['hand_weight'])}; dcor) + " + what
    else:
        what = "label-free " + ("MIRA" if providers[0].startswith("mira") else "MV-MR") + " teacher"
    tie = r.get("tie") or {}
    if providers:
        obj = tie.get("objective", "dcor" if set(providers) == {"hog", "lsd", "pixels"} else "cos_smoothl1")
        params = tie.get("objective_params") or {}
        extra = ", ".join(f"{k} {v}" for k, v in params.items())
        what += f" ({num(r['weight'])}{', annealed to 0' if r.get('anneal') else ''}; {obj}{', ' + extra if extra else ''}"
        what += f"{', standardize ' + tie['standardize'] if tie.get('standardize') else ''})"
    start = ""
    if r.get("init") == "label_free_teacher":  # the two-stage peer: start from the label-free model, then labels
        model = ("the `cifar10_distill_lite` student" if str(r.get("teacher", "")).startswith("lite0")
                 else "the label-free teacher")
        if not providers:
            return f"no regulariser: fine-tune {model}", ""
        start = f", fine-tuning {model}"
    reads = ""
    if providers:
        mu = r.get("mu", 1 if r.get("unlabelled") else 0)
        reads = "labelled only" if not r.get("unlabelled") else f"labelled + {mu}× unlabelled"
    return f"{what}{start}", reads


def regularizer(rows, span, first: str = "regulariser (weight; tie)") -> str:
    """The 3-seed runs of bench_regularizer.py within ``span``, each described from its fields."""
    out = [f"| {first} | images it reads | test accuracy, mean ± std (3 seeds) | min/run |", "|---|---|---|---|"]
    for r in select(rows, "regularizer", span):
        if "test_acc_mean" in r:
            label, reads = regularizer_label(r)
            out.append(f"| {label} | {reads} | {num(r['test_acc_mean'])} ± {num(r['test_acc_std'])} | "
                       f"{num(r['minutes_per_run'], 1)} |")
    return "\n".join(out) + "\n"


TABLES["regularizer_labelled"] = lambda rows: regularizer(rows, (1, 145))
TABLES["regularizer_unlabelled"] = lambda rows: regularizer(rows, (170, 196))
TABLES["regularizer_more"] = lambda rows: regularizer(rows, (221, 303))


@table("regularizer_teachers")
def regularizer_teachers(rows):
    out = ["| label-free teacher | epochs | k-NN (init) | linear probe, 1,000 labels | minutes |", "|---|---|---|---|---|"]
    probes = {r["teacher"]: r for r in select(rows, "regularizer", (1, 307), variant="linear_probe")}
    by_epochs = {int(k.split("_e")[-1].split(".")[0]): v for k, v in probes.items()}
    for r in select(rows, "regularizer", (1, 307), variant="label_free_teacher"):
        probe = by_epochs.get(r["epochs"]) if r.get("method") == "mira" and r["_line"] >= 299 else None
        out.append(f"| {r.get('method', 'mvmr').upper() if r.get('method') else 'MV-MR'} | {r['epochs']} | "
                   f"{num(r['knn_top1'])} ({num(r['knn_top1_at_init'])}) | "
                   f"{num(probe['test_acc']) + ' (random init ' + num(probe['test_acc_random_init']) + ')' if probe else '–'}"
                   f" | {num(r['minutes'], 1)} |")
    return "\n".join(out) + "\n"


REAL_FIRST = (323, 333)  # EfficientNet-Lite0 and 1,000 labels, first round: 40 epochs, 125 labelled a step
REAL_BUDGET = (334, 10**6)  # the same at one budget per run: 32 labelled + 128 unlabelled a step


@table("regularizer_budget")
def regularizer_budget(rows):
    """EfficientNet-Lite0 and 1,000 labels at one budget per run: each row's epochs, images per step and minutes."""
    probe = one(rows, "regularizer", REAL_FIRST, variant="linear_probe", teacher="efficientnet-lite0@128")
    out = ["| ResNet-18 at 32 px, 1,000 labels | labelled + unlabelled a step | epochs over the labels | "
           "test accuracy, mean ± std (3 seeds) | against the labels alone | min/run |", "|---|---|---|---|---|---|"]
    alone = one(rows, "regularizer", REAL_BUDGET, weight=0.0, init="random")["test_acc_mean"]
    stage = one(rows, "regularizer", REAL_BUDGET, variant="label_free_teacher")  # the peer's label-free stage
    is_alone = lambda r: not r["weight"] and r.get("init") == "random"  # noqa: E731
    for r in sorted(select(rows, "regularizer", REAL_BUDGET, seeds=3), key=lambda r: not is_alone(r)):
        label = "labels alone" if is_alone(r) else regularizer_label(r)[0]
        minutes = r["minutes_per_run"]
        if r.get("init") == "label_free_teacher":  # the two-stage peer: its label-free stage counted in each run
            label = (f"two stages: `cifar10_distill_lite` without labels ({stage['epochs']} epochs, k-NN "
                     f"{num(stage['knn_top1'])}, {num(stage['minutes'], 1)} min), then fine-tuned")
            minutes += stage["minutes"]
        unlabelled = r["batch"] * r["mu"] if r.get("unlabelled") else 0
        diff = r["test_acc_mean"] - alone
        out.append(f"| {label} | {r['batch']} + {unlabelled} | {r['epochs']} | {num(r['test_acc_mean'])} ± "
                   f"{num(r['test_acc_std'])} | {'–' if is_alone(r) else signed(diff)} | "
                   f"{num(minutes, 1)} |")
    out.append(f"| the teacher kept: a logistic regression on its frozen features | – | – | {num(probe['test_acc'])} "
               f"(one fit) | {signed(probe['test_acc'] - alone)} | – |")
    return "\n".join(out) + "\n"


@table("regularizer_weight")
def regularizer_weight(rows):
    """The tie's weight against the cross-entropy: one seed each, a shorter run."""
    out = ["| weight of the teacher term | epochs over the labels | test accuracy (seed 0) | min/run |", "|---|---|---|---|"]
    for r in select(rows, "regularizer", REAL_BUDGET, seeds=1):
        out.append(f"| {num(r['weight'])} | {r['epochs']} | {num(r['test_acc_mean'])} | {num(r['minutes_per_run'], 1)} |")
    return "\n".join(out) + "\n"


@table("regularizer_real")
def regularizer_real(rows):
    """EfficientNet-Lite0 (ImageNet) and 1,000 CIFAR labels: its own probe, the regulariser, the two-stage peer."""
    span = REAL_FIRST
    probe = one(rows, "regularizer", span, variant="linear_probe", teacher="efficientnet-lite0@128")
    out = [f"EfficientNet-Lite0 at 128 px, frozen, read by a logistic regression on its features with the same 1,000 "
           f"labels (the teacher kept at inference): **{num(probe['test_acc'])}** (a random-init ResNet-18's features: "
           f"{num(probe['test_acc_random_init'])}).\n"]
    distilled = select(rows, "regularizer", span, variant="label_free_teacher")
    for r in distilled:
        out.append(f"The two-stage peer's first stage, `cifar10_distill_lite` ({r['epochs']} epochs, no labels): "
                   f"student k-NN {num(r['knn_top1'])} ({num(r['knn_top1_at_init'])} at initialisation), "
                   f"{num(r['minutes'], 1)} minutes.\n")
    return "\n".join(out) + "\n" + regularizer(rows, span, "ResNet-18 at 32 px, 1,000 labels")


# --- speed ------------------------------------------------------------------------------------------------------------

@table("throughput")
def throughput(rows):
    span = (112, 117)
    w = {r["image_size"]: r for r in select(rows, "throughput", span, part="workers")}
    p = {r["image_size"]: r for r in select(rows, "throughput", span, part="photometric")}
    b = {r["image_size"]: r for r in select(rows, "throughput", span, part="blur_memory_format")}
    out = ["| | workers | device | ratio |", "|---|---|---|---|"]
    for size, label in ((96, "96 px from 96×96 (STL10)"), (224, "224 px from 256×320 (ImageNet)")):
        out.append(f"| worker CPU-ms per image, {label} | {num(w[size]['workers_ms_per_image'])} | "
                   f"{num(w[size]['device_ms_per_image'])} | {num(w[size]['fewer'], 1)}x fewer |")
    for size in (96, 224):
        out.append(f"| photometric stage, ms per image, {size} px: per-image torchvision loop vs batched | "
                   f"{num(p[size]['per_image_loop_ms'])} | {num(p[size]['batched_ms'])} | {num(p[size]['speedup'], 1)}x |")
    for size in (96, 224):
        out.append(f"| Gaussian blur, {size} px: contiguous vs channels_last (ms) | {num(b[size]['contiguous_ms'])} | "
                   f"{num(b[size]['channels_last_ms'])} | {num(b[size]['speedup'])}x |")
    runs = select(rows, "throughput", (82, 117))
    spread = []
    for size in (96, 224):
        fewer = [r["fewer"] for r in runs if r["part"] == "workers" and r["image_size"] == size]
        faster = [r["speedup"] for r in runs if r["part"] == "photometric" and r["image_size"] == size]
        spread.append(f"at {size} px {num(min(fewer), 1)}-{num(max(fewer), 1)}x fewer worker ms and a batched stage "
                      f"{num(min(faster), 1)}-{num(max(faster), 1)}x faster")
    count = sum(r["part"] == "workers" and r["image_size"] == 224 for r in runs)
    out.append(f"\nOver the {count} runs of the benchmark: {'; '.join(spread)}.")
    return "\n".join(out) + "\n"


@table("step_costs")
def step_costs(rows):
    o = select(rows, "optimizer")
    opt = o[0]
    acc = one(rows, "accumulate")
    off = one(rows, "official_step")
    fill = one(rows, "cache_fill")
    loader = select(rows, "loader_workers")
    one_w = [r["seconds"] for r in loader if r["num_workers"] == 1]
    two_w = [r["seconds"] for r in loader if r["num_workers"] == 2]
    out = ["| measurement | the alternative | mvmr | ratio |", "|---|---|---|---|",
           f"| Adam update, ResNet-18 at batch 128, 32 px (ms): loop over tensors vs fused | "
           f"{num(opt['update_ms']['loop'])} | {num(opt['update_ms']['fused'])} | {num(opt['update_ratio'])}x |",
           f"| the whole step (ms): loop vs fused | {num(opt['step_ms']['loop'], 1)} | {num(opt['step_ms']['fused'], 1)} "
           f"| {num(opt['step_ratio'], 3)}x |",
           f"| official MV-MR step, ResNet-50 at 96 px, batch 16 (ms): official code vs mvmr online / cached | "
           f"{num(off['official_ms'], 1)} | {num(off['mvmr_ms'], 1)} / {num(off['mvmr_cached_ms'], 1)} | "
           f"{num(off['speedup_online'])}x / {num(off['speedup_cached'])}x |",
           f"| `optim.accumulate: 4` at batch 256 (step ms; peak RSS MB) | {num(acc['acc1_step_ms'], 1)}; "
           f"{num(acc['acc1_peak_rss_mb'], 0)} | {num(acc['acc4_step_ms'], 1)}; {num(acc['acc4_peak_rss_mb'], 0)} | "
           f"{num(acc['time_ratio_acc4'])}x time, {num(acc['memory_ratio_acc4'])}x memory |",
           f"| a teacher (Lite0 at 128 px) read at random from a filling cache, {fill['images']:,} images, "
           f"{fill['steps']} batches of {fill['batch']} (teacher images; s): the whole batch on a miss vs the "
           f"missing rows only | {fill['whole_batch']['teacher_images']:,}; {num(fill['whole_batch']['seconds'], 1)} | "
           f"{fill['missing_only']['teacher_images']:,}; {num(fill['missing_only']['seconds'], 1)} | "
           f"{num(fill['speedup'])}x |",
           f"| 2 epochs of `cifar10_distill_kd` (s): 1 vs 2 loader workers, pairs side by side | "
           f"{' / '.join(num(s, 1) for s in one_w)} | {' / '.join(num(s, 1) for s in two_w)} | – |"]
    ratios = [r["update_ratio"] for r in o]
    out.append(f"\nThe fused update over {len(o)} runs: {num(min(ratios))}-{num(max(ratios))}x; one step from the same "
               f"parameters and gradients differs by at most {opt['one_step_update_difference_max']:.2g} "
               f"(updates of {opt['one_step_update_max']:g}).")
    return "\n".join(out) + "\n"


@table("quickstart_speed")
def quickstart_speed(rows):
    q = one(rows, "quickstart", augment_on="device")
    a = one(rows, "quickstart_augment_on")
    parts = q["step_ms"]
    total = sum(parts.values())
    steps = ", ".join(f"{k} {num(v, 1)} ms ({100 * v / total:.0f} %)" for k, v in parts.items())
    return ("| quickstart (digits), augmentation | k-NN seed 0 | k-NN seed 1 | init seed 0 / 1 |\n|---|---|---|---|\n"
            f"| in the data workers | {num(a['seed0']['workers'])} | {num(a['workers']['knn_top1'])} | "
            f"{num(a['seed0']['init'])} / {num(a['workers']['knn_top1_at_init'])} |\n"
            f"| on the device (batched) | {num(a['seed0']['device'])} | {num(a['device']['knn_top1'])} | "
            f"{num(a['seed0']['init'])} / {num(a['device']['knn_top1_at_init'])} |\n\n"
            f"A quickstart step with augmentation on the device, on the CPU: {steps}.\n")


@table("precision")
def precision(rows):
    out = ["| CPU | threads | ResNet-18, batch, size | fp32 ms | bf16 ms | bf16 speed-up | first loss fp32 / bf16 |",
           "|---|---|---|---|---|---|---|"]
    for r in select(rows, "precision"):
        cpu = f"{r.get('cpu_capability', 'AVX-512')}, bf16 {r.get('cpu_bf16', 'native')}"
        out.append(f"| {cpu} | {r['threads']} | {r['batch']} × {r['image_size']} px | {num(r['fp32_ms'], 1)} | "
                   f"{num(r['bf16_ms'], 1)} | {num(r['speedup_bf16'], 3)}x | {r['first_loss_fp32']} / "
                   f"{r['first_loss_bf16']} |")
    out.append("")
    out.append("| quickstart (digits) | k-NN | at initialisation | seconds |")
    out.append("|---|---|---|---|")
    for r in select(rows, "quickstart_precision"):
        out.append(f"| {r['precision']} | {num(r['knn_top1'])} | {num(r['knn_top1_at_init'])} | {r['seconds']} |")
    return "\n".join(out) + "\n"


@table("quickstart_init")
def quickstart_init(rows):
    out = ["| quickstart student | k-NN | at initialisation | seconds |", "|---|---|---|---|"]
    for r in select(rows, "quickstart"):
        if "augment_on" in r:
            continue
        init = "torchvision init" if r.get("zero_init_residual") is False else "zero-init residual"
        out.append(f"| {init} | {num(r['knn_top1'])} | {num(r['knn_top1_at_init'])} | {r['seconds']} |")
    return "\n".join(out) + "\n"


# --- the README's results at a glance --------------------------------------------------------------------------------

def verdict(diffs: list[float]) -> str:
    """gain / loss when every seed moves by more than a point that way, level otherwise."""
    shown = " / ".join(signed(d) for d in diffs)
    word = "gain" if min(diffs) > 1 else "**loss**" if max(diffs) < -1 else "level"
    return f"{shown} ({word})"


def seeds_of(rows, bench, span=None, key="student_knn", seeds=(0, 1), **where) -> list[float]:
    by_seed = latest(select(rows, bench, span, **where), "seed")
    return [by_seed[(s,)][key] for s in seeds if (s,) in by_seed]


@table("glance")
def glance(rows):
    out = ["| claim | mvmr | the plain alternative | difference | study |", "|---|---|---|---|---|"]

    def row(claim, ours, theirs, ours_label, theirs_label, link):
        pairs = list(zip(ours, theirs))
        out.append(f"| {claim} | {ours_label}: {' / '.join(num(v) for v in ours)} | {theirs_label}: "
                   f"{' / '.join(num(v) for v in theirs)} | {verdict([a - b for a, b in pairs])} | "
                   f"[{link[0]}]({link[1]}) |")

    m = latest(select(rows, "methods"), "variant", "init")
    for init, label in (("torchvision_init", "torchvision init"), ("zero_init", "zero-init residual")):
        row(f"MV-MR pretraining, CIFAR-10 sample, 4 epochs, {label}, k-NN", [m[("mvmr", init)]["knn_top1"]],
            [m[("vicreg", init)]["knn_top1"]], "MV-MR", "VICReg (lightly)",
            ("MV-MR against its peers", "docs/studies/methods.md"))
    rt = "docs/studies/real-teacher.md"
    cross = seeds_of(rows, "real_teacher", variant="mvmr_cross", teacher="efficientnet-lite0@128")
    row("ImageNet EfficientNet-Lite0 distilled into a ResNet-18, 10 CPU-minutes, k-NN (seeds 0 / 1)", cross,
        seeds_of(rows, "real_teacher", variant="plain_cached", teacher="efficientnet-lite0@128"),
        "cross view (`cifar10_distill_lite`)", "30-line loop, teacher cached", ("A real teacher", rt))
    online = seeds_of(rows, "real_teacher", variant="plain_online", teacher="efficientnet-lite0@128")
    row("the same, against the loop that runs the teacher on every batch", cross[:len(online)], online,
        "cross view", "30-line loop, teacher online", ("A real teacher", rt))
    step = one(rows, "real_teacher", variant="step_ratio")
    out.append(f"| a step with the teacher bank, against a step without any teacher | "
               f"{num(step['bank_over_no_teacher'], 3)}x | teacher online: {num(step['online_over_no_teacher'])}x | "
               f"– | [A real teacher]({rt}) |")
    ef = (287, 295)
    kd = seeds_of(rows, "distill_transfer", ef, variant="kd_e", seeds=(0, 1, 2, 3))
    loop = seeds_of(rows, "distill_transfer", (237, 277), variant="plain_baseline_lr2e-3_e", seeds=(0, 1, 2, 3))
    row("an in-domain classifier teacher (`cifar10_distill_kd`), k-NN (seeds 0-3)", kd, loop, "`kd` on the logits",
        "30-line feature loop", ("Which distillation objective", "docs/studies/objectives.md"))
    multi = seeds_of(rows, "distill_transfer", ef, variant="multi_kd_ef")
    best = [max(a, b) for a, b in zip(seeds_of(rows, "distill_transfer", ef, variant="kd_e"),
                                      seeds_of(rows, "distill_transfer", ef, variant="kd_f"))]
    row("two teachers of one recipe (`cifar10_distill_multi`), k-NN (seeds 0 / 1)", multi, best, "one head each",
        "the better one-teacher student", ("Several teachers", "docs/studies/several-teachers.md"))
    lite_e = seeds_of(rows, "multi_teacher", MULTI, variant="lite0+e", standardize="layernorm", **TEN)
    singles = [seeds_of(rows, "multi_teacher", MULTI, variant=v, standardize="layernorm", **TEN)
               for v in ("lite0", "lite2", "e")]
    best_single = [max(s[i] for s in singles if len(s) > i) for i in range(len(lite_e))]
    row("ImageNet EfficientNet-Lite0 beside an in-domain ResNet-18 (`cifar10_distill_multi_lite`), ~10 CPU-minutes, "
        "k-NN (seeds 0 / 1)", lite_e, best_single, "one term each", "the best one-teacher student",
        ("Several teachers", "docs/studies/several-teachers.md"))
    mira = one(rows, "mira_search", (146, 166), variant="k30+ts03+q3840+ema")
    sk = one(rows, "mira_search", (146, 166), variant="sinkhorn:k30+ts05+q3840")
    row("plain MIRA, CIFAR-10 sample, 14 epochs, k-NN (init 20.7)", [mira["knn_top1"]], [sk["knn_top1"]],
        "MIRA", "Sinkhorn (SeLa / SwAV)", ("MIRA at small scale", "docs/studies/mira.md"))
    # EfficientNet-Lite0 and 1,000 labels, 10 minutes a run: the regulariser, the labels alone, the peers
    reg = one(rows, "regularizer", REAL_BUDGET, providers=["efficientnet-lite0"], init="random", seeds=3)
    none = one(rows, "regularizer", REAL_BUDGET, weight=0.0, init="random")
    probe = one(rows, "regularizer", REAL_FIRST, variant="linear_probe")
    peer = one(rows, "regularizer", REAL_BUDGET, weight=0.0, init="label_free_teacher")
    reg_link = ("Feature regularisation", "docs/studies/regularisation.md")
    row("`FeatureRegularizer` tied to EfficientNet-Lite0, 1,000 CIFAR labels, 10 CPU-minutes a run, test accuracy",
        [reg["test_acc_mean"]], [none["test_acc_mean"]], "regularised ResNet-18", "labels alone", reg_link)
    row("the same, against the two-stage peer at the same budget (distil label-free, then fine-tune)",
        [reg["test_acc_mean"]], [peer["test_acc_mean"]], "regularised ResNet-18",
        "`cifar10_distill_lite`, then fine-tuned", reg_link)
    row("the same, against the teacher's own linear probe (the teacher kept at inference)", [reg["test_acc_mean"]],
        [probe["test_acc"]], "regularised ResNet-18", "probe on the teacher", reg_link)
    w = one(rows, "throughput", (112, 117), part="workers", image_size=224)
    out.append(f"| data-worker CPU per image at 224 px, augmentation on the device | {num(w['device_ms_per_image'])} ms"
               f" | in the workers: {num(w['workers_ms_per_image'])} ms | {num(w['fewer'], 1)}x fewer | "
               f"[Throughput](docs/studies/throughput.md) |")
    return "\n".join(out) + "\n"


# --- the command ------------------------------------------------------------------------------------------------------

def render(text: str, rows: list[dict]) -> str:
    """``text`` with every table block regenerated."""
    def one_block(m: re.Match) -> str:
        if m.group("name") not in TABLES:
            raise SystemExit(f"unknown table '{m.group('name')}' (tables: {', '.join(TABLES)})")
        return m.group(1) + TABLES[m.group("name")](rows) + m.group(4)
    return BLOCK.sub(one_block, text)


def unused(rows: list[dict]) -> list[dict]:
    """The result lines that no table on any page reads."""
    Used.lines = set()
    for page in pages():
        render(page.read_text(), rows)
    return [r for r in rows if r["_line"] not in Used.lines]


def main(argv: list[str]) -> int:
    rows, stale = lines(), []
    if "--unused" in argv:
        for r in unused(rows):
            print(r["_line"], json.dumps({k: v for k, v in r.items() if k != "_line"})[:160])
        return 0
    for page in pages():
        text = page.read_text()
        new = render(text, rows)
        if new != text:
            stale.append(str(page.relative_to(ROOT)))
            if "--check" not in argv:
                page.write_text(new)
    if "--check" in argv and stale:
        print(f"tables out of date in {', '.join(stale)}: run python benchmarks/tables.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
