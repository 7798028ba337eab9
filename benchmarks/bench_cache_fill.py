"""The feature cache under random access (a regulariser's unlabelled draws): a teacher's features of N images read
by index in random batches while the cache fills. mvmr computes only a batch's missing rows; the alternative, the
cache before that change, runs the teacher on the whole batch whenever any row is missing. One JSON line: teacher
images computed and seconds for each, side by side, the same draws.

Setting: EfficientNet-Lite0 at 128 px, ``--n`` images of the shared CIFAR-10 sample (default 2,000), batches of 250
drawn with replacement, ``--steps`` steps (default 40: 5 passes' worth of draws), 2 threads.
"""
import tempfile
import time

import numpy as np
import torch

from common import CIFAR_NPZ as NPZ, emit, option
from mvmr.cache import CachedFeatures, open_caches
from mvmr.registry import create_provider

N, STEPS, BATCH = option("n", 2000), option("steps", 40), 250


class WholeBatchOnMiss(CachedFeatures):
    """The earlier policy: any missing row and the provider runs on the whole batch."""

    def __call__(self, name, images, index, view="original"):
        cache, idx = self.caches[name], index.numpy()
        missing = cache.missing(idx)
        if missing.any():
            feats = self.providers[name](images)
            cache.write(idx[missing], feats[torch.from_numpy(missing)].float().numpy())
            return feats
        return torch.from_numpy(cache.read(idx))


def run(source_cls, images: torch.Tensor) -> dict:
    teacher = create_provider("efficientnet-lite0", size=128)
    seen = [0]

    def counted(x):
        seen[0] += len(x)
        return teacher(x)
    counted.deterministic, counted.output_dim = True, teacher.output_dim
    with tempfile.TemporaryDirectory() as root:
        caches = open_caches({"t": teacher}, {"name": "bench-cache-fill", "length": N}, N, 32, root)
        source = source_cls({"t": counted}, caches)
        g = torch.Generator().manual_seed(0)
        started = time.perf_counter()
        for _ in range(STEPS):
            index = torch.randint(N, (BATCH,), generator=g)
            source("t", images[index], index)
        filled = int((~caches["t"].missing(np.arange(N))).sum())
    return {"teacher_images": seen[0], "seconds": round(time.perf_counter() - started, 1), "filled": filled}


def main() -> None:
    torch.set_num_threads(2)
    x = torch.from_numpy(np.load(NPZ)["x_train"][:N]).permute(0, 3, 1, 2).float() / 255
    whole, missing_only = run(WholeBatchOnMiss, x), run(CachedFeatures, x)
    emit(bench="cache_fill", images=N, batch=BATCH, steps=STEPS, whole_batch=whole, missing_only=missing_only,
         speedup=round(whole["seconds"] / missing_only["seconds"], 2))


if __name__ == "__main__":
    main()
