"""The one training loop. Method-agnostic: a method turns a batch into named loss terms; the engine does the rest
(data, optimizer and schedule, precision, accumulation, checkpoints, resume, logging, online k-NN, summary).

Determinism: the shuffle of epoch e comes from a generator seeded with (seed, e), and each image's augmentation
from a generator seeded with (seed, e, index), so a resumed run sees exactly the batches an uninterrupted one sees.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Sampler

from .config import Recipe, atomic_write_text, save_recipe
from . import distributed as dist_utils
from .cache import CachedFeatures, open_caches
from .checkpoint import atomic_save, read_checkpoint, remove_stale_temporaries, save_checkpoint
from .data import TwoViews, augment_spec, build_dataset, dataset_identity, has_labels
from .errors import ConfigError, Interrupted, MVMRError
from .eval import evaluate
from .guards import FiniteMonitor, StopSignals, ignore_interrupts_in_worker
from .methods import Method, build_method, method_class


# -- small pieces ------------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    dist_utils.check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_for(device: torch.device, precision: str):
    """fp16/bf16 autocast on CUDA; on CPU only bf16 (fp16 recipes run in fp32 there)."""
    if precision == "fp32" or (device.type == "cpu" and precision != "bf16"):
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


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """adam | adamw | sgd | lars through timm's optimizer factory (LARS skips bias and norm weights)."""
    from timm.optim import create_optimizer_v2

    # LARS gets the module so timm can exempt biases and norm weights; the others get the trainable parameters.
    target = model if cfg.name == "lars" else [p for p in model.parameters() if p.requires_grad]
    kwargs: dict[str, Any] = {"momentum": cfg.momentum} if cfg.name in ("sgd", "lars") else {}
    return create_optimizer_v2(target, opt=cfg.name, lr=cfg.lr, weight_decay=cfg.weight_decay,
                               filter_bias_and_bn=cfg.name == "lars", **kwargs)


__all__ = ["atomic_save", "pretrain", "Run", "lr_at", "build_optimizer", "resolve_device", "autocast_for"]


class EpochSampler(Sampler[int]):
    """This process's share of epoch e's permutation (generator seeded with (seed, e)), from global position
    ``start``. Global batch t is perm[t·B : (t+1)·B]; process r takes its r-th slice of b = B / world images, so
    the processes' batches, concatenated in rank order, are exactly the one-process batch."""

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world: int = 1,
                 local_batch: int = 1) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start
        self.rank, self.world, self.local_batch = rank, world, local_batch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)[self.start:]
        global_batch = self.local_batch * self.world
        steps = len(perm) // global_batch
        mine = perm[: steps * global_batch].view(steps, self.world, self.local_batch)[:, self.rank]
        return iter(mine.reshape(-1).tolist())

    def __len__(self) -> int:
        return (self.n - self.start) // (self.local_batch * self.world) * self.local_batch


def feature_cache(method: Method, recipe: Recipe, base) -> CachedFeatures:
    """Deterministic providers read their original-view features from the on-disk cache, filling it as they go.
    Under torchrun the main process creates the cache folders first; every process then fills its own rows."""
    providers = dict(method.providers.items())
    identity = dataset_identity(recipe.data, "ssl", len(base))
    args = (providers, identity, len(base), recipe.data.image_size, Path(recipe.trainer.cache_dir))
    caches = open_caches(*args) if dist_utils.is_main() else None
    dist_utils.barrier()
    return CachedFeatures(providers, caches if caches is not None else open_caches(*args))


# Keys that may change when a run is resumed: where and how long it runs, not what it computes.
RESUMABLE_KEYS = ("max_steps", "progress", "num_workers", "device", "checkpoint_every", "log_every", "tensorboard",
                  "use_cache", "cache_dir")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def recipe_differences(a: dict, b: dict) -> list[str]:
    """Dotted keys whose values differ between two resolved recipes, ignoring the resumable trainer keys."""
    fa, fb = _flatten(a), _flatten(b)
    skip = {f"trainer.{k}" for k in RESUMABLE_KEYS}
    return sorted(k for k in set(fa) | set(fb) if k not in skip and fa.get(k) != fb.get(k))


