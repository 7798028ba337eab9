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
from .errors import NonFiniteError

ORIGINAL_VIEW = "resize-short-side+center-crop/v1"
FORMAT = "mvmr-feature-cache/1"  # written into every meta.json: `cache clear` removes only folders that carry it
KEY_PATTERN = re.compile(r"^[0-9a-f]{24}$")
TEMP_PATTERN = re.compile(r"^\.[0-9a-f]{24}\.[A-Za-z0-9_]+$")  # FeatureCache.open's mkdtemp names
MARKER = ".mvmr-feature-cache"  # written first into every cache folder: what `cache clear` looks for in a temporary
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
    def open(cls, root: Path, description: dict[str, Any], n: int, dim: int, dtype: str = "float32") -> "FeatureCache":
        """Open the cache for ``description``, creating it, or rebuilding it when it is stale or corrupt. Rows are
        stored as ``dtype`` (float32: exact; float16: half the disk, for teacher banks)."""
        folder = Path(root).expanduser() / cache_key(description)
        if folder.exists():
            problem = cls._problem(folder, description, n, dim, dtype)
            if problem is None:
                return cls(folder)
            log(f"rebuilding {folder.name} ({description['provider']}): {problem}")
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        (tmp / MARKER).write_text(FORMAT + "\n")
        np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.dtype(dtype), shape=(n, dim)).flush()
        np.save(tmp / "filled.npy", np.zeros(n, dtype=np.uint8))
        _write_json(tmp / "meta.json", {"format": FORMAT, "description": description, "n": n, "dim": dim,
                                        "complete": False})
        os.replace(tmp, folder)
        return cls(folder)

    @staticmethod
    def _problem(folder: Path, description: dict, n: int, dim: int, dtype: str = "float32") -> Optional[str]:
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
        if feats.shape != (n, dim) or feats.dtype != np.dtype(dtype) or filled.shape != (n,):
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
        return np.asarray(self.features[index], dtype=np.float32)

    def write(self, index: np.ndarray, values: np.ndarray) -> None:
        """Store rows, flush them, then mark them filled; seal the cache with a checksum when every row is in."""
        if len(index) == 0:
            return
        if not np.isfinite(values).all():
            raise NonFiniteError(f"provider '{self.meta['description']['provider']}' returned NaN or Inf features; "
                                 f"nothing was cached: fix the provider (its features must be finite)")
        values = values.astype(self.features.dtype, copy=False)
        if not np.isfinite(values).all():
            raise NonFiniteError(f"provider '{self.meta['description']['provider']}' returned features beyond the range "
                                 f"of {self.features.dtype}; nothing was cached: store them as float32")
        self.features[index] = values
        self.features.flush()
        self.filled[index] = 1
        self.filled.flush()
        if not self.complete and self.filled.all():
            self.meta.update(complete=True, crc32=_crc(self.folder / "features.npy"))
            _write_json(self.folder / "meta.json", self.meta)


class CachedFeatures:
    """A method's ``feature_source``: cached rows where present; the provider computes (and the cache stores) only
    the missing ones.
    ``banks`` (provider name -> ``TeacherBank``) serve terms on the augmented view, from the banked epoch ``slot``."""

    def __init__(self, providers: dict[str, Any], caches: dict[str, FeatureCache],
                 banks: Optional[dict[str, Any]] = None) -> None:
        self.providers, self.caches, self.banks = providers, caches, banks or {}
        self.slot = 0  # the banked epoch whose views the data shows now (the engine sets it each epoch)

    def __call__(self, name: str, images: torch.Tensor, index: torch.Tensor, view: str = "original") -> torch.Tensor:
        cache = self.banks[name].slot(self.slot) if view == "augmented" else self.caches.get(name)
        if cache is None:
            return self.providers[name](images)
        idx = index.cpu().numpy()
        known = idx >= 0  # -1: another image stood in for an unreadable one; computed, never cached
        missing = ~known
        missing[known] = cache.missing(idx[known])
        if not missing.any():
            return torch.from_numpy(cache.read(idx)).to(images.device)
        rows = torch.from_numpy(missing).to(images.device)
        fresh = self.providers[name](images if missing.all() else images[rows])  # the missing rows only
        cacheable = torch.from_numpy(known[missing]).to(fresh.device)  # a stand-in's row is never cached
        cache.write(idx[missing & known], fresh[cacheable].float().cpu().numpy())
        if missing.all():
            return fresh
        out = torch.empty((len(idx), *fresh.shape[1:]), dtype=fresh.dtype, device=fresh.device)
        out[rows], out[~rows] = fresh, torch.from_numpy(cache.read(idx[~missing])).to(fresh)
        return out

    def reads(self, name: str, view: str) -> bool:
        """Whether ``name``'s features on ``view`` come through here (the original-view cache, or its bank)."""
        return name in (self.banks if view == "augmented" else self.caches)


def open_caches(providers: dict[str, Any], identity: dict[str, Any], n: int, image_size: int,
                root: Path) -> dict[str, FeatureCache]:
    """One cache per deterministic provider."""
    return {name: FeatureCache.open(root, describe(p, identity), n, p.output_dim(image_size, image_size))
            for name, p in providers.items() if p.deterministic}
