"""Several real teachers distilled label-free into one ResNet-18 student, at one CPU budget a run (teacher passes
included), one JSON line per row.

Teachers, frozen: ``lite0`` (EfficientNet-Lite0, ImageNet, at 128 px), ``lite2`` (EfficientNet-Lite2, ImageNet,
stronger and slower, at ``--lite2-size``, default 128) and ``e`` (bench_distill_transfer.py's teacher E: a
ResNet-18 trained with the sample's labels at 32 px, the in-domain teacher; trained there once if missing).
Student: a ResNet-18 (torchvision init) at 32 px on the shared CIFAR-10 sample, no labels; k-NN (k=20, T=0.07) of
its backbone features, train -> the 2,000 test images.

Rows (``python bench_multi_teacher.py ROW ... [--seed=N] [--budget=M] [--epoch-minutes=X] [--epochs=N]
[--standardize=MODE] [--stem=STEM] [--dense=W]``):
- ``teachers``: each teacher's k-NN, the k-NN of their features side by side (each teacher's L2-normalised, for
  every pair and all three), and the minutes of one pass over the train images, written to
  benchmarks/.cache/multi_teacher_passes.json for the student rows to charge;
- ``dense_step``: a training step with Lite0's summary term read from memory against the same step with the
  ``--dense`` spatial term beside it (the teacher online), interleaved; ``--stem`` picks the student's stem;
- a ``+``-joined set of teachers (``lite0``, ``lite0+e``, ``lite0+lite2+e``, ...): one student, one term per
  teacher (cos + smooth-L1 on the teacher's features of the original view, through RADIO's adaptor, weight 1
  each; MV-MR's cross view: the student sees a pad-4 crop + flip), ``--standardize`` of each teacher's features
  (``layernorm``, ``dimension``, ``phis``), the shipped ``cifar10_distill_lite`` optimiser settings;
  ``--stem``: the student's ``student.stem`` (``small_kernel``: 3×3 stride-1 conv1, a 2×2 last map at 32 px
  instead of 1×1); ``--dense=W``: beside Lite0's summary term, a ``spatial`` term of weight W on its last map
  (4×4 at 128 px), the student's map resized to it, both on the augmented view with the teacher online (a map
  is compared location by location, so teacher and student must see one view; its cost is in the row's minutes).

Budget: each teacher's features are computed once, cached in benchmarks/.cache/features and shared by the rows;
a row is charged that teacher's measured pass (the ``teachers`` row's minutes), and trains for the epochs that
fit the rest of ``--budget`` at ``--epoch-minutes`` a student epoch (default 0.4, the estimate every result line
used; ``--epochs`` overrides). Every row prints its charged teacher minutes, its measured training minutes and their sum.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench_real_teacher import arrays, features  # the sample as tensors; a frozen encoder's rows, batched
from common import CIFAR_NPZ as NPZ, emit, option
from mvmr.cache_admin import build_caches
from mvmr.config import build_recipe
from mvmr.engine import Run, default_callbacks, fit
from mvmr.eval import knn_classify
from mvmr.registry import create_provider

CACHE = Path(__file__).resolve().parent / ".cache"
PASSES = CACHE / "multi_teacher_passes.json"
CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.247, 0.243, 0.261]
SEED, BUDGET, LITE2_SIZE = option("seed", 0), option("budget", 10.0), option("lite2-size", 128)
STANDARDIZE = option("standardize", "layernorm")
STEM, DENSE = option("stem", "standard"), option("dense", 0.0)
BATCH, LR = 128, 2e-3


def teacher_e() -> Path:
    """Teacher E's weight file (bench_distill_transfer.py trains and caches it)."""
    import bench_distill_transfer

    return bench_distill_transfer.teacher(bench_distill_transfer.arrays(), "e")


TEACHERS = ("lite0", "lite2", "e")


def entry(short: str) -> tuple[str, dict]:
    """A teacher's ``providers`` entry (the recipe's key, its settings), features read on the original view; teacher
    E's weight file is looked up (and trained once) only when E is asked for."""
    if short == "e":
        return "torchvision:resnet18", {"params": {"weights": str(teacher_e()), "size": 32, "crop_pct": 1.0,
                                                   "mean": CIFAR_MEAN, "std": CIFAR_STD}}
    return f"efficientnet-{short}", {"params": {"size": 128 if short == "lite0" else LITE2_SIZE}}


def term(settings: dict) -> dict:
    return {"weight": 1.0, "objective": "cos_smoothl1", "standardize": STANDARDIZE, "view": "cross",
            "representation": "backbone", **settings}


def dense_term(weight: float) -> dict:
    """Lite0's last map (4×4 at 128 px) against the student's, resized to it, one row per location: both on the
    student's augmented view (a map is compared location by location, so the teacher sees the same view), online."""
    return {"lite0_dense": {**term(entry("lite0")[1]), "provider": "efficientnet-lite0", "weight": weight,
                            "view": "augmented", "representation": "spatial"}}


def tree(teachers: list[str], epochs: int, dense: float = 0.0) -> dict:
    """The shipped cifar10_distill_lite setting with one term per teacher, and with ``dense`` > 0 a spatial term
    of that weight on Lite0's map."""
    providers = {name: term(settings) for name, settings in map(entry, teachers)}
    return {"method": "mvmr",
            "data": {"name": "npz", "root": str(NPZ), "image_size": 32,
                     "augment": {"crop": "pad", "pad": 4, "jitter_p": 0.0, "gray_p": 0.0, "blur_p": 0.0}},
            "student": {"backbone": "resnet18", "stem": STEM, "projector": "512-512", "zero_init_residual": False},
            "providers": {**providers, **(dense_term(dense) if dense else {})},
            "loss": {"mse": 0.0, "variance": 0.0, "dcor_views": 0.0},
            "optim": {"name": "adam", "lr": LR, "weight_decay": 1e-6, "batch_size": BATCH, "epochs": epochs,
                      "warmup_epochs": 0.5},
            "trainer": {"precision": "fp32", "num_workers": 2, "progress": False, "seed": SEED,
                        "cache_dir": str(CACHE / "features")},
            "eval": {"knn_every": epochs}}


