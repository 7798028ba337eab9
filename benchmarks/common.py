"""Shared helpers for benchmarks: interleaved best-of-N timing and one JSON line of output."""
from __future__ import annotations

import json
import time
from typing import Callable


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
