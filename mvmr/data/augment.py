"""The MV-MR paper's augmented view: random resized crop, flip, colour jitter, grayscale and Gaussian blur.

Parameters are drawn per image from a ``torch.Generator`` when one is given (reproducible batches) or from torch's
global generator otherwise (which DataLoader seeds per worker). The view is made in two stages: the geometric crop
(on the data workers, in uint8 or float) and the photometric ops (per image with torchvision's ops here, or batched
on the device by ``photometric.photometric_batch`` with the same parameters).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import default_collate

from .photometric import JITTER, Photometric, blur_kernel_size, photometric_batch


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


Box = tuple[int, int, int, int]  # (top, left, h, w) in the image, or in the padded image for the pad crop


class PaperAugment:
    """Callable producing the augmented view of one (3, H, W) image in [0, 1] at ``size``×``size``:
    ``photometric(crop(img, box), params)`` with ``box, params = sample(H, W, generator)``."""

    def __init__(self, size: int, spec: AugmentSpec = AugmentSpec()) -> None:
        self.size = size
        self.spec = spec
        self.blur_kernel = blur_kernel_size(size)

    def __call__(self, img: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        box, params = self.sample(img.shape[-2], img.shape[-1], generator)
        return self.photometric(self.crop(img, box), params)

    def sample(self, height: int, width: int, g: Optional[torch.Generator] = None) -> tuple[Box, Photometric]:
        """Every random parameter of one view of a height×width image, drawn in a fixed order from ``g``."""
        s = self.spec
        if s.crop == "pad":
            top, left = (int(torch.randint(0, 2 * s.pad + 1, (), generator=g)) for _ in range(2))
            box = (top, left, self.size, self.size)
        else:
            box = crop_box(height, width, s.crop_scale, s.crop_ratio, g)
        flip = _coin(s.flip_p, g)
        order, factor, active = list(range(len(JITTER))), [1.0, 1.0, 1.0, 0.0], [False] * len(JITTER)
        if _coin(s.jitter_p, g):  # ColorJitter: a random order, then each factor with strength > 0
            order = torch.randperm(len(JITTER), generator=g).tolist()
            for i in order:
                strength, centre = s.jitter[i], (0.0 if JITTER[i] == "hue" else 1.0)
                if strength > 0:
                    lo = max(0.0, centre - strength) if centre else -strength
                    factor[i], active[i] = _uniform(lo, centre + strength, g), True
        gray = _coin(s.gray_p, g)
        sigma = _uniform(s.blur_sigma[0], s.blur_sigma[1], g) if _coin(s.blur_p, g) and self.blur_kernel > 1 else 0.0
        solarize = s.solarize_p > 0 and _coin(s.solarize_p, g)
        return box, Photometric(torch.tensor(flip), torch.tensor(order), torch.tensor(factor, dtype=torch.float64),
                                torch.tensor(active), torch.tensor(gray), torch.tensor(sigma, dtype=torch.float64),
                                torch.tensor(solarize))

    def crop(self, img: torch.Tensor, box: Box) -> torch.Tensor:
        """The geometric stage: ``box`` of ``img`` at size×size (uint8 stays uint8: the cheap worker path)."""
        top, left, h, w = box
        if self.spec.crop == "pad":
            if img.shape[-2:] != (self.size, self.size):
                img = TF.center_crop(TF.resize(img, self.size, antialias=True), [self.size, self.size])
            padded = torch.nn.functional.pad(img[None], [self.spec.pad] * 4, mode="reflect")[0]
            return padded[:, top:top + self.size, left:left + self.size]
        return TF.resized_crop(img, top, left, h, w, [self.size, self.size], antialias=True)

    def photometric(self, img: torch.Tensor, p: Photometric) -> torch.Tensor:
        """The photometric stage of one float image with torchvision's ops: flip, jitter in ``p.order``,
        grayscale, blur, solarize (the reference the batched device path is tested against)."""
        ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
        if p.flip:
            img = TF.horizontal_flip(img)
        for i in p.order.tolist():
            if p.active[i]:
                img = ops[i](img, float(p.factor[i]))
        if p.gray:
            img = TF.rgb_to_grayscale(img, num_output_channels=3)
        if p.sigma > 0:
            sigma = float(p.sigma)
            img = TF.gaussian_blur(img, [self.blur_kernel, self.blur_kernel], [sigma, sigma])
        if p.solarize:
            img = torch.where(img >= 0.5, 1.0 - img, img)
        return img.clamp(0.0, 1.0)

    def batch(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Augment each image of a (B, 3, H, W) float batch with its own random parameters (drawn on the CPU in
        image order): crops per image, then the photometric stage batched on the images' device."""
        drawn = [self.sample(images.shape[-2], images.shape[-1], generator) for _ in range(len(images))]
        crops = torch.stack([self.crop(img, box) for img, (box, _) in zip(images, drawn)])
        return photometric_batch(crops, default_collate([p for _, p in drawn]))
