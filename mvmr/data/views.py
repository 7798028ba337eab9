"""What a training step sees: the deterministic original view and the augmented views of each image, as a named
``Batch``. A method declares how many augmented views it needs (``Method.views``); the data pipeline reads it.

With a seed, the augmentations of image i in epoch e come from a generator seeded by (seed, e, i): the same
whatever the worker count, the order, or an interruption and resume.

Where the augmentation runs (``data.augment_on``): ``workers`` makes whole views in the data workers; ``device``
has the workers draw every parameter and make only the crops, in uint8 (cheap), and the batch's device applies the
photometric ops to the whole batch when the batch arrives (``Batch.to``). Same parameters, same distribution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset, Subset, default_collate

from .augment import AugmentSpec, PaperAugment
from .photometric import Photometric, photometric_batch

AUGMENT_ON = ("workers", "device")


@dataclass
class Batch:
    """original: (B, 3, H, W) deterministic view; views: augmented views, each (B, 3, H, W); label and index:
    (B,). ``index`` stays on the CPU: it addresses the feature cache. ``params``: with ``data.augment_on:
    device``, the views are still crops and these are their photometric parameters, applied by :meth:`to`."""

    original: torch.Tensor
    views: list[torch.Tensor] = field(default_factory=list)
    label: Optional[torch.Tensor] = None
    index: Optional[torch.Tensor] = None
    params: Optional[list[Photometric]] = None

    def __len__(self) -> int:
        return self.original.shape[0]

    def to(self, device: torch.device, channels_last: bool = False) -> "Batch":
        """The batch on ``device`` (non-blocking copies), its views augmented there when they came as crops."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format

        def move(x: torch.Tensor) -> torch.Tensor:
            return x.to(device, non_blocking=True)
        views = [move(v) for v in self.views]
        if self.params is not None:
            views = [photometric_batch(as_float(v), p) for v, p in zip(views, self.params)]
        return Batch(move(self.original).contiguous(memory_format=fmt), [v.contiguous(memory_format=fmt) for v in views],
                     None if self.label is None else move(self.label), self.index)

    def pin_memory(self) -> "Batch":
        """Page-locked copies (DataLoader's ``pin_memory`` calls this), so that ``to`` overlaps the copy."""
        def pin(x):
            return None if x is None else x.pin_memory()
        return Batch(pin(self.original), [pin(v) for v in self.views], pin(self.label), self.index, self.params)

    def slice(self, start: int, stop: int) -> "Batch":
        """Rows start:stop of every field (a per-process share, a micro-batch)."""
        def cut(x):
            return None if x is None else x[start:stop]
        params = None if self.params is None else [Photometric(*(t[start:stop] for t in p)) for p in self.params]
        return Batch(cut(self.original), [v[start:stop] for v in self.views], cut(self.label), cut(self.index), params)


