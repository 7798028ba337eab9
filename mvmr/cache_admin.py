"""Cache housekeeping: which folders are mvmr's caches (``cache info``, ``cache clear``), and filling a recipe's
caches ahead of training (``cache build``)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cache import FORMAT, KEY_PATTERN, MARKER, TEMP_PATTERN, CachedFeatures, FeatureCache, open_caches
from .errors import MVMRError


CLEARING = ".mvmr-clearing."  # where `cache clear` moves caches before deleting them


def is_cache_folder(path: Path) -> bool:
    """True only for what mvmr created: a real folder (not a symlink) named by a cache key whose meta.json says it
    is an mvmr feature cache, or one of FeatureCache.open's temporary folders (named like one and holding mvmr's
    marker file: a user's folder that only looks like one stays)."""
    if path.is_symlink() or not path.is_dir():
        return False
    if path.name.startswith(CLEARING):  # left by a `cache clear` killed while deleting: only caches inside
        return all(is_cache_folder(p) for p in path.iterdir())
    if TEMP_PATTERN.match(path.name):
        marker = path / MARKER
        try:
            return not marker.is_symlink() and marker.is_file() and marker.read_text().strip() == FORMAT
        except OSError:
            return False
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
    if dry_run or not found:
        return found
    # Move every cache out of sight first (a rename needs the parent writable): if that fails, nothing is deleted.
    def refuse(exc: OSError) -> MVMRError:
        return MVMRError(f"cache clear: cannot remove caches from '{root}' ({exc.strerror or exc}); nothing was "
                         f"deleted: fix the folder's permissions")
    try:
        trash = Path(tempfile.mkdtemp(dir=root, prefix=CLEARING))
    except OSError as exc:
        raise refuse(exc) from None
    moved: list[Path] = []
    try:
        for p in found:
            os.rename(p, trash / p.name)
            moved.append(p)
    except OSError as exc:
        for p in moved:
            os.rename(trash / p.name, p)
        trash.rmdir()
        raise refuse(exc) from None
    shutil.rmtree(trash)
    return found


def cache_entries(root: Path) -> list[dict[str, Any]]:
    """Summary of every cache folder under ``root``."""
    out = []
    for meta_path in sorted(p / "meta.json" for p in Path(root).expanduser().glob("*") if is_cache_folder(p)
                            and not TEMP_PATTERN.match(p.name) and not p.name.startswith(CLEARING)):
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
    from .provider_terms import reads_cache
    from .registry import build_providers

    from .bank import check_bank

    check_bank(recipe)  # a bank that cannot do what it says is refused before anything is written
    device = dist_utils.setup(recipe.trainer.device)
    rank, world = dist_utils.rank(), dist_utils.world_size()
    # A banked term's teacher also gets its original view cached: the bank holds every view a run shows, plus that.
    cached = {n: c for n, c in recipe.providers.items() if reads_cache(c) or (c.bank and c.weight != 0)}
    providers = {name: p.to(device) for name, p in build_providers(
        {n: c.params for n, c in cached.items()}, recipe.trainer.seed, {n: c.provider for n, c in cached.items()}).items()}
    base = build_dataset(recipe.data, "ssl")
    args = (providers, dataset_identity(recipe.data, "ssl", base), len(base), recipe.data.image_size,
            Path(recipe.trainer.cache_dir))
    caches = open_caches(*args) if rank == 0 else None
    dist_utils.barrier()
    caches = caches if caches is not None else open_caches(*args)
    source = CachedFeatures(providers, caches)
    todo = [n for n, c in caches.items() if not c.complete]
    if todo:
        batch = recipe.optim.batch_size
        loader = DataLoader(OneView(base, recipe.data.image_size, indexed=True), batch_size=batch,
                            num_workers=recipe.trainer.num_workers)
        for b, (images, _, index) in enumerate(loader):
            if b % world != rank:
                continue
            for name in todo:
                idx = index.numpy()
                if (idx < 0).any() or caches[name].missing(idx[idx >= 0]).any():
                    source(name, images.to(device), index)
    dist_utils.barrier()
    caches = {n: FeatureCache(c.folder) for n, c in caches.items()}  # re-read: other processes may have sealed
    lines = [f"{name}: {c.folder} ({'complete' if c.complete else 'partial'})" for name, c in caches.items()]
    return lines + build_banks(recipe, base, providers, device, rank, world)


def build_banks(recipe, base, built: dict, device: torch.device, rank: int = 0, world: int = 1) -> list[str]:
    """Fill the teacher banks of a recipe's ``bank: K`` terms (their providers among ``built``): every image's view
    in each of K epochs, with a progress bar (images per second); finished rows are kept, so an interrupted build
    continues."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from . import distributed as dist_utils
    from .bank import check_bank, fill_bank, open_banks, views_identity
    from .data import Views, augment_on, augment_spec, dataset_identity
    from .registry import methods

    period = check_bank(recipe)
    if not period:
        return []
    configs = {n: c for n, c in recipe.providers.items() if c.bank and c.weight != 0}
    providers = {n: built[n] for n in configs}
    specs, where = methods.get(recipe.method).view_specs(recipe), augment_on(recipe.data, device)
    views = Views(base, recipe.data.image_size, augment_spec(recipe.data), seed=recipe.trainer.seed, specs=specs,
                  augment_on=where)
    args = (providers, configs, dataset_identity(recipe.data, "ssl", base), views_identity(recipe, specs, where),
            len(base), recipe.data.image_size, Path(recipe.trainer.cache_dir))
    banks = open_banks(*args) if rank == 0 else None
    dist_utils.barrier()
    banks = banks if banks is not None else open_banks(*args)
    lines = []
    for name, bank in banks.items():
        todo = sum(int(c.missing(np.arange(len(base))).sum()) for c in bank.caches)
        columns = (TextColumn(f"bank {name}"), BarColumn(), TextColumn("{task.completed}/{task.total} views"),
                   TextColumn("{task.fields[rate]:.0f} img/s"), TimeRemainingColumn())
        started = time.perf_counter()
        with Progress(*columns, disable=not recipe.trainer.progress or rank != 0) as bar:
            task, seen = bar.add_task(name, total=todo, rate=0.0), [0]

            def advance(images: int, seconds: float) -> None:
                seen[0] += images
                bar.update(task, advance=images, rate=seen[0] / max(time.perf_counter() - started, 1e-9))
            done = fill_bank(bank, providers[name], views, period, recipe.eval.batch_size, device,
                             recipe.trainer.num_workers, rank, world, advance)
        dist_utils.barrier()
        bank = type(bank)(name, [FeatureCache(c.folder) for c in bank.caches])  # re-read: others may have sealed
        rate = done / max(time.perf_counter() - started, 1e-9)
        lines.append(f"{name}: teacher bank of {period} epochs ({'complete' if bank.complete else 'partial'}), "
                     f"{done} views computed here ({rate:.0f} img/s), {bank.megabytes():.1f} MB on disk in "
                     f"{bank.caches[0].folder.parent}")
    return lines
