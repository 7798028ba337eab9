"""Where a training step's time goes: named, nestable sections (data wait, augmentation, student, providers,
objective, backward, optimizer), each counted exclusive of the sections inside it; ``mvmr pretrain`` prints the
split at the end of a run.

On CUDA the sections are timed with CUDA events, read only when ``flush`` is called (on steps that log, where the
loss is read anyway), so timing adds no host sync; the data wait is always host time.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from typing import Iterator, Optional

import torch

ORDER = ("data", "augment", "student", "providers", "objective", "backward", "optimizer")


class StepProfile:
    """Accumulates exclusive seconds per section over the steps of a run (``step_done`` counts them)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds: dict[str, float] = defaultdict(float)
        self.steps = 0
        self._open: list[int] = []  # indices into _spans of the sections entered and not left
        self._spans: list[list] = []  # [name, start, end, parent, host]: resolved by flush

    def _now(self, host: bool):
        if host or not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    @contextmanager
    def section(self, name: str, host: bool = False) -> Iterator[None]:
        span = [name, self._now(host), None, self._open[-1] if self._open else None, host or not self.cuda]
        self._spans.append(span)
        self._open.append(len(self._spans) - 1)
        try:
            yield
        finally:
            self._open.pop()
            span[2] = self._now(span[4])

    def step_done(self) -> None:
        self.steps += 1

    def flush(self) -> None:
        """Turn the finished sections into exclusive seconds (on CUDA: waits for their events, which the caller's
        step has passed already)."""
        if self._open:  # only between steps
            return
        duration = {}
        for i, (name, start, end, parent, host) in enumerate(self._spans):
            if host:
                duration[i] = end - start
            else:
                end.synchronize()
                duration[i] = start.elapsed_time(end) / 1e3
        for i, seconds in duration.items():
            self.seconds[self._spans[i][0]] += seconds
            parent = self._spans[i][3]
            if parent is not None:
                self.seconds[self._spans[parent][0]] -= seconds
        self._spans = []

    def summary(self) -> dict[str, float]:
        """Mean milliseconds per step of each section, in step order."""
        self.flush()
        names = [n for n in ORDER if n in self.seconds] + sorted(set(self.seconds) - set(ORDER))
        return {n: 1e3 * self.seconds[n] / max(self.steps, 1) for n in names}

    def line(self) -> str:
        ms = self.summary()
        total = sum(ms.values()) or 1e-12
        parts = ", ".join(f"{n} {v:.1f} ms ({100 * v / total:.0f}%)" for n, v in ms.items())
        return f"step time, mean of {self.steps} steps: {parts}"


current: Optional[StepProfile] = None


def section(name: str, host: bool = False):
    """A timed section of the active profile (no-op outside a run)."""
    return nullcontext() if current is None else current.section(name, host)
