"""Device, precision, seeding, optimiser and learning-rate schedule: the small pieces a run is set up with."""
from __future__ import annotations

import functools
import math
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .. import distributed as dist_utils


def resolve_device(name: str) -> torch.device:
    dist_utils.check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=None)
def cpu_bf16_support() -> str:
    """How this CPU does bfloat16: ``native`` (AVX512-BF16 or AMX on x86, the BF16 extension on Arm), or
    ``emulated`` (no such instructions: bf16 autocast ran 28x slower than fp32 on an AVX2-only EPYC, bench_precision.py). Read from the
    CPU's flags (/proc/cpuinfo); where they cannot be read, a short timed matmul probe decides."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags = {w for line in text.splitlines() if line.lower().startswith(("flags", "features")) for w in line.split()}
    if flags:
        return "native" if flags & {"avx512_bf16", "amx_bf16", "bf16"} else "emulated"
    a = torch.randn(256, 256)
    timings = {}
    for dtype in (torch.float32, torch.bfloat16):
        x = a.to(dtype)
        x @ x  # warm-up
        t0 = time.perf_counter()
        for _ in range(5):
            x @ x
        timings[dtype] = time.perf_counter() - t0
    return "native" if timings[torch.bfloat16] <= 2 * timings[torch.float32] else "emulated"


def effective_precision(device: torch.device, precision: str) -> str:
    """What a recipe's precision means on this device. auto: bf16 on CUDA (no loss scaling needed; fp16 where the
    GPU has no bf16), fp32 elsewhere. fp16 autocast is for CUDA: on a CPU it runs as fp32. bf16 runs as bf16 on CUDA
    and on CPUs with native bfloat16; on other CPUs as fp32, since there it is tens of times slower (a recipe stays
    portable between a GPU node and a laptop; the run prints one line saying so)."""
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and (precision == "fp16" or (precision == "bf16" and cpu_bf16_support() != "native")):
        return "fp32"
    return precision


def precision_note(device: torch.device, precision: str) -> Optional[str]:
    """The one line a run prints when its precision runs as another on this device, else None."""
    actual = effective_precision(device, precision)
    if actual == precision or precision == "auto":
        return None
    why = ("fp16 autocast is for CUDA" if precision == "fp16" else
           "this CPU has no native bfloat16 (avx512_bf16 / amx_bf16), where bf16 autocast runs tens of times slower")
    return f"note: trainer.precision={precision} runs as {actual} on the {device.type.upper()}: {why}"


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


FUSED = ("adam", "adamw", "sgd")  # torch's fused (one-kernel) step: CUDA, and CPU since torch 2.4


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """adam | adamw | sgd | lars through timm's optimizer factory, over the trainable parameters in two groups:
    biases and norm weights (1-D tensors) without weight decay, the rest with it (as VICReg, DINO, MIRA do);
    LARS also skips its trust ratio for the former. Adam, AdamW and SGD take torch's fused step where the torch and
    device have it (the same update, rounded otherwise: on a CPU torch's default is a per-tensor loop, 2.7-9x
    slower for a ResNet-18, benchmarks/bench_optimizer.py)."""
    from timm.optim import create_optimizer_v2

    kwargs: dict[str, Any] = {"momentum": cfg.momentum} if cfg.name in ("sgd", "lars") else {}
    build = functools.partial(create_optimizer_v2, model, opt=cfg.name, lr=scaled_lr(cfg),
                              weight_decay=cfg.weight_decay, filter_bias_and_bn=True, **kwargs)
    if cfg.name in FUSED:
        try:
            return build(fused=True)
        except RuntimeError:  # no fused kernel for this torch and device (e.g. a CPU under torch < 2.4)
            pass
    return build()
