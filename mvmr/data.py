"""Datasets in their real on-disk formats, and the two views MV-MR trains on.

Each dataset builder returns a torch Dataset of (image, label) for a split: "ssl" (what pretraining sees),
"train" and "test" (labelled, for evaluation). Images become float (3, H, W) tensors in [0, 1], RGB.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import Dataset

from .augment import AugmentSpec, PaperAugment
from .config import DataConfig
from .errors import DataError

SPLITS = ("ssl", "train", "test")
_DATASETS: dict[str, Callable[[DataConfig, str], Dataset]] = {}


def register_dataset(name: str):
    """Decorator: register a builder ``(cfg, split) -> Dataset`` under ``data.name``."""
    def wrap(fn):
        _DATASETS[name] = fn
        return fn
    return wrap


def build_dataset(cfg: DataConfig, split: str) -> Dataset:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if cfg.name not in _DATASETS:
        raise DataError(f"unknown dataset '{cfg.name}' (data.name); available: {', '.join(sorted(_DATASETS))}")
    ds = _DATASETS[cfg.name](cfg, split)
    if split == "ssl" and cfg.limit is not None and cfg.limit < len(ds):
        ds = torch.utils.data.Subset(ds, range(cfg.limit))
    return ds


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


class ArrayDataset(Dataset):
    """uint8 NHWC images (N, H, W, C) with integer labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise DataError(f"expected uint8 images shaped (N, H, W, C), got {images.dtype} {images.shape}")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


class TwoViews(Dataset):
    """(original view, augmented view, label, index, *extra augmented views) for pretraining.

    With a ``seed``, the augmentation of image i in epoch ``self.epoch`` comes from a generator seeded by
    (seed, epoch, i): the same whatever the worker count, the order, or an interruption and resume.
    """

    def __init__(self, base: Dataset, size: int, spec: AugmentSpec, seed: Optional[int] = None,
                 extra_views: int = 0) -> None:
        self.base, self.size, self.seed, self.epoch, self.extra_views = base, size, seed, 0, extra_views
        self.augment = PaperAugment(size, spec)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, label = self.base[i]
        img = to_float_image(img)
        g = None
        if self.seed is not None:
            g = torch.Generator().manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_000_007 + i) % 2**63)
        extra = tuple(self.augment(img, g) for _ in range(self.extra_views))
        return (original_view(img, self.size), self.augment(img, g), label, i, *extra)


class OneView(Dataset):
    """(original view, label) for evaluation and feature caching."""

    def __init__(self, base: Dataset, size: int) -> None:
        self.base, self.size = base, size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, label = self.base[i]
        return original_view(to_float_image(img), self.size), label


def augment_spec(cfg: DataConfig) -> AugmentSpec:
    return AugmentSpec(**cfg.augment.model_dump(), crop_ratio=(3 / 4, 4 / 3))


def _missing(name: str, root: Path, what: str) -> DataError:
    return DataError(f"{name}: no data at {root} (expected {what}); set data.download=true to fetch it, "
                     f"or data.root to where it is")


def _torchvision(name: str, cls_name: str, expected: str, **split_kwargs):
    """Wrap a torchvision dataset class; turn its 'not found' error into one clear line."""
    def build(cfg: DataConfig, split: str) -> Dataset:
        import torchvision.datasets as tvd

        root = Path(cfg.root).expanduser()
        try:
            return getattr(tvd, cls_name)(str(root), download=cfg.download, **split_kwargs[split])
        except RuntimeError as exc:
            if "not found" in str(exc).lower() or "download" in str(exc).lower():
                raise _missing(name, root, expected) from None
            raise
    return register_dataset(name)(build)


_torchvision("stl10", "STL10", "stl10_binary/{train,test,unlabeled}_X.bin",
             ssl={"split": "train+unlabeled"}, train={"split": "train"}, test={"split": "test"})
_torchvision("cifar10", "CIFAR10", "cifar-10-batches-py/",
             ssl={"train": True}, train={"train": True}, test={"train": False})
_torchvision("cifar100", "CIFAR100", "cifar-100-python/",
             ssl={"train": True}, train={"train": True}, test={"train": False})


@register_dataset("imagefolder")
def _imagefolder(cfg: DataConfig, split: str) -> Dataset:
    """ImageNet layout: ROOT/train/<class>/*.JPEG and ROOT/val/<class>/*.JPEG."""
    from torchvision.datasets import ImageFolder

    root = Path(cfg.root).expanduser() / ("val" if split == "test" else "train")
    if not root.is_dir():
        raise _missing("imagefolder", root, "one sub-folder of images per class")
    return ImageFolder(str(root))


@register_dataset("npz")
def _npz(cfg: DataConfig, split: str) -> Dataset:
    """An .npz file with uint8 NHWC x_train, y_train, x_test, y_test (as ../shared/data/cifar10-mini.npz)."""
    path = Path(cfg.root).expanduser()
    if not path.is_file():
        raise _missing("npz", path, "an .npz file with x_train, y_train, x_test, y_test")
    with np.load(path) as f:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if missing:
            raise DataError(f"npz: {path} lacks arrays {', '.join(sorted(missing))}")
        part = "test" if split == "test" else "train"
        return ArrayDataset(f[f"x_{part}"], f[f"y_{part}"])


@register_dataset("digits")
def _digits(cfg: DataConfig, split: str) -> Dataset:
    """scikit-learn's digits (1,797 real 8×8 scans shipped in its wheel), as RGB; a fixed stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None].repeat(3, axis=-1)
    idx_train, idx_test = train_test_split(np.arange(len(images)), test_size=0.25, random_state=0,
                                           stratify=digits.target)
    idx = idx_test if split == "test" else idx_train
    return ArrayDataset(images[idx], digits.target[idx])


def has_labels(cfg: DataConfig) -> bool:
    """True when labelled train/test splits exist for evaluation."""
    try:
        build_dataset(cfg, "test")
        return True
    except DataError:
        return False


def dataset_identity(cfg: DataConfig, split: str, length: int) -> dict:
    """What identifies the images of a split (for cache keys): name, root (with size and mtime when it is a file),
    split, image size, limit and length."""
    root = Path(cfg.root).expanduser().resolve()
    ident = {"name": cfg.name, "root": str(root), "split": split, "image_size": cfg.image_size,
             "limit": cfg.limit, "length": length}
    if root.is_file():
        stat = root.stat()
        ident.update(root_bytes=stat.st_size, root_mtime=stat.st_mtime_ns)
    return ident