def _show(keys: list[str], limit: int = 5) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def resume_recipe(out_dir: Path, recipe_path: Optional[Path], overrides: list[str]) -> Recipe:
    """The recipe a ``--resume`` continues with: the one saved in the run's checkpoint, plus ``--set`` overrides of
    resumable keys only. Refuses (one line, nothing written) a missing or damaged checkpoint, a recipe file edited
    since the run started, and overrides that would change what the run computes."""
    from .config import build_recipe, read_recipe_tree

    ckpt = Path(out_dir) / "checkpoints" / "last.pt"
    if not ckpt.is_file():
        raise ConfigError(f"--resume: no checkpoint at {ckpt}; start a new run without --resume")
    try:
        state = read_checkpoint(ckpt)
    except MVMRError as exc:
        raise type(exc)(f"--resume: {exc}; to start over, delete {ckpt} or pass another --out") from None
    saved = build_recipe(state["recipe"], source=str(ckpt))
    source = state.get("source") or {}
    if recipe_path is not None and Path(recipe_path).is_file():
        given = Path(recipe_path).resolve()
        if str(given) == source.get("path") and "text" in source:
            then = build_recipe(yaml.safe_load(source["text"]) or {}, source=str(given))
            now = build_recipe(read_recipe_tree(given), source=str(given))
            what = f"{recipe_path} was edited since the run started"
        else:
            then, now = saved, build_recipe(read_recipe_tree(given), source=str(given))
            what = f"{recipe_path} is not the recipe of this run"
        diff = recipe_differences(then.to_dict(), now.to_dict())
        if diff:
            raise ConfigError(f"--resume: {what} (differs in {_show(diff)}); the run continues only with its saved "
                              f"recipe {Path(out_dir) / 'recipe.yaml'}: pass that file, or start a new run with "
                              f"another --out")
    recipe = build_recipe(saved.to_dict(), overrides, source="--set")
    diff = recipe_differences(saved.to_dict(), recipe.to_dict())
    if diff:
        raise ConfigError(f"--resume: --set {_show(diff)} would change what the run computes; on resume only "
                          f"trainer.{{{','.join(RESUMABLE_KEYS)}}} may change")
    return recipe


