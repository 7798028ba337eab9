"""HOG: batched torch provider vs looping skimage.feature.hog over the same 256×3×96×96 images (channel_axis)."""
import numpy as np
import torch
from skimage.feature import hog as skimage_hog

from common import best_times, emit
import mvmr

torch.set_num_threads(1)
setting = dict(orientations=24, pixels_per_cell=(8, 8), cells_per_block=(3, 3), block_norm="L2-Hys")
images = torch.rand(256, 3, 96, 96, generator=torch.Generator().manual_seed(0))
hwc = [im.permute(1, 2, 0).numpy() for im in images]
provider = mvmr.create_extractor("hog", channels="max", **setting)


def skimage_loop():
    return np.stack([skimage_hog(im, channel_axis=-1, **setting) for im in hwc])


times = best_times({"mvmr": lambda: provider(images), "skimage": skimage_loop}, repeats=3)
diff = float(np.abs(provider(images).numpy() - skimage_loop()).max())
emit(bench="hog", images=[256, 3, 96, 96], dtype="float32", threads=1, channels="max",
     mvmr_ms=round(times["mvmr"] * 1e3, 1), skimage_ms=round(times["skimage"] * 1e3, 1),
     speedup=round(times["skimage"] / times["mvmr"], 1), max_abs_diff=diff)
