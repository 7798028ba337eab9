"""Training-step time of dense distillation (#20 item 3): a ResNet-18 student, a ResNet-18 teacher, 64-px images,
the teacher's summary term alone, and beside it a ``spatial`` term on the teacher's map, made by one teacher forward
(the summary is the map's average pool) or by two (the teacher entries built apart, as before the sharing).
One JSON line; the three steps timed interleaved in one run (best of ``repeats``).
Usage: python bench_dense_step.py [batch] [repeats]
"""
import sys

import torch

from common import best_times, emit, step_fn
from mvmr.config import build_recipe
from mvmr.data import Batch
from mvmr.methods import build_method

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 128
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
SIZE = 64
PARAMS = {"pretrained": "none", "size": SIZE, "crop_pct": 1.0}
TERM = {"provider": "torchvision:resnet18", "objective": "cos_smoothl1", "standardize": "layernorm",
        "view": "augmented", "representation": "backbone", "params": PARAMS}
DENSE = {**TERM, "representation": "spatial"}
# other params (a no-op at 64 px: no resize happens) build a second teacher instance: two forwards, as before
APART = {**DENSE, "params": {**PARAMS, "interpolation": "bicubic"}}


def method(providers: dict):
    torch.manual_seed(0)
    recipe = build_recipe({"data": {"name": "digits", "image_size": SIZE},
                           "student": {"backbone": "resnet18", "projector": "512-512", "zero_init_residual": False},
                           "providers": providers, "loss": {"mse": 0.0, "variance": 0.0, "dcor_views": 0.0}})
    return build_method(recipe).train()


g = torch.Generator().manual_seed(0)
images = torch.rand(batch, 3, SIZE, SIZE, generator=g)
data = Batch(images, [images.clone()], torch.zeros(batch, dtype=torch.long), torch.arange(batch))
methods = {"summary": method({"t": TERM}), "dense_one_forward": method({"t": TERM, "t_dense": DENSE}),
           "dense_two_forwards": method({"t": TERM, "t_dense": APART})}
assert methods["dense_one_forward"].provider_terms.providers["t"] is methods["dense_one_forward"].provider_terms.providers["t_dense"]
assert methods["dense_two_forwards"].provider_terms.providers["t"] is not methods["dense_two_forwards"].provider_terms.providers["t_dense"]


t = best_times({k: step_fn(m, data) for k, m in methods.items()}, repeats)
emit(bench="dense_step", batch=batch, image_size=SIZE, **{f"{k}_ms": round(1000 * v, 1) for k, v in t.items()},
     dense_over_summary_one_forward=round(t["dense_one_forward"] / t["summary"], 3),
     dense_over_summary_two_forwards=round(t["dense_two_forwards"] / t["summary"], 3),
     threads=torch.get_num_threads())
