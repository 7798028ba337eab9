"""LSD: torch local-std provider vs scipy.ndimage.generic_filter(np.std) (the reference), 3×3 window."""
import numpy as np
import torch
from scipy.ndimage import generic_filter

from common import best_times, emit
import mvmr

torch.set_num_threads(1)
images = torch.rand(16, 3, 96, 96, generator=torch.Generator().manual_seed(0))
arr = images.numpy()
provider = mvmr.create_extractor("lsd", size=3, mode="nearest")


def scipy_ref():
    return np.stack([[generic_filter(c, np.std, size=3, mode="nearest") for c in im] for im in arr])


times = best_times({"mvmr": lambda: provider(images), "scipy": scipy_ref}, repeats=1)
diff = float(np.abs(provider(images).numpy() - scipy_ref().reshape(16, -1)).max())
emit(bench="lsd", images=[16, 3, 96, 96], window=3, threads=1,
     mvmr_ms=round(times["mvmr"] * 1e3, 2), scipy_ms=round(times["scipy"] * 1e3, 1),
     speedup=round(times["scipy"] / times["mvmr"], 1), max_abs_diff=diff)
