"""Where the augmentation runs, measured on one core (one JSON line each):

1. ``workers``: CPU-ms a data worker spends per image (``Views`` with the original view and two augmented views, the
   paper's augmentation, no JPEG decode) with ``data.augment_on: workers`` (whole views) against ``device`` (only
   uint8 crops and the parameters), at 96 px from 96×96 (STL10) and 224 px from 256×320 (ImageNet).
   Goal at 224 px: >= 5x fewer.
2. ``photometric``: the batched photometric stage (``photometric_batch``, what the device runs) against the
   per-image torchvision loop with the same parameters, on this CPU. Goal: >= 3x.
3. ``blur_memory_format``: the separable blur's depthwise convolutions in contiguous vs channels_last memory.
4. ``precision``: bf16 against fp32 and the CPU's bf16 support (``bench_precision.py``, run here).

Usage: python bench_throughput.py [images] [batch]
"""
import runpy
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

from common import RandomImages, best_times, emit
from mvmr.data import AugmentSpec, PaperAugment, Views, photometric_batch

torch.set_num_threads(1)
images = int(sys.argv[1]) if len(sys.argv) > 1 else 48
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64


def per_image_ms(fn, n: int, repeats: int = 3) -> float:
    """Best of ``repeats`` passes of fn(i) for i < n, in ms per image."""
    fn(0)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e3


for size, (height, width) in ((96, (96, 96)), (224, (256, 320))):
    base = RandomImages(images, height, width)
    ms = {on: per_image_ms(Views(base, size, AugmentSpec(), seed=0, n_views=2, augment_on=on).__getitem__, images)
          for on in ("workers", "device")}
    emit(bench="throughput", part="workers", image_size=size, source=f"{height}x{width}", views=2,
         workers_ms_per_image=round(ms["workers"], 3), device_ms_per_image=round(ms["device"], 3),
         fewer=round(ms["workers"] / ms["device"], 2), images_per_s_per_core_device=round(1e3 / ms["device"], 1))

for size in (96, 224):
    aug = PaperAugment(size)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g)
    params = [aug.sample(size, size, g)[1] for _ in range(batch)]
    collated = default_collate(params)
    best = best_times({"loop": lambda: torch.stack([aug.photometric(img, p) for img, p in zip(x, params)]),
                       "batched": lambda: photometric_batch(x, collated)}, repeats=7)  # interleaved
    loop, batched = best["loop"] * 1e3 / batch, best["batched"] * 1e3 / batch
    err = (photometric_batch(x, collated) - torch.stack([aug.photometric(i, p) for i, p in zip(x, params)])).abs().max()
    emit(bench="throughput", part="photometric", image_size=size, batch=batch, per_image_loop_ms=round(loop, 3),
         batched_ms=round(batched, 3), speedup=round(loop / batched, 2), max_abs_diff=float(f"{err.item():.2e}"))

for size, images_in_chunk in ((96, 56), (224, 10)):  # the blur's memory format (photometric.gaussian_blur on a CPU)
    import torch.nn.functional as F
    from mvmr.data.photometric import _gaussian_kernels, blur_kernel_size

    x = torch.rand(images_in_chunk, 3, size, size)
    sigma = torch.rand(images_in_chunk, dtype=torch.float64) * 1.9 + 0.1
    k, b, half = blur_kernel_size(size), images_in_chunk * 3, blur_kernel_size(size) // 2
    kernels = _gaussian_kernels(sigma.float(), k).repeat_interleave(3, dim=0)

    def blur(fmt):
        y = F.pad(x.reshape(1, b, size, size), [half] * 4, mode="reflect").contiguous(memory_format=fmt)
        y = F.conv2d(F.conv2d(y, kernels.view(b, 1, 1, k), groups=b), kernels.view(b, 1, k, 1), groups=b)
        return y.contiguous()
    best = best_times({"contiguous": lambda: blur(torch.contiguous_format),
                       "channels_last": lambda: blur(torch.channels_last)}, repeats=7)
    emit(bench="throughput", part="blur_memory_format", image_size=size, images=images_in_chunk,
         contiguous_ms=round(best["contiguous"] * 1e3, 3), channels_last_ms=round(best["channels_last"] * 1e3, 3),
         speedup=round(best["contiguous"] / best["channels_last"], 2),
         same_values=bool(torch.equal(blur(torch.contiguous_format), blur(torch.channels_last))))

sys.argv = [sys.argv[0]]
runpy.run_path(str(Path(__file__).with_name("bench_precision.py")), run_name="__main__")
