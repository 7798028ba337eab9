"""The training loop: forward, backward, accumulate, step, schedule. Everything else is a callback."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import torch

from contextlib import nullcontext

from ..errors import Interrupted, MVMRError, NonFiniteError
from .. import profile
from ..data import mix_batch
from ..guards import StopSignals
from . import optim
from .accumulate import average_gradients, cached_step
from .callbacks import Callback
from .run import Run

LOSS_MESSAGE = "the loss is NaN or Inf at step {step} {terms}; the run stopped and {kept}: lower optim.lr or check the providers"


@dataclass
class StepInfo:
    """What a finished optimizer step hands the callbacks. ``values()`` reads the loss terms to the host once,
    on the steps that log, so other steps need no host sync."""

    loss: torch.Tensor
    terms: Mapping[str, torch.Tensor]
    lr: float
    images: int
    seconds: float
    logging: bool
    _values: Optional[dict[str, float]] = field(default=None, repr=False)

    def values(self) -> dict[str, float]:
        if self._values is None:
            self._values = {"loss": self.loss.item(), **{k: v.item() for k, v in self.terms.items()}}
        return self._values


def _stop_requested(run: Run, stop: StopSignals, sync: bool) -> Optional[int]:
    """The signal that asked the run to stop; under torchrun the processes agree on it at log steps."""
    if run.world == 1:
        return stop.received
    if not sync:
        return None
    flag = torch.tensor([stop.received or 0], device=run.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return int(flag.item()) or None


def fit(run: Run, callbacks: Sequence[Callback]) -> dict:
    """Train ``run`` to its last step, calling ``callbacks`` at start, each step, each epoch end and the end.
    The run folder is locked for the whole run. SIGINT/SIGTERM finish the current step, save, and raise
    ``Interrupted`` (exit 130/143)."""
    run.claim()
    profile.current = run.profile = profile.StepProfile(run.device)
    try:
        with StopSignals() as stop:
            _loop(run, callbacks, stop, LOSS_MESSAGE)
    except NonFiniteError as exc:
        raise NonFiniteError(str(exc).replace("{kept}", _kept(run))) from None
    except OSError as exc:  # a full disk or a vanished folder while writing recipe.yaml, metrics.jsonl, a cache row
        where = exc.filename or "the run folder"
        raise MVMRError(f"cannot write {where} ({exc.strerror or exc}); the run stopped and {_kept(run)}: free disk "
                        f"space (or fix the folder) and continue with --resume") from None
    finally:
        profile.current = None
        for cb in callbacks:
            cb.on_exit(run)
        run.close()
    return run.summary


def _kept(run: Run) -> str:
    return (f"its last good checkpoint is kept ({run.ckpt_path})" if run.ckpt_path.is_file()
            else "no checkpoint was written yet")


def _forward_backward(run: Run, batch) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
    """Loss and terms of one global batch, its gradients accumulated into the parameters."""
    o, t = run.recipe.optim, run.recipe.trainer
    with optim.autocast_for(run.device, t.precision):
        if o.accumulate == 1:
            with profile.section("student"):  # the method's forward: providers and objective time themselves
                loss, terms = run.model(batch, run.progress)
            with profile.section("backward"):
                run.scaler.scale(loss).backward()
            return loss, terms
        # exact accumulation: the objective sees the whole batch (gradient caching); backward counts as student
        with profile.section("student"), run.model.no_sync() if run.world > 1 else nullcontext():
            loss, terms = cached_step(run.method, batch, o.accumulate, run.progress, run.scaler.scale)
    if run.world > 1:
        average_gradients(run.method, run.world)
    return loss, terms


def _loop(run: Run, callbacks: Sequence[Callback], stop: StopSignals, loss_message: str) -> None:
    """Epochs of steps: forward and backward on one global batch (in ``optim.accumulate`` exact micro-batches),
    then one optimizer update."""
    o, t = run.recipe.optim, run.recipe.trainer
    for cb in callbacks:
        cb.on_train_start(run)
    run.method.train()
    while run.step < run.last_step:
        tick, images = time.perf_counter(), 0
        batches = iter(run.loader())
        while True:
            with profile.section("data", host=True):  # the wait for the workers
                batch = next(batches, None)
            if batch is None:
                break
            with profile.section("augment"):  # the copy to the device, and the augmentation on it (augment_on)
                batch = batch.to(run.device, channels_last=run.channels_last)
                if run.recipe.data.mixup:  # one draw per (seed, step, process): a resumed run mixes the same
                    seed = (run.recipe.trainer.seed, run.step, run.rank)
                    batch = mix_batch(batch, run.recipe.data.mixup, seed, run.channels_last)
            run.monitor.step = run.step + 1
            loss, terms = _forward_backward(run, batch)
            run.monitor.watch(loss_message, loss, terms)  # before the update: a NaN never reaches the weights
            images += len(batch) * run.world
            lr = optim.lr_at(run.step, run.total_steps, run.warmup_steps, optim.scaled_lr(o))
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            with profile.section("optimizer"):
                run.method.before_optimizer_step(run.progress)
                run.scaler.step(run.optimizer)
                run.scaler.update()
                run.optimizer.zero_grad(set_to_none=True)
                run.method.after_optimizer_step(run.progress)
            run.profile.step_done()
            run.step += 1
            run.batch_in_epoch += 1
            logging = run.step % t.log_every == 0 or run.step == run.last_step
            info = StepInfo(loss.detach(), {k: v.detach() for k, v in terms.items()}, lr, images,
                            time.perf_counter() - tick, logging)
            tick, images = time.perf_counter(), 0
            for cb in callbacks:
                cb.on_step(run, info)
            if logging:
                run.profile.flush()  # the loss was read: the step's timing events are done
            signum = _stop_requested(run, stop, logging)
            if signum:
                for cb in callbacks:
                    cb.on_interrupt(run)
                raise Interrupted(f"interrupted at step {run.step}; continue with: {run.resume_command}", signum)
            if run.step >= run.last_step or run.batch_in_epoch >= run.steps_per_epoch:
                break
        if run.batch_in_epoch >= run.steps_per_epoch:
            run.epoch += 1
            run.batch_in_epoch = 0
            record: dict = {"epoch": run.epoch, "step": run.step}
            for cb in callbacks:
                cb.on_epoch_end(run, record)
    for cb in callbacks:
        cb.on_train_end(run)
