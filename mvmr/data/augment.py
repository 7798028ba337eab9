"""The MV-MR paper's augmented view: random resized crop, flip, colour jitter, grayscale and Gaussian blur.

Parameters are drawn per image from a ``torch.Generator`` when one is given (reproducible batches) or from torch's
global generator otherwise (which DataLoader seeds per worker). The image operations are torchvision's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torchvision.transforms.v2.functional as TF


@dataclass(frozen=True)
class AugmentSpec:
    """Probabilities and ranges of the augmented view. Defaults: the official MV-MR ``AugTransform`` (policy
    "custom"): RandomResizedCrop(size) with torchvision's scale and ratio, flip 0.5, ColorJitter(0.8, 0.8, 0.8, 0.2)
    with p 0.8, grayscale 0.2, and GaussianBlur(2·int(0.05·size)+1, σ ∈ [0.1, 2]) always applied."""

    crop: str = "resized"  # resized: RandomResizedCrop; pad: the CIFAR crop (pad, then a random size×size crop)
    pad: int = 4
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 0.2)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0  # BYOL/MIRA: invert the pixels at or above 0.5 (PIL's ImageOps.solarize at 128)


def _uniform(lo: float, hi: float, g: Optional[torch.Generator]) -> float:
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def _coin(p: float, g: Optional[torch.Generator]) -> bool:
    return p > 0 and torch.rand((), generator=g).item() < p


def crop_box(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
             g: Optional[torch.Generator]) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop, sampled as torchvision's RandomResizedCrop does."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1], g)
        aspect = math.exp(_uniform(log_ratio[0], log_ratio[1], g))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=g))
            left = int(torch.randint(0, width - w + 1, (), generator=g))
            return top, left, h, w
    in_ratio = width / height  # fallback: the largest centred crop within the ratio range
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class PaperAugment:
    """Callable producing the augmented view of one (3, H, W) image in [0, 1] at ``size``×``size``."""

    def __init__(self, size: int, spec: AugmentSpec = AugmentSpec()) -> None:
        self.size = size
        self.spec = spec
        self.blur_kernel = 2 * int(0.05 * size) + 1

    def __call__(self, img: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        s, g = self.spec, generator
        if s.crop == "pad":
            if img.shape[-2:] != (self.size, self.size):
                img = TF.center_crop(TF.resize(img, self.size, antialias=True), [self.size, self.size])
            padded = torch.nn.functional.pad(img[None], [s.pad] * 4, mode="reflect")[0]
            top, left = (int(torch.randint(0, 2 * s.pad + 1, (), generator=g)) for _ in range(2))
            img = padded[:, top:top + self.size, left:left + self.size]
        else:
            top, left, h, w = crop_box(img.shape[-2], img.shape[-1], s.crop_scale, s.crop_ratio, g)
            img = TF.resized_crop(img, top, left, h, w, [self.size, self.size], antialias=True)
        if _coin(s.flip_p, g):
            img = TF.horizontal_flip(img)
        if _coin(s.jitter_p, g):
            img = self._jitter(img, g)
        if _coin(s.gray_p, g):
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        if _coin(s.blur_p, g) and self.blur_kernel > 1:
            sigma = _uniform(s.blur_sigma[0], s.blur_sigma[1], g)
            img = TF.gaussian_blur(img, [self.blur_kernel, self.blur_kernel], [sigma, sigma])
        if s.solarize_p > 0 and _coin(s.solarize_p, g):
            img = torch.where(img >= 0.5, 1.0 - img, img)
        return img.clamp(0.0, 1.0)

    def _jitter(self, img: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
        """Colour jitter in a random order, as torchvision's ColorJitter."""
        b, c, s, h = self.spec.jitter
        ops = [
            (b, lambda x, f: TF.adjust_brightness(x, f), 1.0),
            (c, lambda x, f: TF.adjust_contrast(x, f), 1.0),
            (s, lambda x, f: TF.adjust_saturation(x, f), 1.0),
            (h, lambda x, f: TF.adjust_hue(x, f), 0.0),
        ]
        for i in torch.randperm(4, generator=g).tolist():
            strength, op, centre = ops[i]
            if strength > 0:
                lo = max(0.0, centre - strength) if centre else -strength
                img = op(img, _uniform(lo, centre + strength, g))
        return img

    def batch(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Augment each image of a (B, 3, H, W) batch with its own random parameters."""
        return torch.stack([self(img, generator) for img in images])
