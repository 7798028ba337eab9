"""On-disk, memory-mapped cache of deterministic providers' features on the original view of a dataset.

One folder per (provider fingerprint, dataset identity, original-view transform), named by the hash of all three:
``meta.json`` (what it holds, whether complete, a CRC of the features when complete), ``features.npy`` (N × D
float32, memory-mapped) and ``filled.npy`` (N bytes: which rows are written). Rows are flushed before they are
marked filled, so an interrupted build leaves a partial cache that the next run continues. A cache whose meta,
shapes or checksum do not match is rebuilt. Float32 rows are stored exactly: the loss is the same with or
without the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from . import __version__
from .errors import MVMRError, NonFiniteError

ORIGINAL_VIEW = "resize-short-side+center-crop/v1"
FORMAT = "mvmr-feature-cache/1"  # written into every meta.json: `cache clear` removes only folders that carry it
KEY_PATTERN = re.compile(r"^[0-9a-f]{24}$")
TEMP_PATTERN = re.compile(r"^\.[0-9a-f]{24}\.[A-Za-z0-9_]+$")  # FeatureCache.open's mkdtemp names
log: Callable[[str], None] = lambda msg: print(f"[mvmr cache] {msg}")  # noqa: E731


def cache_key(description: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:24]


def describe(provider, dataset_identity: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides the cached values, including mvmr's version and the provider's own."""
    return {"provider": provider.name, "params": provider.params, "fingerprint": provider.fingerprint(),
            "provider_version": str(getattr(provider, "version", "")), "mvmr": __version__,
            "dataset": dataset_identity, "view": ORIGINAL_VIEW}


def _crc(path: Path, chunk: int = 1 << 24) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


