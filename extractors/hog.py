"""Histogram of oriented gradients, batched in torch on any device, matching ``skimage.feature.hog``.

skimage's rules, reproduced exactly: central differences (not halved) with zero gradient on the border rows and
columns; with several channels each pixel takes the channel of largest gradient magnitude; unsigned angle in degrees
mod 180, hard-binned (bin i holds i·180/n ≤ θ < (i+1)·180/n); a cell's value is the sum of magnitudes over the cell
area; the image is cropped to whole cells; blocks slide by one cell and are normalised (L1, L1-sqrt, L2, L2-Hys with
ε = 1e-5 and clip 0.2). Angles are always computed in float64 so float32 inputs land in the same bins.
The speed comes from memory traffic (benchmarks/bench_hog.py): in-place channel selection with float masks, float32
angles with float64 only near bin boundaries, int32 indices and one index_add into all cell histograms, block norms
as box sums of cell sums, and one pass writing the normalised blocks.
"""
from __future__ import annotations

from typing import Sequence, Union

import math

import torch
import torch.nn.functional as F

import mvmr

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys", "none")
CHANNEL_MODES = ("gray", "max", "each")
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)  # skimage.color.rgb2gray
EPS = 1e-5


def _pair(v: Union[int, Sequence[int]], what: str) -> tuple[int, int]:
    pair = (int(v), int(v)) if isinstance(v, (int, float)) else tuple(int(x) for x in v)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{what} must be a positive int or a pair of them, got {v!r}")
    return pair  # type: ignore[return-value]


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences over the last two axes, zero on the border (skimage's _hog_channel_gradient)."""
    g_row = F.pad(x[..., 2:, :] - x[..., :-2, :], (0, 0, 1, 1))
    g_col = F.pad(x[..., :, 2:] - x[..., :, :-2], (1, 1, 0, 0))
    return g_row, g_col


def _strongest_channel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per pixel, the gradient of the channel with the largest magnitude (first one on ties, as numpy's argmax).

    x is (B, C, H, W); returns magnitude, g_row, g_col, each (B, H, W).
    """
    g_row, g_col = _gradients(x[:, 0])
    magnitude = torch.hypot(g_row, g_col)
    better = torch.empty_like(magnitude)
    for k in range(1, x.shape[1]):
        r, c = _gradients(x[:, k])
        m = torch.hypot(r, c)
        # 1.0 where strictly larger, else 0.0; lerp with a 0/1 weight returns an endpoint exactly. (Float masks:
        # torch.where on bool masks is ~10x slower than arithmetic on CPU.) In place: fresh large buffers cost
        # page faults that dominate these cheap passes.
        torch.sub(m, magnitude, out=better).sign_().clamp_min_(0.0)
        torch.maximum(magnitude, m, out=magnitude)
        g_row.lerp_(r, better)
        g_col.lerp_(c, better)
    return magnitude, g_row, g_col


def _exact_bins(g_row: torch.Tensor, g_col: torch.Tensor, orientations: int) -> torch.Tensor:
    """skimage's bin of each angle: i with i·w ≤ θ < (i+1)·w, θ = rad2deg(atan2) mod 180 in float64; θ → 180 is
    left out (bin ``orientations``), as skimage's strict comparisons leave it out."""
    width = 180.0 / orientations
    theta = torch.rad2deg(torch.atan2(g_row.double(), g_col.double())).remainder(180.0)
    bins = (theta * (1.0 / width)).floor()
    bins = bins - (theta < bins * width).double() + (theta >= (bins + 1) * width).double()
    return bins.int()


def _bins(g_row: torch.Tensor, g_col: torch.Tensor, orientations: int) -> torch.Tensor:
    """Orientation bins, exactly as skimage's float64 rule, but with float64 work only near bin boundaries.

    For float32 gradients the angle is computed in float32 first; pixels within 1e-3 degrees of a boundary (float32
    atan2 errs by ~1e-5 degrees) are re-binned from float64 angles, so every pixel lands where float64 puts it.
    """
    if g_row.dtype == torch.float64:
        return _exact_bins(g_row, g_col, orientations)
    width = 180.0 / orientations
    scaled = torch.atan2(g_row, g_col).mul_(180.0 / math.pi / width).remainder_(float(orientations))
    bins = scaled.int()  # truncation is floor: scaled >= 0
    frac = scaled.sub_(bins)
    near = (frac < 1e-3 / width) | (frac > 1 - 1e-3 / width)
    idx = near.nonzero(as_tuple=True)
    if idx[0].numel():
        bins[idx] = _exact_bins(g_row[idx], g_col[idx], orientations)
    return bins


def _normalize_blocks(hist: torch.Tensor, b_r: int, b_c: int, method: str) -> torch.Tensor:
    """Blocks of b_r×b_c cells sliding by one cell, each normalised as skimage's _hog_normalize_block.

    A block's L1/L2 norm is a box sum of per-cell sums (no pass over the 9× larger block array), and the one
    pass that writes the blocks also divides by that norm.
    """
    def box(per_cell: torch.Tensor) -> torch.Tensor:  # (B, n_r, n_c) -> (B, nb_r, nb_c, 1, 1, 1)
        return per_cell.unfold(1, b_r, 1).unfold(2, b_c, 1).sum((-2, -1))[..., None, None, None]

    blocks = hist.unfold(1, b_r, 1).unfold(2, b_c, 1).permute(0, 1, 2, 4, 5, 3)  # strided view, no copy
    out = torch.empty(blocks.shape, dtype=hist.dtype, device=hist.device)  # contiguous, unlike div's own output
    if method in ("L1", "L1-sqrt"):
        torch.div(blocks, box(hist.abs().sum(-1)) + EPS, out=out)
        return out.sqrt_() if method == "L1-sqrt" else out
    torch.div(blocks, torch.sqrt(box(hist.square().sum(-1)) + EPS**2), out=out)
    if method == "L2-Hys":
        out.clamp_(max=0.2)
        norm = torch.linalg.vector_norm(out.flatten(3), dim=-1)[..., None, None, None]
        out.div_(torch.sqrt(norm.square_() + EPS**2))
    return out


def hog(images: torch.Tensor, orientations: int = 9, pixels_per_cell=(8, 8), cells_per_block=(3, 3),
        block_norm: str = "L2-Hys", channel_max: bool = True) -> torch.Tensor:
    """HOG of a (B, C, H, W) float batch; with C > 1 and ``channel_max`` a pixel takes its strongest channel.

    Returns (B, blocks_r, blocks_c, cells_r, cells_c, orientations), raveled like skimage's feature vector
    when flattened. With ``block_norm="none"`` returns the cell histograms (B, cells_r, cells_c, orientations).
    """
    c_r, c_c = _pair(pixels_per_cell, "pixels_per_cell")
    b_r, b_c = _pair(cells_per_block, "cells_per_block")
    B, C, H, W = images.shape
    n_r, n_c = H // c_r, W // c_c
    if n_r < b_r or n_c < b_c:
        raise ValueError(f"a {H}x{W} image has {n_r}x{n_c} cells of {c_r}x{c_c} px, fewer than a "
                         f"{b_r}x{b_c} block; use smaller pixels_per_cell or cells_per_block")
    if C > 1 and not channel_max:
        raise ValueError("hog() got several channels; pass channel_max=True or one channel")
    magnitude, g_row, g_col = _strongest_channel(images)
    crop = (slice(None), slice(0, n_r * c_r), slice(0, n_c * c_c))
    magnitude, bins = magnitude[crop], _bins(g_row[crop], g_col[crop], orientations)

    # One flat index per pixel into all (image, cell, bin) histograms (built in place on the int32 bins); the
    # extra bin per cell (angles that round to 180) is dropped.
    rows = torch.arange(n_r * c_r, device=images.device, dtype=torch.int32) // c_r
    cols = torch.arange(n_c * c_c, device=images.device, dtype=torch.int32) // c_c
    per_image = n_r * n_c * (orientations + 1)
    index = bins.add_((rows[:, None] * n_c + cols[None, :]) * (orientations + 1))
    index.add_(torch.arange(B, device=images.device, dtype=torch.int32)[:, None, None] * per_image)
    hist = torch.zeros(B * per_image, dtype=magnitude.dtype, device=images.device)
    hist.index_add_(0, index.reshape(-1), magnitude.reshape(-1))
    hist = hist.view(B, n_r, n_c, orientations + 1)[..., :orientations] / (c_r * c_c)
    if block_norm == "none":
        return hist
    return _normalize_blocks(hist, b_r, b_c, block_norm)


@mvmr.register_extractor("hog")
class HOG(mvmr.Provider):
    """HOG features; ``channels``: "gray" (luminance), "max" (skimage's channel_axis) or "each" (per channel)."""

    description = "histogram of oriented gradients (skimage-exact, batched torch)"

    def __init__(self, orientations: int = 24, pixels_per_cell: Union[int, Sequence[int]] = 8,
                 cells_per_block: Union[int, Sequence[int]] = 3, block_norm: str = "L2-Hys",
                 channels: str = "gray") -> None:
        super().__init__()
        if int(orientations) < 1:
            raise ValueError(f"orientations must be ≥ 1, got {orientations}")
        if block_norm not in BLOCK_NORMS:
            raise ValueError(f"block_norm must be one of {', '.join(BLOCK_NORMS)}, got {block_norm!r}")
        if channels not in CHANNEL_MODES:
            raise ValueError(f"channels must be one of {', '.join(CHANNEL_MODES)}, got {channels!r}")
        self.orientations = int(orientations)
        self.pixels_per_cell = _pair(pixels_per_cell, "pixels_per_cell")
        self.cells_per_block = _pair(cells_per_block, "cells_per_block")
        self.block_norm = block_norm
        self.channels = channels

    def output_dim(self, height: int, width: int) -> int:
        n_r, n_c = height // self.pixels_per_cell[0], width // self.pixels_per_cell[1]
        if self.block_norm == "none":
            per_channel = n_r * n_c * self.orientations
        else:
            b_r, b_c = self.cells_per_block
            per_channel = (n_r - b_r + 1) * (n_c - b_c + 1) * b_r * b_c * self.orientations
        return per_channel * (3 if self.channels == "each" else 1)

    def check_input_size(self, height: int, width: int) -> None:
        (c_r, c_c), (b_r, b_c) = self.pixels_per_cell, self.cells_per_block
        if height // c_r < b_r or width // c_c < b_c:
            raise ValueError(f"a {height}x{width} image has {height // c_r}x{width // c_c} cells of {c_r}x{c_c} px, "
                             f"fewer than a {b_r}x{b_c} block; use smaller pixels_per_cell or cells_per_block, or "
                             f"larger images")

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        x = images if images.dtype in (torch.float32, torch.float64) else images.float()
        if self.channels == "gray":
            weights = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device)
            x = (x * weights[:, None, None]).sum(1, keepdim=True)
        elif self.channels == "each":
            x = x.reshape(-1, 1, *x.shape[-2:])
        out = hog(x, self.orientations, self.pixels_per_cell, self.cells_per_block, self.block_norm)
        return out.reshape(images.shape[0], -1)
