"""Distillation epoch time: ViT-B/16 teacher computed online vs read from a warm cache, 96-px STL10-shaped images.

Images: the shared CIFAR-10 sample's first N train images, upscaled to 96 px (STL10's size). Teacher: open_clip
ViT-B-16 with random weights (no network here; the cost is the same). Student: ResNet-50, official projector.
The third run has no teacher term at all: the student-only bound that a perfect cache can reach.
Usage: python bench_distill.py [n_images] [batch] [projector] [backbone]
"""
import sys
import tempfile
from pathlib import Path

from common import emit
from mvmr.cache_admin import build_caches
from mvmr.config import build_recipe
from mvmr.engine import pretrain

NPZ = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cifar10-mini.npz"
n = int(sys.argv[1]) if len(sys.argv) > 1 else 256
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
projector = sys.argv[3] if len(sys.argv) > 3 else "8192-8192-8192"
backbone = sys.argv[4] if len(sys.argv) > 4 else "resnet50"
with tempfile.TemporaryDirectory() as tmp:
    def recipe(use_cache, teacher=True):
        return build_recipe({
            "method": "mvmr", "data": {"name": "npz", "root": str(NPZ), "image_size": 96, "limit": n},
            "student": {"backbone": backbone, "projector": projector},
            "providers": {"clip-vit-b16": {"weight": 1.0, "params": {"pretrained": "none"}}} if teacher else {},
            "optim": {"batch_size": batch, "epochs": 1, "warmup_epochs": 0},
            "trainer": {"precision": "fp32", "num_workers": 2, "progress": False, "use_cache": use_cache,
                        "cache_dir": f"{tmp}/cache"},
            "eval": {"knn_every": 0}})

    online = pretrain(recipe(False), Path(tmp) / "online")
    build_caches(recipe(True))
    warm = pretrain(recipe(True), Path(tmp) / "warm")
    bound = pretrain(recipe(True, teacher=False), Path(tmp) / "student_only")
emit(bench="distill_epoch", teacher="clip-vit-b16", student=backbone, projector=projector, image_size=96,
     images=n, batch=batch, online_images_per_s=round(online["images_per_s"], 2),
     cached_images_per_s=round(warm["images_per_s"], 2), student_only_images_per_s=round(bound["images_per_s"], 2),
     speedup=round(warm["images_per_s"] / online["images_per_s"], 2))
