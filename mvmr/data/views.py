"""What a training step sees: the deterministic original view and the augmented views of each image, as a named
``Batch``. A method declares how many augmented views it needs (``Method.views``); the data pipeline reads it.

With a seed, the augmentations of image i in epoch e come from a generator seeded by (seed, e, i): the same
whatever the worker count, the order, or an interruption and resume.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset, default_collate

from .augment import AugmentSpec, PaperAugment


@dataclass
class Batch:
    """original: (B, 3, H, W) deterministic view; views: augmented views, each (B, 3, H, W); label and index:
    (B,). ``index`` stays on the CPU: it addresses the feature cache."""

    original: torch.Tensor
    views: list[torch.Tensor] = field(default_factory=list)
    label: Optional[torch.Tensor] = None
    index: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.original.shape[0]

    def to(self, device: torch.device, channels_last: bool = False) -> "Batch":
        fmt = torch.channels_last if channels_last else torch.contiguous_format

        def move(x: torch.Tensor) -> torch.Tensor:
            return x.to(device, non_blocking=True).contiguous(memory_format=fmt)
        return Batch(move(self.original), [move(v) for v in self.views],
                     None if self.label is None else self.label.to(device, non_blocking=True), self.index)

    def slice(self, start: int, stop: int) -> "Batch":
        """Rows start:stop of every field (a per-process share, a micro-batch)."""
        def cut(x):
            return None if x is None else x[start:stop]
        return Batch(cut(self.original), [v[start:stop] for v in self.views], cut(self.label), cut(self.index))


def collate(items: list[tuple]) -> Batch:
    """DataLoader ``collate_fn`` for :class:`Views` items (original, views, label, index)."""
    original, views, label, index = default_collate(items)
    return Batch(original, list(views), label, index)


def to_float_image(img) -> torch.Tensor:
    """PIL image, uint8 HWC array or uint8/float CHW tensor -> float (3, H, W) in [0, 1]."""
    if isinstance(img, np.ndarray):
        img = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1) if img.ndim == 3 else torch.from_numpy(img)[None]
    elif not isinstance(img, torch.Tensor):
        img = TF.pil_to_tensor(img.convert("RGB"))
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return img.float().div_(255.0) if img.dtype == torch.uint8 else img.float()


def original_view(img: torch.Tensor, size: int) -> torch.Tensor:
    """Deterministic view: resize the short side to ``size`` and centre-crop."""
    if img.shape[-2:] != (size, size):
        img = TF.resize(img, size, antialias=True)
        img = TF.center_crop(img, [size, size])
    return img.clamp(0.0, 1.0)


class Views(Dataset):
    """(original view, augmented views, label, index) for pretraining; batch with :func:`collate`. The views are
    ``n_views`` draws of ``spec`` at ``size``, or one per (size, spec) of ``specs`` (asymmetric views, multi-crop)."""

    def __init__(self, base: Dataset, size: int, spec: AugmentSpec, seed: Optional[int] = None,
                 n_views: int = 1, specs: Optional[list[tuple[int, AugmentSpec]]] = None) -> None:
        self.base, self.size, self.seed, self.epoch = base, size, seed, 0
        specs = specs if specs is not None else [(size, spec)] * n_views
        self.n_views = len(specs)
        self.augments = [PaperAugment(s, sp) for s, sp in specs]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, label = self.base[i]
        img = to_float_image(img)
        g = None
        if self.seed is not None:
            g = torch.Generator().manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_000_007 + i) % 2**63)
        views = tuple(augment(img, g) for augment in self.augments)
        return original_view(img, self.size), views, label, i


class OneView(Dataset):
    """(original view, label) for evaluation and feature caching."""

    def __init__(self, base: Dataset, size: int) -> None:
        self.base, self.size = base, size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, label = self.base[i]
        return original_view(to_float_image(img), self.size), label
