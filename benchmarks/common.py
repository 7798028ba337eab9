"""Shared helpers for benchmarks: interleaved best-of-N timing and one JSON line of output."""
from __future__ import annotations

import json
import time
from typing import Callable

import torch


def best_times(fns: dict[str, Callable[[], object]], repeats: int = 5) -> dict[str, float]:
    """Best wall time of each function over ``repeats`` rounds, run interleaved so machine noise hits all alike."""
    best = {k: float("inf") for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def emit(**record: object) -> None:
    """Print one JSON line."""
    print(json.dumps(record, sort_keys=False))


def pad_crop_flip(x: "torch.Tensor", g: "torch.Generator", pad: int = 4) -> "torch.Tensor":
    """The CIFAR augmentation on a batch: reflect-pad by ``pad``, a random crop back to size, a horizontal flip."""
    import torch.nn.functional as F

    size = x.shape[-1]
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    i, j = torch.randint(0, 2 * pad + 1, (2, len(x)), generator=g)
    out = torch.stack([padded[k, :, i[k]:i[k] + size, j[k]:j[k] + size] for k in range(len(x))])
    flip = torch.rand(len(x), generator=g) < 0.5
    out[flip] = out[flip].flip(-1)
    return out
