"""``shapes``: procedurally drawn coloured shapes (disc, square, triangle, cross) at random places and sizes on
random backgrounds; the label is the shape. Made in memory from a seed, so nothing is downloaded.
``data.params``: ``n_train`` (default 512), ``n_test`` (256), ``size`` (32 px)."""
from __future__ import annotations

import numpy as np

import mvmr

SHAPES = ("disc", "square", "triangle", "cross")


def draw(rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
    """One (size, size, 3) uint8 image and its shape label."""
    label = int(rng.integers(len(SHAPES)))
    yy, xx = np.mgrid[:size, :size]
    r = rng.uniform(0.18, 0.32) * size
    cy, cx = rng.uniform(r, size - r, 2)
    dy, dx = np.abs(yy - cy), np.abs(xx - cx)
    mask = {0: dy ** 2 + dx ** 2 <= r ** 2,
            1: np.maximum(dy, dx) <= r * 0.8,
            2: (yy - cy <= r * 0.8) & (yy - cy >= -r) & (dx <= (yy - cy + r) * 0.55),
            3: (np.minimum(dy, dx) <= r * 0.3) & (np.maximum(dy, dx) <= r)}[label]
    image = np.empty((size, size, 3), dtype=np.float64)
    image[:] = rng.uniform(0, 255, 3)
    image[mask] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


@mvmr.register_dataset("shapes")
def shapes(cfg: "mvmr.DataConfig", split: str):
    n = int(cfg.params.get("n_test" if split == "test" else "n_train", 256 if split == "test" else 512))
    size = int(cfg.params.get("size", 32))
    rng = np.random.default_rng(1 if split == "test" else 0)
    images, labels = zip(*(draw(rng, size) for _ in range(n)))
    return mvmr.ArrayDataset(np.stack(images), np.array(labels))
