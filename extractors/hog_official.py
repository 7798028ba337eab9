"""``hog_official``: the HOG of the official MV-MR code (its ``HOGLayer``), with its binning fixed.

Per colour channel: Sobel gradients (zero padding 1; gx with [[1, 0, −1], [2, 0, −2], [1, 0, −1]], gy with its
transpose, as cross-correlations), magnitude √(gx² + gy²), angle atan2(gx, gy) taken modulo π into ``nbins`` bins,
each pixel's magnitude split linearly between the two nearest bins, then average pooling over ``pool`` × ``pool``
cells; no block normalisation. Output (B, 3 · nbins · ⌊H/pool⌋ · ⌊W/pool⌋).

Differences from the official layer, on purpose: (1) the official code writes the magnitude into the floor bin and
``1 − magnitude`` into the ceiling bin (not an interpolation: the ceiling bin gets a value that falls as the
gradient grows); here the floor bin gets magnitude·(1 − f) and the ceiling bin magnitude·f, f the fractional bin
position. (2) It runs on images in [0, 1] like every mvmr provider; the official layer saw images normalised by the
dataset's mean and std, which scales each channel's magnitudes by 1/std. skimage-exact HOG stays ``hog``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import mvmr


@mvmr.register_extractor("hog_official")
class OfficialHOG(mvmr.Provider):
    description = "the official MV-MR HOGLayer (Sobel, linear binning, average pooling), binning fixed"

    def __init__(self, nbins: int = 24, pool: int = 8) -> None:
        super().__init__()
        if int(nbins) < 1 or int(pool) < 1:
            raise ValueError(f"nbins and pool must be ≥ 1, got nbins={nbins}, pool={pool}")
        self.nbins, self.pool = int(nbins), int(pool)
        sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("kernels", torch.stack([sobel, sobel.T])[:, None], persistent=False)

    def output_dim(self, height: int, width: int) -> int:
        return 3 * self.nbins * (height // self.pool) * (width // self.pool)

    def weights_digest(self) -> str:
        return ""  # fixed Sobel filters: nothing learned to identify

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        b, c, h, w = images.shape
        if h < self.pool or w < self.pool:
            raise ValueError(f"hog_official with pool={self.pool} needs images of at least {self.pool} px, got {h}x{w}")
        x = images.reshape(b * c, 1, h, w)
        g = F.conv2d(x, self.kernels.to(x.dtype), padding=1)
        magnitude = g.norm(dim=1, keepdim=True)
        position = torch.atan2(g[:, 0], g[:, 1])[:, None] / math.pi * self.nbins  # in (−nbins, nbins]
        low = position.floor()
        frac = position - low
        low = low.long() % self.nbins
        bins = torch.zeros(b * c, self.nbins, h, w, dtype=x.dtype, device=x.device)
        bins.scatter_add_(1, low, magnitude * (1 - frac))
        bins.scatter_add_(1, (low + 1) % self.nbins, magnitude * frac)
        pooled = F.avg_pool2d(bins, self.pool, stride=self.pool)
        return pooled.reshape(b, c * self.nbins, *pooled.shape[-2:])