def _write_json(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".meta.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


class FeatureCache:
    """Features of one provider for N images; open with :meth:`open`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text())
        self.features = np.load(folder / "features.npy", mmap_mode="r+")
        self.filled = np.load(folder / "filled.npy", mmap_mode="r+")

    @classmethod
    def open(cls, root: Path, description: dict[str, Any], n: int, dim: int) -> "FeatureCache":
        """Open the cache for ``description``, creating it, or rebuilding it when it is stale or corrupt."""
        folder = Path(root).expanduser() / cache_key(description)
        if folder.exists():
            problem = cls._problem(folder, description, n, dim)
            if problem is None:
                return cls(folder)
            log(f"rebuilding {folder.name} ({description['provider']}): {problem}")
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float32, shape=(n, dim)).flush()
        np.save(tmp / "filled.npy", np.zeros(n, dtype=np.uint8))
        _write_json(tmp / "meta.json", {"format": FORMAT, "description": description, "n": n, "dim": dim,
                                        "complete": False})
        os.replace(tmp, folder)
        return cls(folder)

    @staticmethod
    def _problem(folder: Path, description: dict, n: int, dim: int) -> Optional[str]:
        try:
            meta = json.loads((folder / "meta.json").read_text())
            feats = np.load(folder / "features.npy", mmap_mode="r")
            filled = np.load(folder / "filled.npy", mmap_mode="r")
        except Exception as exc:
            return f"unreadable ({type(exc).__name__})"
        if meta.get("format") != FORMAT:
            return "not an mvmr cache of this format"
        if meta.get("description") != description:
            return "stale: made for other provider settings or data"
        if feats.shape != (n, dim) or feats.dtype != np.float32 or filled.shape != (n,):
            return f"wrong shape {feats.shape} for ({n}, {dim})"
        if meta.get("complete") and (not filled.all() or _crc(folder / "features.npy") != meta.get("crc32")):
            return "corrupt: checksum mismatch"
        return None

    @property
    def complete(self) -> bool:
        return bool(self.meta.get("complete"))

    def missing(self, index: np.ndarray) -> np.ndarray:
        return self.filled[index] == 0

    def read(self, index: np.ndarray) -> np.ndarray:
        return np.asarray(self.features[index])

    def write(self, index: np.ndarray, values: np.ndarray) -> None:
        """Store rows, flush them, then mark them filled; seal the cache with a checksum when every row is in."""
        if len(index) == 0:
            return
        if not np.isfinite(values).all():
            raise NonFiniteError(f"provider '{self.meta['description']['provider']}' returned NaN or Inf features; "
                                 f"nothing was cached: fix the provider (its features must be finite)")
        self.features[index] = values.astype(np.float32, copy=False)
        self.features.flush()
        self.filled[index] = 1
        self.filled.flush()
        if not self.complete and self.filled.all():
            self.meta.update(complete=True, crc32=_crc(self.folder / "features.npy"))
            _write_json(self.folder / "meta.json", self.meta)


class CachedFeatures:
    """A method's ``feature_source``: cached rows when all are present, else compute, store the missing, return."""

    def __init__(self, providers: dict[str, Any], caches: dict[str, FeatureCache]) -> None:
        self.providers, self.caches = providers, caches

    def __call__(self, name: str, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        cache = self.caches.get(name)
        if cache is None:
            return self.providers[name](images)
        idx = index.cpu().numpy()
        missing = cache.missing(idx)
        if missing.any():
            feats = self.providers[name](images)
            cache.write(idx[missing], feats[torch.from_numpy(missing).to(feats.device)].float().cpu().numpy())
            return feats
        return torch.from_numpy(cache.read(idx)).to(images.device)


def open_caches(providers: dict[str, Any], identity: dict[str, Any], n: int, image_size: int,
                root: Path) -> dict[str, FeatureCache]:
    """One cache per deterministic provider."""
    return {name: FeatureCache.open(root, describe(p, identity), n, p.output_dim(image_size, image_size))
            for name, p in providers.items() if p.deterministic}


def is_cache_folder(path: Path) -> bool:
    """True only for what mvmr created: a real folder (not a symlink) named by a cache key whose meta.json says it
    is an mvmr feature cache, or one of FeatureCache.open's temporary folders."""
    if path.is_symlink() or not path.is_dir():
        return False
    if TEMP_PATTERN.match(path.name):
        return True
    if not KEY_PATTERN.match(path.name) or (path / "meta.json").is_symlink():
        return False
    try:
        return json.loads((path / "meta.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def clear_caches(root: Path, dry_run: bool = False) -> list[Path]:
    """Remove (or with ``dry_run`` only list) the mvmr cache folders directly inside ``root``; nothing else."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MVMRError(f"cache folder '{root}' does not exist or is not a folder; pass --dir with a cache folder")
    found = sorted(p for p in root.iterdir() if is_cache_folder(p))
    if not dry_run:
        for p in found:
            shutil.rmtree(p)
    return found


def cache_entries(root: Path) -> list[dict[str, Any]]:
    """Summary of every cache folder under ``root``."""
    out = []
    for meta_path in sorted(p / "meta.json" for p in Path(root).expanduser().glob("*") if is_cache_folder(p)
                            and not TEMP_PATTERN.match(p.name)):
        try:
            meta = json.loads(meta_path.read_text())
            filled = np.load(meta_path.parent / "filled.npy", mmap_mode="r")
            size = sum(f.stat().st_size for f in meta_path.parent.iterdir())
            d = meta["description"]
            out.append({"key": meta_path.parent.name, "provider": d["provider"], "dataset": d["dataset"]["name"],
                        "split": d["dataset"]["split"], "n": meta["n"], "dim": meta["dim"],
                        "filled": float(filled.mean()), "complete": meta["complete"], "mb": size / 2**20})
        except Exception as exc:
            out.append({"key": meta_path.parent.name, "error": f"unreadable ({type(exc).__name__})"})
    return out


def build_caches(recipe) -> list[str]:
    """Fill the caches of a recipe's deterministic providers over its training images (``mvmr cache build``).
    Under torchrun, process r computes every world-th batch starting at r."""
    from torch.utils.data import DataLoader

    from . import distributed as dist_utils
    from .data import OneView, build_dataset, dataset_identity
    from .registry import build_providers

    device = dist_utils.setup(recipe.trainer.device)
    rank, world = dist_utils.rank(), dist_utils.world_size()
    providers = {name: p.to(device) for name, p in build_providers(recipe).items()}
    base = build_dataset(recipe.data, "ssl")
    args = (providers, dataset_identity(recipe.data, "ssl", len(base)), len(base), recipe.data.image_size,
            Path(recipe.trainer.cache_dir))
    caches = open_caches(*args) if rank == 0 else None
    dist_utils.barrier()
    caches = caches if caches is not None else open_caches(*args)
    source = CachedFeatures(providers, caches)
    todo = [n for n, c in caches.items() if not c.complete]
    if todo:
        batch = recipe.optim.batch_size
        loader = DataLoader(OneView(base, recipe.data.image_size), batch_size=batch,
                            num_workers=recipe.trainer.num_workers)
        for b, (images, _) in enumerate(loader):
            if b % world != rank:
                continue
            index = torch.arange(b * batch, b * batch + len(images))
            for name in todo:
                if caches[name].missing(index.numpy()).any():
                    source(name, images.to(device), index)
    dist_utils.barrier()
    caches = {n: FeatureCache(c.folder) for n, c in caches.items()}  # re-read: other processes may have sealed
    return [f"{name}: {c.folder} ({'complete' if c.complete else 'partial'})" for name, c in caches.items()]
