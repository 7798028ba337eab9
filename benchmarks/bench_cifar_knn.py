"""Real data: k-NN top-1 on ../shared/data/cifar10-mini.npz after a fixed CPU budget, one JSON line per variant.

Variants: MV-MR with the biased and with the unbiased dCor estimator, the no-dCor ablation (MSE + variance only),
and random initialisation. Usage: python bench_cifar_knn.py [epochs] [backbone] [small_stem] [variants...]
"""
import sys
import tempfile
import time
from pathlib import Path

from common import CIFAR_NPZ as NPZ, HAND, cifar_tree, emit
from mvmr.config import build_recipe
from mvmr.engine import pretrain

epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 8
backbone = sys.argv[2] if len(sys.argv) > 2 else "resnet18"
small_stem = (sys.argv[3] if len(sys.argv) > 3 else "false") == "true"
chosen = sys.argv[4:] or ["biased", "unbiased", "no_dcor"]
VARIANTS = {
    "biased": {"providers": HAND, "loss": {"dcor_estimator": "biased"}},
    "unbiased": {"providers": HAND, "loss": {"dcor_estimator": "unbiased"}},
    "no_dcor": {"providers": {}, "loss": {"dcor_views": 0.0}},
}
if not NPZ.is_file():
    sys.exit(f"{NPZ} is missing: this benchmark needs the shared CIFAR-10 sample")
for name in chosen:
    tree = cifar_tree(epochs, method="mvmr", student={"backbone": backbone,
                                                      "stem": "cifar" if small_stem else "standard"},
                      trainer={"log_every": 20}, **VARIANTS[name])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        summary = pretrain(build_recipe(tree), Path(out) / "run")
    if name == chosen[0]:
        emit(bench="cifar10_mini_knn", variant="random_init", backbone=backbone, small_stem=small_stem,
             knn_top1=round(summary["knn_top1_at_init"], 2))
    emit(bench="cifar10_mini_knn", variant=name, backbone=backbone, small_stem=small_stem, epochs=epochs,
         knn_top1=round(summary["knn_top1"], 2), minutes=round((time.perf_counter() - started) / 60, 1))
