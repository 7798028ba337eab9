"""Histogram of oriented gradients, batched in torch on any device, matching ``skimage.feature.hog``.

skimage's rules, reproduced exactly: central differences (not halved) with zero gradient on the border rows and
columns; with several channels each pixel takes the channel of largest gradient magnitude; unsigned angle in degrees
mod 180, hard-binned (bin i holds i·180/n ≤ θ < (i+1)·180/n); a cell's value is the sum of magnitudes over the cell
area; the image is cropped to whole cells; blocks slide by one cell and are normalised (L1, L1-sqrt, L2, L2-Hys with
ε = 1e-5 and clip 0.2). Angles are always computed in float64 so float32 inputs land in the same bins.
The speed comes from memory traffic: one bucketize, one index_add into all cell histograms, blocks by unfold.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

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
    g_row = torch.zeros_like(x)
    g_col = torch.zeros_like(x)
    g_row[..., 1:-1, :] = x[..., 2:, :] - x[..., :-2, :]
    g_col[..., :, 1:-1] = x[..., :, 2:] - x[..., :, :-2]
    return g_row, g_col


def _normalize_blocks(blocks: torch.Tensor, method: str) -> torch.Tensor:
    """Normalise each block over its last three axes (cells_r, cells_c, orientations)."""
    dims = (-3, -2, -1)
    if method == "L1":
        return blocks / (blocks.abs().sum(dims, keepdim=True) + EPS)
    if method == "L1-sqrt":
        return torch.sqrt(blocks / (blocks.abs().sum(dims, keepdim=True) + EPS))
    out = blocks / torch.sqrt((blocks * blocks).sum(dims, keepdim=True) + EPS**2)
    if method == "L2-Hys":
        out = out.clamp_max(0.2)
        out = out / torch.sqrt((out * out).sum(dims, keepdim=True) + EPS**2)
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
    g_row, g_col = _gradients(images)
    if C > 1:
        if not channel_max:
            raise ValueError("hog() got several channels; pass channel_max=True or one channel")
        best = torch.hypot(g_row, g_col).argmax(dim=1, keepdim=True)
        g_row, g_col = g_row.gather(1, best), g_col.gather(1, best)
    g_row = g_row[:, 0, : n_r * c_r, : n_c * c_c]
    g_col = g_col[:, 0, : n_r * c_r, : n_c * c_c]
    magnitude = torch.hypot(g_row, g_col)
    theta = torch.rad2deg(torch.atan2(g_row.double(), g_col.double())).remainder(180.0)
    width = 180.0 / orientations
    upper = torch.tensor([width * (i + 1) for i in range(orientations)], dtype=torch.float64, device=images.device)
    bins = torch.bucketize(theta, upper, right=True)  # == orientations for θ that rounds to 180: no bin, as skimage

    # One flat index per pixel into all (image, cell, bin) histograms; the extra bin per cell is dropped.
    rows = torch.arange(n_r * c_r, device=images.device) // c_r
    cols = torch.arange(n_c * c_c, device=images.device) // c_c
    cell = (rows[:, None] * n_c + cols[None, :])  # (h, w)
    per_image = n_r * n_c * (orientations + 1)
    offset = torch.arange(B, device=images.device)[:, None, None] * per_image
    index = offset + cell * (orientations + 1) + bins
    hist = torch.zeros(B * per_image, dtype=magnitude.dtype, device=images.device)
    hist.index_add_(0, index.reshape(-1), magnitude.reshape(-1))
    hist = hist.view(B, n_r, n_c, orientations + 1)[..., :orientations] / (c_r * c_c)
    if block_norm == "none":
        return hist
    blocks = hist.unfold(1, b_r, 1).unfold(2, b_c, 1)  # (B, nb_r, nb_c, orient, b_r, b_c)
    blocks = blocks.permute(0, 1, 2, 4, 5, 3)
    return _normalize_blocks(blocks, block_norm)


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

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        x = images if images.dtype in (torch.float32, torch.float64) else images.float()
        if self.channels == "gray":
            weights = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device)
            x = (x * weights[:, None, None]).sum(1, keepdim=True)
        elif self.channels == "each":
            x = x.reshape(-1, 1, *x.shape[-2:])
        out = hog(x, self.orientations, self.pixels_per_cell, self.cells_per_block, self.block_norm)
        return out.reshape(images.shape[0], -1)
