"""MV-MR training-step time over the bare invariance + variance step (same backbone, batch, optimizer).

Measured with the providers computed online and with a warm feature cache (the goal with the cache is ≤ 1.25×).
Usage: python bench_step.py [backbone] [image_size] [batch]
"""
import sys
import tempfile
from pathlib import Path

import torch

from common import best_times, emit, step_fn
from mvmr.cache import CachedFeatures, open_caches
from mvmr.config import build_recipe
from mvmr.data import Batch
from mvmr.methods import build_method

backbone = sys.argv[1] if len(sys.argv) > 1 else "resnet18"
size = int(sys.argv[2]) if len(sys.argv) > 2 else 32
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 128
providers = {"pixels": {"weight": 1.0}, "hog": {"weight": 1.0, "params": {"orientations": 12, "cells_per_block": 2}},
             "lsd": {"weight": 1.0}}
common = {"student": {"backbone": backbone, "projector": "512-512"}}
full = build_method(build_recipe({**common, "providers": providers}))
bare = build_method(build_recipe({**common, "loss": {"dcor_views": 0.0}}))
bare.load_state_dict(full.state_dict(), strict=False)
g = torch.Generator().manual_seed(0)
batch_data = Batch(torch.rand(batch, 3, size, size, generator=g), [torch.rand(batch, 3, size, size, generator=g)],
                   torch.zeros(batch, dtype=torch.long), torch.arange(batch))


cached = build_method(build_recipe({**common, "providers": providers}))
cached.load_state_dict(full.state_dict())
with tempfile.TemporaryDirectory() as tmp:
    caches = open_caches(cached.providers, {"name": "bench", "length": batch}, batch, size, Path(tmp))
    cached.feature_source = CachedFeatures(cached.providers, caches)
    cached.provider_terms.features({"original": batch_data.original, "augmented": batch_data.views[0]},
                                   batch_data.index)  # warm: every row stored
    times = best_times({k: step_fn(m, batch_data) for k, m in {"mvmr": full, "cached": cached, "bare": bare}.items()}, repeats=5)
emit(bench="step", backbone=backbone, image_size=size, batch=batch, providers=sorted(providers),
     threads=torch.get_num_threads(), mvmr_ms=round(times["mvmr"] * 1e3, 1), cached_ms=round(times["cached"] * 1e3, 1),
     bare_ms=round(times["bare"] * 1e3, 1), ratio_online=round(times["mvmr"] / times["bare"], 3),
     ratio_cached=round(times["cached"] / times["bare"], 3))
