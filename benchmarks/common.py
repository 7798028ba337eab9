"""Shared helpers for benchmarks: interleaved best-of-N timing and one JSON line of output."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset


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


def step_fn(method, batch) -> Callable[[], None]:
    """One training step of ``method`` on ``batch`` (forward, backward, Adam update), for ``best_times``."""
    opt = torch.optim.Adam(method.parameters(), lr=1e-4)

    def step() -> None:
        loss, _ = method.training_step(batch, 0.0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


class RandomImages(Dataset):
    """n random uint8 HWC images, as a decoded dataset hands them out (throughput benchmarks)."""

    def __init__(self, n: int, height: int, width: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, height, width, 3), dtype=torch.uint8, generator=g).numpy()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], 0


def option(name: str, default=None):
    """The value of a ``--name=VALUE`` command-line flag, cast to ``default``'s type; ``default`` when absent."""
    import sys

    value = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith(f"--{name}=")), None)
    return default if value is None else value if default is None else type(default)(value)


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


# The shared CIFAR-10 sample; MVMR_BENCH_NPZ=PATH runs the CIFAR benchmarks on another npz of the same keys (a
# held-out subset). Trained teachers are cached under the file's name (DATA_TAG), so two files never share one.
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-mini.npz"
CIFAR_NPZ = Path(os.environ.get("MVMR_BENCH_NPZ", SAMPLE))
DATA_TAG = CIFAR_NPZ.stem.replace("-", "")
# The hand-crafted providers every CIFAR benchmark uses (the quickstart's): pixels, local std, HOG.
HAND = {"pixels": {"weight": 1.0}, "lsd": {"weight": 1.0},
        "hog": {"weight": 1.0, "params": {"orientations": 12, "pixels_per_cell": 8, "cells_per_block": 2}}}


def cifar_tree(epochs: int, **sections: dict) -> dict:
    """The equal-budget setting of the method benchmarks: the shared CIFAR-10 sample at 32 px, ResNet-18 (standard
    stem, zero-init residuals: the mvmr default), batch 256, Adam 1e-3 with one warm-up epoch, seed 0; k-NN at the
    end only. ``sections`` update the named sections (``method`` is a plain value)."""
    tree = {"data": {"name": "npz", "root": str(CIFAR_NPZ), "image_size": 32},
            "student": {"backbone": "resnet18", "stem": "standard", "projector": "1024-1024"},
            "optim": {"name": "adam", "lr": 1e-3, "batch_size": 256, "epochs": epochs, "warmup_epochs": 1},
            "trainer": {"precision": "fp32", "num_workers": 2, "progress": False, "log_every": 10, "seed": 0},
            "eval": {"knn_every": epochs}}
    for name, value in sections.items():
        tree[name] = {**tree[name], **value} if isinstance(value, dict) and name in tree else value
    return tree


def train_and_measure(tree: dict, linear: bool = False, clusters: bool = False) -> dict:
    """Train a recipe tree in a temporary folder; k-NN top-1 at init and at the end, minutes, optionally the linear
    probe and (for a clustering head) NMI at init and at the end plus the last logged ``diag/*`` values."""
    import tempfile
    from pathlib import Path

    from mvmr.config import build_recipe
    from mvmr.engine import Run, default_callbacks, fit
    from mvmr.eval import evaluate, evaluate_clusters

    started = time.perf_counter()
    result: dict = {}
    with tempfile.TemporaryDirectory() as out:
        tree = {**tree, "trainer": {**tree["trainer"], "cache_dir": str(Path(out) / "cache")}}
        run = Run(build_recipe(tree), Path(out) / "run")
        if clusters:
            result["nmi_at_init"] = evaluate_clusters(run.method, run.recipe.data, None, run.device)["nmi"]
        if linear:
            result["linear_top1_at_init"] = evaluate(run.method.student, run.recipe.data, "linear")["top1"]
        run.method.train()
        summary = fit(run, default_callbacks(run))
        result.update(knn_top1_at_init=summary["knn_top1_at_init"], knn_top1=summary["knn_top1"],
                      minutes=(time.perf_counter() - started) / 60)
        run.method.eval()
        if clusters:
            result["nmi"] = evaluate_clusters(run.method, run.recipe.data, None, run.device)["nmi"]
            logged = [json.loads(line) for line in (Path(out) / "run" / "metrics.jsonl").read_text().splitlines()]
            last = [r for r in logged if "diag/student_entropy" in r][-1]
            result.update({k[len("diag/"):]: v for k, v in last.items() if k.startswith("diag/")})
        if linear:
            result["linear_top1"] = evaluate(run.method.student, run.recipe.data, "linear")["top1"]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
