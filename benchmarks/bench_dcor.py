"""dCor: mvmr.losses.distance_correlation (torch) vs the reference `dcor` package, n=256, 2048 vs 512 dims, float64."""
import dcor
import numpy as np
import torch

from common import best_times, emit
from mvmr.losses import distance_correlation

torch.set_num_threads(1)
g = np.random.default_rng(0)
x, y = g.normal(size=(256, 2048)), g.normal(size=(256, 512))
xt, yt = torch.tensor(x), torch.tensor(y)
times = best_times({
    "mvmr": lambda: distance_correlation(xt, yt),
    "dcor": lambda: dcor.distance_correlation(x, y),
    "mvmr_unbiased": lambda: distance_correlation(xt, yt, "unbiased"),
    "dcor_unbiased": lambda: dcor.u_distance_correlation_sqr(x, y),
})
emit(bench="dcor", n=256, dims=[2048, 512], dtype="float64", threads=1,
     mvmr_ms=round(times["mvmr"] * 1e3, 2), dcor_ms=round(times["dcor"] * 1e3, 2),
     speedup=round(times["dcor"] / times["mvmr"], 1),
     unbiased_speedup=round(times["dcor_unbiased"] / times["mvmr_unbiased"], 1),
     abs_diff=abs(distance_correlation(xt, yt).item() - dcor.distance_correlation(x, y)))