# -- the run -----------------------------------------------------------------------------------------------------
class Run:
    """One training run in a folder: recipe.yaml, metrics.jsonl, checkpoints/last.pt, summary.json."""

    def __init__(self, recipe: Recipe, out_dir: Path, resume: bool = False, console=None,
                 source: Optional[Path] = None, resume_command: Optional[str] = None) -> None:
        self.recipe, self.out = recipe, Path(out_dir)
        self.console = console
        self.ckpt_path = self.out / "checkpoints" / "last.pt"
        # The recipe file as it was when the run started: --resume refuses it once edited.
        self.source = None
        if source is not None and Path(source).is_file():
            self.source = {"path": str(Path(source).resolve()), "text": Path(source).read_text()}
        self.resume_command = resume_command or f"mvmr pretrain {self.out / 'recipe.yaml'} --out {self.out} --resume"
        state = None
        if resume:
            if not self.ckpt_path.is_file():
                raise ConfigError(f"--resume: no checkpoint at {self.ckpt_path}; start a new run without --resume")
            state = read_checkpoint(self.ckpt_path)  # before anything is built or written
            diff = recipe_differences(state["recipe"], recipe.to_dict())
            if diff:
                raise ConfigError(f"--resume: the recipe differs from the one saved in {self.ckpt_path} in "
                                  f"{_show(diff)}; resume with the saved recipe ({self.out / 'recipe.yaml'})")
        elif self.ckpt_path.is_file():
            raise ConfigError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
        t = recipe.trainer
        self.device = dist_utils.setup(t.device)
        self.rank, self.world, self.main = dist_utils.rank(), dist_utils.world_size(), dist_utils.is_main()
        seed_everything(t.seed)
        base = build_dataset(recipe.data, "ssl")
        self.dataset = TwoViews(base, recipe.data.image_size, augment_spec(recipe.data), seed=t.seed,
                                extra_views=method_class(recipe.method).extra_views)
        o = recipe.optim
        if o.batch_size % self.world:
            raise ConfigError(f"optim.batch_size={o.batch_size} (the global batch) must divide among {self.world} processes")
        self.local_batch = o.batch_size // self.world
        if len(self.dataset) < o.batch_size:
            raise ConfigError(f"optim.batch_size={o.batch_size} exceeds the {len(self.dataset)} training images")
        self.steps_per_epoch = len(self.dataset) // (o.batch_size * o.accumulate)  # batch_size is the global batch
        if self.steps_per_epoch == 0:
            raise ConfigError("optim.batch_size × optim.accumulate exceeds the dataset; lower one of them")
        self.total_steps = self.steps_per_epoch * o.epochs
        self.warmup_steps = int(round(o.warmup_epochs * self.steps_per_epoch))
        self.method: Method = build_method(recipe).to(self.device)
        self.monitor = FiniteMonitor(deferred=self.device.type != "cpu")
        self.method.monitor = self.monitor
        if t.use_cache:
            self.method.feature_source = feature_cache(self.method, recipe, base)
        if recipe.student.channels_last:
            self.method.student.to(memory_format=torch.channels_last)
        self.model: torch.nn.Module = self.method
        if self.world > 1:
            if t.sync_bn:
                self.method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.method, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = build_optimizer(self.method, o)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.device.type == "cuda" and t.precision == "fp16")
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.evaluate_online = recipe.eval.knn_every > 0 and has_labels(recipe.data)
        self.summary: dict[str, Any] = {}
        self.metrics_bytes = 0
        self.tb = None
        if state is not None:
            self._load(state)

    # checkpoints
    def _state(self) -> dict[str, Any]:
        return {"recipe": self.recipe.to_dict(), "method": self.method.trainable_state(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "summary": self.summary, "torch_rng": torch.get_rng_state(), "source": self.source,
                "metrics_bytes": self.metrics_bytes}

    def save(self) -> None:
        """Check everything queued for finiteness, then write the checkpoint atomically (refusing NaN weights)."""
        self.monitor.flush()
        if self.main:
            save_checkpoint(self._state(), self.ckpt_path)

    def _load(self, state: dict[str, Any]) -> None:
        self.method.load_trainable_state(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.summary = state["summary"]
        self.metrics_bytes = int(state.get("metrics_bytes", 0))
        self.source = state.get("source")
        torch.set_rng_state(state["torch_rng"])

    def _open_outputs(self, resuming: bool) -> None:
        """A new run starts its files afresh; a resumed one cuts metrics.jsonl back to its checkpoint, so no
        record is duplicated; stale temporary files of a killed checkpoint write are removed."""
        self.out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.ckpt_path)
        metrics = self.out / "metrics.jsonl"
        if not resuming:
            metrics.write_text("")
            (self.out / "summary.json").unlink(missing_ok=True)
        elif metrics.is_file() and metrics.stat().st_size > self.metrics_bytes:
            with open(metrics, "r+b") as f:
                f.truncate(self.metrics_bytes)
        save_recipe(self.recipe, self.out / "recipe.yaml")

    # logging
    def log(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        record = {**record, "time": time.time()}
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
            self.metrics_bytes = f.tell()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch", "time"):
                    self.tb.add_scalar(k, v, record.get("step", self.step))

    def knn(self) -> dict[str, float]:
        e = self.recipe.eval
        result = evaluate(self.method.student, self.recipe.data, "knn", e.knn_k, e.knn_t, e.limit,
                          str(self.device), self.recipe.optim.batch_size)
        return {"knn_top1": result["top1"], "knn_top5": result["top5"]}

    def _loader(self) -> DataLoader:
        o, t = self.recipe.optim, self.recipe.trainer
        self.dataset.epoch = self.epoch
        start = self.batch_in_epoch * o.batch_size * o.accumulate
        sampler = EpochSampler(len(self.dataset), t.seed, self.epoch, start, self.rank, self.world, self.local_batch)
        return DataLoader(self.dataset, batch_size=self.local_batch, sampler=sampler, drop_last=True,
                          num_workers=t.num_workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=False,
                          worker_init_fn=ignore_interrupts_in_worker if t.num_workers > 0 else None)

    def _stop_requested(self, stop: StopSignals, sync: bool) -> Optional[int]:
        """The signal that asked this run to stop, agreed by every process (checked on log steps under torchrun)."""
        if self.world == 1 or not sync:
            return stop.received if self.world == 1 else None
        flag = torch.tensor([stop.received or 0], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item()) or None

    def train(self) -> dict[str, Any]:
        with StopSignals() as stop:
            return self._train(stop)

    def _train(self, stop: StopSignals) -> dict[str, Any]:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        r, o, t = self.recipe, self.recipe.optim, self.recipe.trainer
        if self.main:
            self._open_outputs(resuming=self.step > 0 or self.ckpt_path.is_file())
            if t.precision == "fp16" and self.device.type == "cpu":
                print("note: trainer.precision=fp16 runs as fp32 on the CPU (fp16 autocast is for CUDA; "
                      "trainer.precision=bf16 gives bfloat16 autocast)", file=sys.stderr)
        if t.tensorboard and self.main:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out / "tensorboard"))
        if self.step == 0 and self.evaluate_online and self.main and "knn_top1_at_init" not in self.summary:
            init = self.knn()
            self.summary.update({"knn_top1_at_init": init["knn_top1"], "knn_top5_at_init": init["knn_top5"]})
            self.log({"step": 0, "epoch": 0, **{f"{k}_at_init": v for k, v in init.items()}})
        last_step = min(self.total_steps, t.max_steps or self.total_steps)
        self.method.train()
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console,
                            disable=not t.progress)
        started, seen = time.perf_counter(), 0
        loss_message = ("the loss is NaN or Inf at step {step} {terms}; the run stopped and its last good "
                        f"checkpoint is kept ({self.ckpt_path}): lower optim.lr or check the providers")
        with progress:
            task = progress.add_task("train", total=last_step, completed=self.step, info="")
            while self.step < last_step:
                tick, images = time.perf_counter(), 0
                for i, batch in enumerate(self._loader()):
                    batch = [b.to(self.device, non_blocking=True) if torch.is_tensor(b) else b for b in batch]
                    if r.student.channels_last:
                        batch[0] = batch[0].contiguous(memory_format=torch.channels_last)
                        batch[1] = batch[1].contiguous(memory_format=torch.channels_last)
                    self.monitor.step = self.step + 1
                    with autocast_for(self.device, t.precision):
                        loss, terms = self.model(batch, self.step / self.total_steps)
                    self.monitor.watch(loss_message, loss, terms)
                    self.scaler.scale(loss / o.accumulate).backward()
                    images += batch[0].shape[0] * self.world
                    if (i + 1) % o.accumulate:
                        continue
                    lr = lr_at(self.step, self.total_steps, self.warmup_steps, o.lr)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.method.after_optimizer_step(self.step / self.total_steps)
                    self.step += 1
                    self.batch_in_epoch += 1
                    seen += images
                    speed = images / max(1e-9, time.perf_counter() - tick)
                    tick, images = time.perf_counter(), 0
                    logging_step = self.step % t.log_every == 0 or self.step == last_step
                    if logging_step:
                        self.monitor.flush()
                        values = {k: v.item() for k, v in terms.items()}
                        self.log({"step": self.step, "epoch": self.epoch, "lr": lr, "loss": loss.item(), **values,
                                  "images_per_s": speed})
                        progress.update(task, info=f"loss {loss.item():.4f} " + " ".join(
                            f"{k} {v:.3f}" for k, v in values.items()) + f" | {speed:.0f} img/s")
                    progress.update(task, completed=self.step)
                    if self.step % t.checkpoint_every == 0:
                        self.save()
                    signum = self._stop_requested(stop, logging_step)
                    if signum:
                        self.save()
                        dist_utils.barrier()
                        raise Interrupted(f"interrupted at step {self.step}; continue with: {self.resume_command}",
                                          signum)
                    if self.step >= last_step or self.batch_in_epoch >= self.steps_per_epoch:
                        break
                if self.batch_in_epoch >= self.steps_per_epoch:
                    self._end_epoch()
        elapsed = time.perf_counter() - started
        if self.evaluate_online and self.main and self.summary.get("knn_step") != self.step:
            self.summary.update(self.knn(), knn_step=self.step)
        self.summary.update({"steps": self.step, "epochs_completed": self.epoch,
                             "images_per_s": seen / max(elapsed, 1e-9)})
        self.save()
        if self.main:
            atomic_write_text(self.out / "summary.json", json.dumps(self.summary, indent=2))
        dist_utils.barrier()
        if self.tb is not None:
            self.tb.close()
        return self.summary

    def _end_epoch(self) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0
        record: dict[str, Any] = {"epoch": self.epoch, "step": self.step}
        e = self.recipe.eval
        last_epoch = self.epoch == self.recipe.optim.epochs
        if self.evaluate_online and self.main and (self.epoch % e.knn_every == 0 or last_epoch):
            scores = self.knn()
            record.update(scores)
            self.summary.update(scores, knn_step=self.step)  # the end of the run reuses it instead of running twice
            self.method.train()
        self.log(record)
        self.save()


def pretrain(recipe: Recipe, out_dir: Path, resume: bool = False, console=None, source: Optional[Path] = None,
             resume_command: Optional[str] = None) -> dict[str, Any]:
    """Train ``recipe`` into ``out_dir`` (or continue it with ``resume``); returns the summary."""
    return Run(recipe, out_dir, resume, console, source, resume_command).train()
