"""Device, precision, seeding, optimiser and learning-rate schedule: the small pieces a run is set up with."""
from __future__ import annotations

import math
import random
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from .. import distributed as dist_utils


def resolve_device(name: str) -> torch.device:
    dist_utils.check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def effective_precision(device: torch.device, precision: str) -> str:
    """What a recipe's precision means on this device: fp16 autocast is for CUDA, so on a CPU fp16 runs as fp32;
    bf16 stays an explicit choice (its speed on CPUs: README, benchmarks/bench_precision.py)."""
    if device.type == "cpu" and precision == "fp16":
        return "fp32"
    return precision


def autocast_for(device: torch.device, precision: str):
    """The autocast context of ``effective_precision``; fp32 is no autocast."""
    precision = effective_precision(device, precision)
    if precision == "fp32":
        return nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_at(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warmup to ``base_lr`` over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def scaled_lr(cfg) -> float:
    """``optim.lr`` after ``optim.lr_scaling`` for the global batch (the official MIRA code scales linearly)."""
    factor = {"none": 1.0, "linear": cfg.batch_size / 256, "sqrt": math.sqrt(cfg.batch_size) / 4}[cfg.lr_scaling]
    return cfg.lr * factor


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """adam | adamw | sgd | lars through timm's optimizer factory, over the trainable parameters in two groups:
    biases and norm weights (1-D tensors) without weight decay, the rest with it (as VICReg, DINO, MIRA do);
    LARS also skips its trust ratio for the former."""
    from timm.optim import create_optimizer_v2

    kwargs: dict[str, Any] = {"momentum": cfg.momentum} if cfg.name in ("sgd", "lars") else {}
    return create_optimizer_v2(model, opt=cfg.name, lr=scaled_lr(cfg), weight_decay=cfg.weight_decay,
                               filter_bias_and_bn=True, **kwargs)
