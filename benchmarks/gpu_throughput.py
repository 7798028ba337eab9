"""Images per second of the MV-MR training step on a GPU, beside a plain supervised ResNet-50 step on the same GPU
and batch (one JSON line each). Goal: the MV-MR step at >= 0.5x the supervised step's img/s (it embeds two views),
and with 8 workers the data never bounds it (the loader's img/s against the step's with the batch resident, and the
GPU utilisation sampled while it runs).

Cases: ``stl10_mvmr`` (ResNet-50, 96 px, batch 256, its providers, a warm feature cache) and ``imagenet_mvmr``
(224 px from 256x320 images); synthetic uint8 images, no JPEG decode. Each default choice is measured against its
alternative: bf16 autocast vs fp32, channels_last vs not, torch.compile vs eager, and the device augmentation vs
the workers'.

Usage: python gpu_throughput.py [--steps N] [--workers W] [--tiny]
  --tiny: ResNet-18, 32 px, batch 8, 2 steps, no workers: a check that the script runs (on a CPU too).
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from common import RandomImages, emit
from mvmr.cache import CachedFeatures, open_caches
from mvmr.config import build_recipe
from mvmr.data import Views, augment_spec, collate
from mvmr.engine.optim import autocast_for, build_optimizer, effective_precision
from mvmr.methods import build_method

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


class Utilisation:
    """GPU utilisation sampled every 0.2 s in a thread (nvidia-smi; None where it cannot be read)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()

    def __enter__(self):
        def sample():
            while not self._stop.is_set():
                try:
                    out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          "-i", str(torch.cuda.current_device())], capture_output=True, text=True,
                                         timeout=5)
                    self.samples.append(float(out.stdout.split()[0]))
                except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                    return
                self._stop.wait(0.2)
        if torch.cuda.is_available():
            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    @property
    def mean(self):
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(step, batches, device: torch.device, warmup: int = 2) -> float:
    """img/s of ``step`` over ``batches`` (an iterator of batches), after ``warmup`` steps."""
    images, start = 0, None
    for i, batch in enumerate(batches):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        n = step(batch)
        if start is not None:
            images += n
    sync(device)
    return images / (time.perf_counter() - start)


def mvmr_case(name: str, args, device: torch.device, cache_root: Path) -> None:
    tree = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    size, source = (96, (96, 96)) if name.startswith("stl10") else (224, (256, 320))
    tree["data"].update(image_size=size)
    tree["optim"].update(batch_size=args.batch)
    if args.tiny:
        tree["student"].update(backbone="resnet18", projector="64-32")
        tree["providers"] = {k: v for k, v in tree["providers"].items() if k in ("pixels", "lsd")}
    base_recipe = build_recipe(tree)
    n = args.batch * (args.steps + 2)
    data = RandomImages(n, *source)

    def build(precision: str, channels_last: bool, compiled: bool):
        recipe = base_recipe.model_copy(deep=True)
        recipe.trainer.precision = precision
        method = build_method(recipe).to(device)
        if channels_last:
            method.student.to(memory_format=torch.channels_last)
        if compiled:
            method.student.backbone.compile()
            method.student.projector.compile()
        caches = open_caches(method.providers, {"name": f"gpu-bench-{name}-{args.tiny}", "length": n}, n, size, cache_root)
        method.feature_source = CachedFeatures(method.providers, caches)
        optimizer = build_optimizer(method, recipe.optim)
        actual = effective_precision(device, precision)

        def step(batch) -> int:
            batch = batch.to(device, channels_last=channels_last)
            with autocast_for(device, precision):
                loss, _ = method.training_step(batch, 0.0)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return len(batch)
        return method, step, actual

    def loader(augment_on: str, workers: int):
        views = Views(data, size, augment_spec(base_recipe.data), seed=0, n_views=1, augment_on=augment_on)
        return DataLoader(views, batch_size=args.batch, shuffle=False, drop_last=True, num_workers=workers,
                          pin_memory=device.type == "cuda", collate_fn=collate, persistent_workers=False)

    # warm every cache row once (the recipe's use_cache: true), then the resident batches
    method, step, _ = build("fp32", False, False)
    for batch in loader("workers", args.workers):
        b = batch.to(device)
        method.provider_terms.features({"original": b.original, "augmented": b.views[0]}, b.index)
    resident = [batch.to(device) for batch, _ in zip(loader("device", 0), range(args.steps + 2))]
    common = dict(bench="gpu_step", case=name, image_size=size, batch=args.batch, backbone=base_recipe.student.backbone,
                  device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu")
    variants = [("auto", True, False), ("fp32", True, False), ("auto", False, False)]
    if not args.tiny and device.type == "cuda":
        variants.append(("auto", True, True))
    for precision, channels_last, compiled in variants:
        _, step, actual = build(precision, channels_last, compiled)
        rate = timed(step, iter(resident), device)
        emit(**common, data="resident", precision=actual, channels_last=channels_last, compile=compiled,
             img_per_s=round(rate, 1))
    _, step, actual = build("auto", device.type == "cuda", False)
    for augment_on in ("device", "workers"):
        with Utilisation() as util:
            rate = timed(step, iter(loader(augment_on, args.workers)), device)
        emit(**common, data=f"loader, {args.workers} workers", augment_on=augment_on, precision=actual,
             img_per_s=round(rate, 1), gpu_util_mean=util.mean)
        loader_only = timed(lambda b: len(b.to(device, channels_last=True)), iter(loader(augment_on, args.workers)), device)
        emit(**common, data=f"loader alone, {args.workers} workers", augment_on=augment_on, img_per_s=round(loader_only, 1))


def supervised_case(args, device: torch.device) -> None:
    """The plain supervised step: torchvision ResNet-50, cross-entropy, SGD, bf16 autocast, channels_last."""
    import torchvision

    size = 32 if args.tiny else 224
    model = (torchvision.models.resnet18 if args.tiny else torchvision.models.resnet50)(num_classes=1000).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(args.batch, 3, size, size, generator=g).to(device).contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format),
        torch.randint(0, 1000, (args.batch,), generator=g).to(device)) for _ in range(args.steps + 2)]

    def step(batch) -> int:
        x, y = batch
        with autocast_for(device, "auto"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return len(x)
    rate = timed(step, iter(batches), device)
    emit(bench="gpu_step", case="supervised_resnet50" if not args.tiny else "supervised_resnet18", image_size=size,
         batch=args.batch, data="resident", precision=effective_precision(device, "auto"),
         channels_last=channels_last, img_per_s=round(rate, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--cases", default="stl10_mvmr,imagenet_mvmr,supervised")
    args = parser.parse_args()
    if args.tiny:
        args.steps, args.workers, args.batch = 2, 0, 8
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            if case == "supervised":
                supervised_case(args, device)
            else:
                mvmr_case(case, args, device, Path(tmp))


if __name__ == "__main__":
    main()
