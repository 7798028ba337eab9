"""Exact accumulation (gradient caching): peak memory and step time at optim.accumulate 1, 4 and 8 for the same
global batch (MV-MR step, ResNet-18, pixels + LSD). Each setting runs in its own process so its peak RSS is its own.
Usage: python bench_accumulate.py [batch] [image_size]
"""
import json
import subprocess
import sys

from common import emit

CHILD = r"""
import json, resource, sys, time, torch
from mvmr.config import build_recipe
from mvmr.data import Batch
from mvmr.engine.accumulate import cached_step
from mvmr.methods import build_method
parts, batch, size = (int(a) for a in sys.argv[1:4])
torch.manual_seed(0)
method = build_method(build_recipe({"student": {"backbone": "resnet18", "projector": "2048-2048"},
                                    "data": {"image_size": size},
                                    "providers": {"pixels": {"weight": 1.0}, "lsd": {"weight": 1.0}}})).train()
g = torch.Generator().manual_seed(0)
b = Batch(torch.rand(batch, 3, size, size, generator=g), [torch.rand(batch, 3, size, size, generator=g)], None,
          torch.arange(batch))
def step():
    if parts == 1:
        loss, _ = method.training_step(b, 0.0)
        loss.backward()
    else:
        cached_step(method, b, parts, 0.0)
    method.zero_grad(set_to_none=True)
step()
times = []
for _ in range(3):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
print(json.dumps({"step_ms": 1e3 * min(times), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 256
size = int(sys.argv[2]) if len(sys.argv) > 2 else 32
results = {}
for parts in (1, 4, 8):
    out = subprocess.run([sys.executable, "-c", CHILD, str(parts), str(batch), str(size)], capture_output=True,
                         text=True, check=True)
    results[parts] = json.loads(out.stdout.strip().splitlines()[-1])
emit(bench="accumulate", backbone="resnet18", batch=batch, image_size=size,
     **{f"acc{k}_{m}": round(v[m], 1) for k, v in results.items() for m in ("step_ms", "peak_rss_mb")},
     time_ratio_acc4=round(results[4]["step_ms"] / results[1]["step_ms"], 2),
     memory_ratio_acc4=round(results[4]["peak_rss_mb"] / results[1]["peak_rss_mb"], 2))
