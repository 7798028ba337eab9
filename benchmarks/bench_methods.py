"""One results table at equal budget on the shared CIFAR-10 sample: random init, MV-MR (hand-crafted providers),
MV-MR without dCor, VICReg (lightly's VICRegLoss, registered from outside by examples/vicreg_plugin), MIRA,
Sinkhorn, and the MIRA + MV-MR hybrid. Same backbone, views, batch, epochs and seed; one JSON line each with
k-NN top-1, linear-probe top-1 and minutes. Usage: python bench_methods.py [epochs] [variants...]
"""
import sys
import tempfile
import time
from pathlib import Path

from common import emit
from mvmr.checkpoint import load_checkpoint
from mvmr.config import build_recipe
from mvmr.engine import pretrain
from mvmr.eval import evaluate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "vicreg_plugin"))  # the plug-in, as if installed
import mvmr_example.vicreg  # noqa: E402,F401  -- registers the vicreg method

NPZ = ROOT.parent / "shared" / "data" / "cifar10-mini.npz"
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 4
HAND = {"pixels": {"weight": 1.0}, "lsd": {"weight": 1.0},
        "hog": {"weight": 1.0, "params": {"orientations": 12, "pixels_per_cell": 8, "cells_per_block": 2}}}
MIRA = {"prototypes": 300, "views": "recipe"}
VARIANTS = {
    "mvmr": {"method": "mvmr", "providers": HAND},
    "mvmr_no_dcor": {"method": "mvmr", "loss": {"dcor_views": 0.0}},
    "vicreg": {"method": "vicreg"},
    "mira": {"method": "mira", "mira": MIRA},
    "sinkhorn": {"method": "mira", "mira": {**MIRA, "assigner": "sinkhorn"}},
    "mira_hybrid": {"method": "mira", "mira": MIRA, "providers": HAND},
}
chosen = sys.argv[2:] or list(VARIANTS)
for i, name in enumerate(chosen):
    tree = {"data": {"name": "npz", "root": str(NPZ), "image_size": 32},
            "student": {"backbone": "resnet18", "stem": "standard", "projector": "1024-1024"},
            "optim": {"name": "adam", "lr": 1e-3, "batch_size": 256, "epochs": epochs, "warmup_epochs": 1},
            "trainer": {"precision": "fp32", "num_workers": 2, "progress": False, "log_every": 20},
            "eval": {"knn_every": epochs}, **VARIANTS[name]}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        tree["trainer"]["cache_dir"] = str(Path(out) / "cache")
        summary = pretrain(build_recipe(tree), Path(out) / "run")
        minutes = (time.perf_counter() - started) / 60
        recipe, method = load_checkpoint(Path(out) / "run" / "checkpoints" / "last.pt", with_providers=False)
        linear = evaluate(method.student, recipe.data, "linear")["top1"]
    if i == 0:
        emit(bench="methods", variant="random_init", knn_top1=round(summary["knn_top1_at_init"], 2))
    emit(bench="methods", variant=name, epochs=epochs, knn_top1=round(summary["knn_top1"], 2),
         linear_top1=round(linear, 2), minutes=round(minutes, 1))