def mix_batch(batch: Batch, alpha: float, seed: int, channels_last: bool = False) -> Batch:
    """Mixup across the batch (Zhang et al., 2018) as function-matching distillation uses it (Beyer et al., 2022,
    "a good teacher is patient and consistent"): every view of image i becomes λ_i·x_i + (1 − λ_i)·x_π(i), with one
    permutation π and one λ_i ~ Beta(α, α) per image for all its views, so a teacher and the student still see the
    same image. A mixed image is in no dataset: the index is dropped, and no cached feature is read for it."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    rng = np.random.default_rng(seed)
    n = len(batch)
    perm = torch.from_numpy(rng.permutation(n)).to(batch.original.device)
    lam = torch.from_numpy(rng.beta(alpha, alpha, n)).float().to(batch.original.device).view(n, 1, 1, 1)

    def mix(x: torch.Tensor) -> torch.Tensor:
        return torch.lerp(x[perm], x, lam.to(x.dtype)).contiguous(memory_format=fmt)
    return Batch(mix(batch.original), [mix(v) for v in batch.views], batch.label, None)


def collate(items: list[tuple]) -> Batch:
    """DataLoader ``collate_fn`` for :class:`Views` items: (original, views, label, index), or (original, crops,
    params, label, index) when the device augments."""
    if len(items[0]) == 5:
        original, views, params, label, index = default_collate(items)
        return Batch(original, list(views), label, index, list(params))
    original, views, label, index = default_collate(items)
    return Batch(original, list(views), label, index)


def substituted(base: Dataset, i: int) -> bool:
    """Whether item ``i`` of ``base`` was just served by another image (an unreadable file replaced by the next,
    ``SafeImageFolder``), looking through ``Subset``s (``data.limit``). Such an item keeps its place in the batch but
    gets index -1: no feature cache or bank row is ever written from it, so a healed file computes its own."""
    while isinstance(base, Subset):
        base, i = base.dataset, base.indices[i]
    check = getattr(base, "was_substituted", None)
    return bool(check is not None and check(i))


def as_image_tensor(img) -> torch.Tensor:
    """PIL image, uint8 HWC array or CHW tensor -> (3, H, W) tensor, uint8 kept uint8 (a gray image repeated)."""
    if isinstance(img, np.ndarray):
        img = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1) if img.ndim == 3 else torch.from_numpy(img)[None]
    elif not isinstance(img, torch.Tensor):
        img = TF.pil_to_tensor(img.convert("RGB"))
    return img.expand(3, -1, -1) if img.shape[0] == 1 else img


def as_float(img: torch.Tensor) -> torch.Tensor:
    """uint8 in 0..255 -> float in [0, 1]; float stays as it is."""
    return img.float().div_(255.0) if img.dtype == torch.uint8 else img.float()


def to_float_image(img) -> torch.Tensor:
    """PIL image, uint8 HWC array or uint8/float CHW tensor -> float (3, H, W) in [0, 1]."""
    return as_float(as_image_tensor(img))


def original_view(img: torch.Tensor, size: int) -> torch.Tensor:
    """Deterministic view: resize the short side to ``size`` and centre-crop."""
    if img.shape[-2:] != (size, size):
        img = TF.resize(img, size, antialias=True)
        img = TF.center_crop(img, [size, size])
    return img.clamp(0.0, 1.0)


class Views(Dataset):
    """(original view, augmented views, label, index) for pretraining; batch with :func:`collate`. The views are
    ``n_views`` draws of ``spec`` at ``size``, or one per (size, spec) of ``specs`` (asymmetric views, multi-crop).
    ``augment_on="device"``: the views are crops plus parameters, augmented by ``Batch.to``."""

    def __init__(self, base: Dataset, size: int, spec: AugmentSpec, seed: Optional[int] = None,
                 n_views: int = 1, specs: Optional[list[tuple[int, AugmentSpec]]] = None,
                 augment_on: str = "workers") -> None:
        if augment_on not in AUGMENT_ON:
            raise ValueError(f"augment_on must be one of {AUGMENT_ON}, got {augment_on!r}")
        self.base, self.size, self.seed, self.epoch, self.augment_on = base, size, seed, 0, augment_on
        specs = specs if specs is not None else [(size, spec)] * n_views
        self.n_views = len(specs)
        self.augments = [PaperAugment(s, sp) for s, sp in specs]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, label = self.base[i]
        index = -1 if substituted(self.base, i) else i  # the views keep i's draws either way
        pixels = as_image_tensor(img)
        img = as_float(pixels)
        g = None
        if self.seed is not None:
            g = torch.Generator().manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_000_007 + i) % 2**63)
        original = original_view(img, self.size)  # in float, as the feature caches see it
        if self.augment_on == "workers":
            return original, tuple(augment(img, g) for augment in self.augments), label, index
        drawn = [augment.sample(img.shape[-2], img.shape[-1], g) for augment in self.augments]
        crops = tuple(augment.crop(pixels, box) for augment, (box, _) in zip(self.augments, drawn))
        return original, crops, tuple(params for _, params in drawn), label, index


class OneView(Dataset):
    """(original view, label) for evaluation; with ``indexed`` (feature caching) also the index, -1 for an item
    another image stood in for (see ``substituted``)."""

    def __init__(self, base: Dataset, size: int, indexed: bool = False) -> None:
        self.base, self.size, self.indexed = base, size, indexed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, label = self.base[i]
        view = original_view(to_float_image(img), self.size)
        if self.indexed:
            return view, label, -1 if substituted(self.base, i) else i
        return view, label
