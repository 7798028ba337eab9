"""Data: registered datasets (``datasets``), the views a step trains on (``views``), the augmentation (``augment``)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import DataError, RegistryError
from .. import registry  # registry.datasets: not imported by name, the submodule datasets.py would shadow it
from .augment import AugmentSpec, PaperAugment
from .views import Batch, OneView, Views, collate, original_view, to_float_image

SPLITS = ("ssl", "train", "test")


def register_dataset(name=None, builder=None):
    """Register a builder ``(cfg: DataConfig, split) -> Dataset`` under ``data.name``: decorator or function."""
    return registry.datasets.register(name, builder)


def build_dataset(cfg: DataConfig, split: str) -> Dataset:
    """The dataset ``data.name`` for a split ("ssl", "train", "test"); ``data.limit`` cuts the "ssl" split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    try:
        builder = registry.datasets.get(cfg.name)
    except RegistryError as exc:
        raise DataError(f"{exc} (data.name)") from None
    ds = builder(cfg, split)
    if split == "ssl" and cfg.limit is not None and cfg.limit < len(ds):
        ds = torch.utils.data.Subset(ds, range(cfg.limit))
    return ds


def augment_spec(cfg: DataConfig) -> AugmentSpec:
    return AugmentSpec(**cfg.augment.model_dump(), crop_ratio=(3 / 4, 4 / 3))


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


__all__ = ["AugmentSpec", "PaperAugment", "Batch", "OneView", "Views", "collate", "original_view", "to_float_image",
           "register_dataset", "build_dataset", "augment_spec", "has_labels", "dataset_identity", "SPLITS"]