def teachers_row(data) -> dict:
    """Each teacher's k-NN, the pairs' and the three's concatenated features' k-NN, each teacher's pass minutes."""
    x, y, xt, yt = data
    feats, out, passes = {}, {}, {}
    for short in TEACHERS:
        name, settings = entry(short)
        provider = create_provider(name, **settings["params"]).eval()
        started = time.perf_counter()
        train = features(provider, x)
        passes[short] = round((time.perf_counter() - started) / 60, 2)
        feats[short] = (F.normalize(train, dim=1), F.normalize(features(provider, xt), dim=1))
        out[f"knn_{short}"] = round(knn_classify(*feats[short][:1], y, feats[short][1], yt)["top1"], 2)
    keys = list(feats)
    groups = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]] + [tuple(keys)]
    for group in groups:
        joined = [torch.cat([feats[k][s] for k in group], 1) for s in (0, 1)]
        out["knn_concatenated_" + "+".join(group)] = round(knn_classify(joined[0], y, joined[1], yt)["top1"], 2)
    CACHE.mkdir(exist_ok=True)
    tmp = PASSES.with_suffix(".tmp")
    tmp.write_text(json.dumps({"lite2_size": LITE2_SIZE, "minutes": passes}))
    tmp.replace(PASSES)
    return {**out, "pass_minutes": passes}


def student_row(teachers: list[str]) -> dict:
    """One student of ``teachers`` at the budget: their passes charged, the rest spent on student epochs."""
    if not PASSES.is_file():
        raise SystemExit(f"{PASSES} is missing: run `python bench_multi_teacher.py teachers` first (it measures "
                         f"the teacher passes a row is charged)")
    passes = json.loads(PASSES.read_text())
    if "lite2" in teachers and passes["lite2_size"] != LITE2_SIZE:
        raise SystemExit(f"the measured passes are of Lite2 at {passes['lite2_size']} px; rerun the teachers row "
                         f"with --lite2-size={LITE2_SIZE}")
    if DENSE and "lite0" not in teachers:
        raise SystemExit("--dense adds a spatial term on Lite0's map beside its summary term; the row needs lite0")
    charged = sum(passes["minutes"][t] for t in teachers)
    epochs = option("epochs", 0) or max(1, int((BUDGET - charged) // option("epoch-minutes", 0.4)))
    recipe = build_recipe(tree(teachers, epochs, DENSE))
    filled = time.perf_counter()
    build_caches(recipe)  # a hit after the first row of each teacher; its fill is charged as the measured pass
    filled = (time.perf_counter() - filled) / 60
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        run = Run(recipe, Path(out) / "run")
        summary = fit(run, default_callbacks(run))
    train = (time.perf_counter() - started) / 60
    return {"epochs": epochs, "student_knn": round(summary["knn_top1"], 2),
            "student_knn_at_init": round(summary["knn_top1_at_init"], 2), "teacher_minutes": round(charged, 2),
            "train_minutes": round(train, 2), "minutes": round(charged + train, 2),
            "cache_fill_minutes": round(filled, 2)}


def dense_step_row(repeats: int = 3) -> dict:
    """One training step (batch 128, 32 px, ``--stem``) with Lite0's summary term read from memory (as from the
    cache), against the same step with the spatial term beside it (Lite0 online on the augmented view), interleaved."""
    from common import best_times, step_fn
    from mvmr.data import Batch
    from mvmr.methods import build_method

    g = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 3, 32, 32, generator=g)
    batch = Batch(x, [x.flip(3)], torch.zeros(BATCH, dtype=torch.long), torch.arange(BATCH))
    cached = torch.randn(BATCH, 1280, generator=g)
    steps = {}
    for key, weight in (("summary", 0.0), ("summary_dense", 1.0)):
        torch.manual_seed(0)
        method = build_method(build_recipe(tree(["lite0"], 1, weight))).train()
        method.provider_terms.source = lambda name, images, index, view="original": cached  # the cache's rows
        steps[key] = step_fn(method, batch)
    t = best_times(steps, repeats)
    return {**{f"{k}_ms": round(1000 * v, 1) for k, v in t.items()},
            "dense_over_summary": round(t["summary_dense"] / t["summary"], 3), "stem": STEM, "batch": BATCH}


def main() -> None:
    torch.set_num_threads(2)
    for row in [a for a in sys.argv[1:] if not a.startswith("--")]:
        common = {"bench": "multi_teacher", "variant": row, "lite2_size": LITE2_SIZE}
        if row == "teachers":
            emit(**common, **teachers_row(arrays()))
            continue
        if row == "dense_step":
            emit(bench="multi_teacher", variant=row, **dense_step_row())
            continue
        teachers = row.split("+")
        unknown = [t for t in teachers if t not in TEACHERS]
        if unknown:
            raise SystemExit(f"unknown teacher {unknown[0]!r} in row {row!r}; rows join lite0, lite2 and e with '+'")
        extra = {"stem": STEM, "dense_weight": DENSE} if STEM != "standard" or DENSE else {}
        emit(**common, seed=SEED, standardize=STANDARDIZE, budget_minutes=BUDGET, **extra, **student_row(teachers))


if __name__ == "__main__":
    main()
