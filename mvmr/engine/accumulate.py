"""Exact gradient accumulation for batch-statistic objectives, by gradient caching (Gao et al., GradCache).

Averaging the losses of micro-batches would compute dCor, variances and assignment marginals per micro-batch:
another method. Instead: (1) run ``Method.encode`` on every micro-batch without a graph; (2) compute the objective
and its gradient with respect to those rows on the whole batch; (3) re-run each micro-batch with a graph and
back-propagate its slice of the row gradients. Loss and gradients are those of the whole batch; only BatchNorm
statistics are per micro-batch (as with SyncBN off), and its running statistics are updated once per micro-batch
(the graph-free pass leaves them untouched).
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from ..data import Batch
from ..methods import Method


def _buffers(method: Method) -> dict[str, torch.Tensor]:
    return {name: b.detach().clone() for name, b in method.named_buffers()}


def cached_step(method: Method, batch: Batch, parts: int, progress: float,
                scale: Callable[[torch.Tensor], torch.Tensor] = lambda loss: loss,
                ) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
    """Loss and terms of ``batch`` as one batch, with its gradients accumulated into the parameters from ``parts``
    micro-batches. ``scale`` is applied to the loss before backward (a GradScaler's ``scale``). Under DDP, call it
    inside ``no_sync()`` and average the gradients afterwards (:func:`average_gradients`)."""
    n = len(batch)
    if n % parts:
        raise ValueError(f"a batch of {n} images does not split into {parts} equal micro-batches")
    size = n // parts
    slices = [batch.slice(i * size, (i + 1) * size) for i in range(parts)]
    saved = _buffers(method)
    with torch.no_grad():
        pieces = [method.encode(s) for s in slices]
    with torch.no_grad():  # the graph-free pass must not move BatchNorm running statistics
        for name, b in method.named_buffers():
            b.copy_(saved[name])
    rows = {k: torch.cat([p[k] for p in pieces]).detach().requires_grad_(pieces[0][k].is_floating_point())
            for k in pieces[0]}
    loss, terms = method.objective(rows, batch, progress)
    scale(loss).backward()  # gradients of the objective's own parameters (heads, prototypes) and of the rows
    for i, s in enumerate(slices):
        again = method.encode(s)
        outputs, grads = [], []
        for k, out in again.items():
            g = rows[k].grad
            if g is not None and out.requires_grad:
                outputs.append(out)
                grads.append(g[i * size:(i + 1) * size])
        torch.autograd.backward(outputs, grads)
    return loss.detach(), {k: v.detach() for k, v in terms.items()}


def average_gradients(module: torch.nn.Module, world: int) -> None:
    """Mean of every gradient over the processes (what DDP does, for steps taken under ``no_sync``)."""
    for p in module.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(world)
