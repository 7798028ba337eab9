"""Run guards: nothing non-finite passes silently, and SIGINT/SIGTERM stop a run at a step boundary.

``FiniteMonitor`` checks watched tensors (provider features, the loss) at once on the CPU; on an accelerator it
queues the checks on the device and reads them all at ``flush()`` (log steps, before a checkpoint), so steps that
log nothing need no host sync. ``StopSignals`` turns SIGINT/SIGTERM into a flag the training loop reads between
steps, so the current step finishes and the checkpoint is written before the process exits.
"""
from __future__ import annotations

import signal
import threading
from typing import Mapping, Optional

import torch

from .errors import NonFiniteError


def _describe(what: str, terms: Optional[Mapping[str, torch.Tensor]]) -> str:
    """Put the terms' values where ``what`` says ``{terms}`` (or at its end)."""
    shown = "(" + ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items()) + ")" if terms else ""
    return what.replace("{terms}", shown) if "{terms}" in what else f"{what} {shown}".rstrip()


class FiniteMonitor:
    """Raise ``NonFiniteError`` for the first watched tensor holding NaN or Inf, naming what it was and the step."""

    def __init__(self, deferred: bool = False) -> None:
        self.deferred = deferred
        self.step: Optional[int] = None  # set by the training loop; named in the message
        self._pending: list[tuple[str, torch.Tensor, Optional[dict]]] = []

    def watch(self, what: str, tensor: torch.Tensor, terms: Optional[Mapping[str, torch.Tensor]] = None) -> None:
        """``what`` is the message (e.g. "the loss is NaN or Inf"); the step and ``terms`` are added to it."""
        ok = torch.isfinite(tensor.detach()).all()
        what = what.replace("{step}", str(self.step)) if self.step is not None else what.replace(" at step {step}", "")
        snapshot = {k: v.detach() for k, v in terms.items()} if terms else None
        if self.deferred:
            self._pending.append((what, ok, snapshot))
        elif not bool(ok):
            raise NonFiniteError(_describe(what, snapshot))

    def flush(self) -> None:
        """Read every queued check (one host sync) and raise for the first failure."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        oks = torch.stack([ok for _, ok, _ in pending]).cpu().tolist()
        for (what, _, terms), ok in zip(pending, oks):
            if not ok:
                raise NonFiniteError(_describe(what, terms))


class StopSignals:
    """Context manager: while active, SIGINT, SIGTERM and SIGHUP set ``self.received`` (the signal number) instead of
    killing the process; the previous handlers come back on exit. Only the main thread can install handlers;
    elsewhere it does nothing."""

    # SIGHUP (a closed terminal or ssh session) stops a run as SIGTERM does, where the platform has it
    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.received = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


def ignore_interrupts_in_worker(worker_id: int) -> None:  # noqa: ARG001
    """DataLoader ``worker_init_fn``: Ctrl-C, and the SIGTERM that ``timeout``, Slurm, ``docker stop`` and
    Kubernetes send, reach the whole process group; the workers leave them to the main process, which finishes
    its step and saves before stopping them."""
    for s in StopSignals.SIGNALS:
        signal.signal(s, signal.SIG_IGN)
