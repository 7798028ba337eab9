"""Raw pixels of the original view, and pixels of an independently augmented copy of it."""
from __future__ import annotations

from typing import Optional

import torch

import mvmr
from mvmr.data import AugmentSpec, PaperAugment


@mvmr.register_extractor("pixels")
class Pixels(mvmr.Provider):
    """The flattened image, as given (B, 3·H·W)."""

    description = "flattened original image"

    def output_dim(self, height: int, width: int) -> int:
        return 3 * height * width

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)


@mvmr.register_extractor("augmented_pixels")
class AugmentedPixels(mvmr.Provider):
    """The flattened image after the paper's random augmentation, drawn per image (so not cacheable)."""

    deterministic = False
    description = "flattened image after the paper's random augmentation (per image)"

    def __init__(self, seed: Optional[int] = None, crop_scale: tuple[float, float] = (0.08, 1.0)) -> None:
        super().__init__()
        self.spec = AugmentSpec(crop_scale=tuple(crop_scale))
        self.generator: Optional[torch.Generator] = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(int(seed))

    def output_dim(self, height: int, width: int) -> int:
        return 3 * height * width

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != images.shape[-2]:
            raise ValueError(f"augmented_pixels needs square images, got {images.shape[-2]}x{images.shape[-1]}")
        augment = PaperAugment(images.shape[-1], self.spec)
        # Parameters come from the CPU generator (a seed gives the same views on every device); the ops run on
        # the images' device, the photometric stage batched.
        return augment.batch(images, self.generator).flatten(1)
