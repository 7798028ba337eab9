"""mvmr.FeatureRegularizer in a plain supervised loop: ResNet-18 trained with labels on 10% of the shared CIFAR-10
sample (1,000 images, 100 per class), with and without the regulariser (hand-crafted providers on the penultimate
features), same budget, 3 seeds each; test accuracy on the 2,000 test images (mean ± std).
Usage: python bench_regularizer.py [epochs] [weights, comma-separated]   (prints one JSON line per variant)
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from common import emit, pad_crop_flip
import mvmr

NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-mini.npz"
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
weights = [float(w) for w in (sys.argv[2] if len(sys.argv) > 2 else "0,1").split(",")]
PROVIDERS = {"pixels": {}, "hog": {"params": {"orientations": 9, "pixels_per_cell": 8, "cells_per_block": 2}},
             "lsd": {"params": {"size": 3}}}


def load():
    f = np.load(NPZ)
    y = f["y_train"]
    keep = np.concatenate([np.flatnonzero(y == c)[:100] for c in range(10)])
    as_float = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    return as_float(f["x_train"][keep]), torch.from_numpy(y[keep]).long(), as_float(f["x_test"]), torch.from_numpy(f["y_test"]).long()



def train(weight: float, seed: int, data) -> float:
    x, y, xt, yt = data
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10)
    backbone = torch.nn.Sequential(*list(model.children())[:-1], torch.nn.Flatten())
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1), torch.tensor([0.247, 0.243, 0.261]).view(1, 3, 1, 1)
    reg = mvmr.FeatureRegularizer({n: {"weight": weight, **p} for n, p in PROVIDERS.items()}) if weight else None
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    steps = epochs * (len(x) // 125)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(125):
            images = pad_crop_flip(x[idx], g)
            features = backbone((images - mean) / std)
            loss = F.cross_entropy(model.fc(features), y[idx])
            if reg is not None:
                loss = loss + reg(images, features)[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model((b - mean) / std).argmax(1) for b in xt.split(500)])
    return 100.0 * (pred == yt).float().mean().item()


data = load()
for weight in weights:
    t0, accs = time.perf_counter(), [train(weight, seed, data) for seed in (0, 1, 2)]
    emit(bench="regularizer", providers=sorted(PROVIDERS) if weight else [], weight=weight, labelled=len(data[0]),
         epochs=epochs, seeds=3, test_acc_mean=round(statistics.mean(accs), 2), test_acc_std=round(statistics.stdev(accs), 2),
         test_accs=[round(a, 2) for a in accs], minutes_per_run=round((time.perf_counter() - t0) / 180, 2),
         threads=torch.get_num_threads())
