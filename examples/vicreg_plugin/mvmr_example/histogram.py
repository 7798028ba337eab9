"""``color_histogram``: a frozen, deterministic representation: the normalised histogram of each colour channel."""
from __future__ import annotations

import torch

import mvmr


@mvmr.register_extractor("color_histogram")
class ColorHistogram(mvmr.Provider):
    """(B, 3 · bins): per-channel histograms of the image in [0, 1], each summing to 1."""

    description = "per-channel colour histogram"

    def __init__(self, bins: int = 8) -> None:
        super().__init__()
        if int(bins) < 2:
            raise ValueError(f"bins must be ≥ 2, got {bins}")
        self.bins = int(bins)

    def output_dim(self, height: int, width: int) -> int:
        return 3 * self.bins

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        index = (images.clamp(0, 1) * self.bins).long().clamp_max(self.bins - 1).flatten(2)  # (B, 3, H·W)
        counts = torch.zeros(*index.shape[:2], self.bins, device=images.device).scatter_add_(
            2, index, torch.ones_like(index, dtype=torch.float32))
        return (counts / index.shape[-1]).flatten(1)
