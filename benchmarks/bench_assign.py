"""MIRA vs Sinkhorn-Knopp assignment, B=512, K=3000 (MIRA paper, Fig. 2): iterations to convergence and ms per
assignment, on random logits and on logits from a trained run (a mira checkpoint's teacher on its data).

Convergence: the first iteration count t whose output is within 1e-3/K (max abs; entries average 1/K) of the same
assigner's output at 1000 iterations. Also at the default iteration count: the equipartition error
max_k |K · mean_i q_ik − 1| and, for MIRA, the residual of its fixed-point (KKT) condition. "sharp" logits are the
random ones ×10, as a confident network produces.
Usage: python bench_assign.py [mira checkpoint]
"""
import sys

import torch
import torch.nn.functional as F

from common import best_times, emit
from mvmr.losses import mira_assign, sinkhorn_assign

torch.set_num_threads(1)
B, K = 512, 3000
ASSIGN = {"mira": lambda s, t: mira_assign(s, 0.225, 0.75, t), "sinkhorn": lambda s, t: sinkhorn_assign(s, 0.05, t)}
DEFAULT_ITERS = {"mira": 30, "sinkhorn": 3}


def random_logits():
    g = torch.Generator().manual_seed(0)
    return F.normalize(torch.randn(B, 256, generator=g), dim=1) @ F.normalize(torch.randn(K, 256, generator=g), dim=1).T


def trained_logits(path):
    from torch.utils.data import DataLoader

    from mvmr.checkpoint import load_checkpoint
    from mvmr.data import OneView, build_dataset

    recipe, method = load_checkpoint(path, with_providers=False)
    images = next(iter(DataLoader(OneView(build_dataset(recipe.data, "train"), recipe.data.image_size),
                                  batch_size=B, shuffle=True, generator=torch.Generator().manual_seed(0))))[0]
    with torch.no_grad():
        return method.cluster_logits(method.teacher(images))


def kkt_residual(q, logits, tau=0.225, beta=0.75):
    p = torch.softmax(logits.double() / tau, dim=1)
    rhs = p ** (1 / (1 - beta)) * q.double().mean(0) ** (-beta / (1 - beta))
    return float((rhs / rhs.sum(1, keepdim=True) - q.double()).abs().max())


def iterations_to_converge(name, logits, tol=1e-3 / K, cap=1000):
    """Binary search (the distance to the fixed point shrinks with t for both assigners)."""
    final = ASSIGN[name](logits, cap)
    lo, hi = 1, cap
    while lo < hi:
        mid = (lo + hi) // 2
        if (ASSIGN[name](logits, mid) - final).abs().max() < tol:
            hi = mid
        else:
            lo = mid + 1
    return lo


sources = {"random": random_logits(), "sharp": 10 * random_logits()}
if len(sys.argv) > 1:
    sources["trained"] = trained_logits(sys.argv[1])
for source, logits in sources.items():
    times = best_times({n: (lambda n=n: ASSIGN[n](logits, DEFAULT_ITERS[n])) for n in ASSIGN}, repeats=5)
    record = {"bench": "assign", "logits": source, "B": logits.shape[0], "K": logits.shape[1], "threads": 1}
    for n in ASSIGN:
        q = ASSIGN[n](logits, DEFAULT_ITERS[n])
        record[f"{n}_iters_default"] = DEFAULT_ITERS[n]
        record[f"{n}_ms"] = round(times[n] * 1e3, 2)
        record[f"{n}_iters_to_converge"] = iterations_to_converge(n, logits)
        record[f"{n}_equipartition_err"] = float((q.mean(0) * q.shape[1] - 1).abs().max())
    record["mira_kkt_residual"] = kkt_residual(ASSIGN["mira"](logits, DEFAULT_ITERS["mira"]), logits)
    emit(**record)
