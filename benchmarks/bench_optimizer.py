"""The optimizer step ``build_optimizer`` hands a run (torch's fused Adam) against torch's default on a CPU (a loop
over the parameter tensors), side by side: the update alone and the whole training step of a ResNet-18 student
(batch 128, 32 px, the pixels provider), best of interleaved rounds; and the largest difference between the two
updates of one step from the same parameters and gradients.
Usage: python bench_optimizer.py [backbone] [image_size] [batch]   (one JSON line)
"""
import copy
import sys

import torch
from timm.optim import create_optimizer_v2

from common import best_times, emit
from mvmr.config import build_recipe
from mvmr.data import Batch
from mvmr.engine import build_optimizer
from mvmr.methods import build_method

backbone = sys.argv[1] if len(sys.argv) > 1 else "resnet18"
size = int(sys.argv[2]) if len(sys.argv) > 2 else 32
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 128
recipe = build_recipe({"student": {"backbone": backbone, "projector": "512-512"}, "providers": {"pixels": {}},
                       "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 1e-6}})
torch.manual_seed(0)
methods = {"fused": build_method(recipe)}
methods["loop"] = copy.deepcopy(methods["fused"])
optims = {"fused": build_optimizer(methods["fused"], recipe.optim),
          "loop": create_optimizer_v2(methods["loop"], opt="adam", lr=recipe.optim.lr,
                                      weight_decay=recipe.optim.weight_decay, filter_bias_and_bn=True)}
assert optims["fused"].defaults["fused"] and not optims["loop"].defaults["fused"], "this torch has no fused CPU Adam"
g = torch.Generator().manual_seed(0)
data = Batch(torch.rand(batch, 3, size, size, generator=g), [torch.rand(batch, 3, size, size, generator=g)],
             torch.zeros(batch, dtype=torch.long), torch.arange(batch))


loss, _ = methods["fused"].training_step(data, 0.0)
loss.backward()
for a, b in zip(methods["fused"].parameters(), methods["loop"].parameters()):
    b.grad = None if a.grad is None else a.grad.clone()
before = [p.detach().clone() for p in methods["fused"].parameters()]
for opt in optims.values():
    opt.step()
update_difference = max(((a - p0) - (b - p0)).abs().max().item() for a, b, p0 in
                        zip(methods["fused"].parameters(), methods["loop"].parameters(), before))
largest_update = max((a - p0).abs().max().item() for a, p0 in zip(methods["fused"].parameters(), before))


def train_step(name):
    def step() -> None:
        loss, _ = methods[name].training_step(data, 0.0)
        loss.backward()
        optims[name].step()
        optims[name].zero_grad(set_to_none=False)  # keep the grads for the update-only timing
    return step


steps = best_times({k: train_step(k) for k in methods}, repeats=15)
updates = best_times({k: optims[k].step for k in methods}, repeats=10)
emit(bench="optimizer", backbone=backbone, image_size=size, batch=batch, threads=torch.get_num_threads(),
     update_ms={k: round(1000 * v, 2) for k, v in updates.items()}, update_ratio=round(updates["loop"] / updates["fused"], 2),
     step_ms={k: round(1000 * v, 1) for k, v in steps.items()}, step_ratio=round(steps["loop"] / steps["fused"], 3),
     one_step_update_max=float(f"{largest_update:.2e}"), one_step_update_difference_max=float(f"{update_difference:.2e}"))
