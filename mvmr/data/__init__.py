"""Data: registered datasets (``datasets``), the views a step trains on (``views``), the augmentation (``augment``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import DataError, MissingDataError, RegistryError
from .. import registry  # registry.datasets: not imported by name, the submodule datasets.py would shadow it
from .augment import AugmentSpec, PaperAugment
from .photometric import Photometric, photometric_batch
from .views import Batch, OneView, Views, collate, mix_batch, original_view, to_float_image

SPLITS = ("ssl", "train", "test")


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


def augment_on(cfg: DataConfig, device: torch.device) -> str:
    """Where ``data.augment_on`` puts the photometric ops on this device: auto is the device on CUDA (a GPU does
    them for almost nothing, and 224-px views cost a worker 11-17x less: bench_throughput.py), the workers elsewhere."""
    if cfg.augment_on == "auto":
        return "device" if device.type == "cuda" else "workers"
    return cfg.augment_on


def has_labels(cfg: DataConfig) -> bool:
    """True when labelled train/test splits exist for evaluation (a test split that exists but is broken is an
    error, not a reason to skip evaluation)."""
    try:
        build_dataset(cfg, "test")
        return True
    except MissingDataError:
        return False


def dataset_files(dataset: Dataset) -> Optional[list[Path]]:
    """The files a dataset reads (``mvmr_files``, set by the built-in builders; a plug-in may set it too), looking
    through ``Subset``; None when it does not say."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    files = getattr(dataset, "mvmr_files", None)
    return None if files is None else [Path(f) for f in files]


def files_fingerprint(files: list[Path], content: bool = False) -> dict[str, str]:
    """Digests of a dataset's files, independent of where its folder lives: ``layout`` over the sorted relative
    paths and sizes (what stays when the data is copied elsewhere), ``stat`` also over modification times (any
    rewrite changes it), and with ``content`` the files' bytes."""
    import hashlib

    layout, stat, data = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
    common = Path(os.path.commonpath([str(f) for f in files])) if files else Path()
    if len(files) == 1:
        common = files[0].parent
    for f in sorted(files):
        st = f.stat()
        entry = f"{f.relative_to(common).as_posix()}\0{st.st_size}"
        layout.update(entry.encode())
        stat.update(f"{entry}\0{st.st_mtime_ns}\n".encode())
        if content:
            with open(f, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 24), b""):
                    data.update(block)
    out = {"layout": layout.hexdigest()[:24], "stat": stat.hexdigest()[:24]}
    if content:
        out["content"] = data.hexdigest()[:24]
    return out


def dataset_identity(cfg: DataConfig, split: str, dataset: Dataset) -> dict:
    """What identifies the images of a split (for cache keys): name, root, split, image size, limit, length, and
    a fingerprint of the files read (paths, sizes, modification times; also their bytes with
    ``data.fingerprint: content``), so that files rewritten under the same path never reuse old features."""
    root = Path(cfg.root).expanduser().resolve()
    ident = {"name": cfg.name, "root": str(root), "split": split, "image_size": cfg.image_size,
             "limit": cfg.limit, "length": len(dataset)}
    files = dataset_files(dataset)
    if files is not None:
        ident["files"] = files_fingerprint(files, content=cfg.fingerprint == "content")
    return ident


def portable_identity(identity: dict) -> dict:
    """The part of a dataset identity that stays when the data moves (``--resume`` with a new ``data.root``)."""
    return {"name": identity["name"], "split": identity["split"], "length": identity["length"],
            "limit": identity["limit"], "layout": (identity.get("files") or {}).get("layout")}


__all__ = ["AugmentSpec", "PaperAugment", "Photometric", "photometric_batch", "augment_on", "Batch", "OneView", "Views", "collate", "original_view", "to_float_image",
           "build_dataset", "augment_spec", "mix_batch", "has_labels", "dataset_identity", "dataset_files",
           "files_fingerprint", "portable_identity", "SPLITS"]
