"""CPU training-step time under bf16 autocast against fp32 (same MV-MR step, interleaved), whether the bf16 loss
stays finite and close, and the CPU's bf16 support as mvmr reads it (``cpu_bf16_support``): where it is not
``native``, ``trainer.precision: bf16`` runs as fp32. Without native bf16 a step can take tens of seconds: the
defaults (ResNet-18, 32 px, batch 32, 2 repeats) keep the run to a few minutes there.
Usage: python bench_precision.py [backbone] [image_size] [batch] [repeats]
"""
import copy
import sys

import torch

from common import best_times, emit
from mvmr.config import build_recipe
from mvmr.data import Batch
from mvmr.engine.optim import cpu_bf16_support
from mvmr.methods import build_method

backbone = sys.argv[1] if len(sys.argv) > 1 else "resnet18"
size = int(sys.argv[2]) if len(sys.argv) > 2 else 32
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 32
repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 2
recipe = build_recipe({"student": {"backbone": backbone, "projector": "512-512"},
                       "providers": {"pixels": {"weight": 1.0}, "lsd": {"weight": 1.0}}})
g = torch.Generator().manual_seed(0)
data = Batch(torch.rand(batch, 3, size, size, generator=g), [torch.rand(batch, 3, size, size, generator=g)],
             torch.zeros(batch, dtype=torch.long), torch.arange(batch))
base = build_method(recipe)
losses: dict[str, list[float]] = {"fp32": [], "bf16": []}


def stepper(precision: str):
    method = copy.deepcopy(base)
    opt = torch.optim.Adam(method.parameters(), lr=1e-4)

    def step():  # raw autocast, not mvmr's autocast_for (which runs bf16 as fp32 on CPUs without native bf16)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss, _ = method.training_step(data, 0.0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses[precision].append(loss.item())
    return step


times = best_times({"fp32": stepper("fp32"), "bf16": stepper("bf16")}, repeats=repeats)
emit(bench="precision", backbone=backbone, image_size=size, batch=batch, threads=torch.get_num_threads(),
     cpu_capability=torch.backends.cpu.get_cpu_capability(), cpu_bf16=cpu_bf16_support(),
     fp32_ms=round(times["fp32"] * 1e3, 1), bf16_ms=round(times["bf16"] * 1e3, 1),
     speedup_bf16=round(times["fp32"] / times["bf16"], 3),
     bf16_finite=all(map(lambda v: v == v and abs(v) < float("inf"), losses["bf16"])),
     first_loss_fp32=round(losses["fp32"][0], 5), first_loss_bf16=round(losses["bf16"][0], 5))
