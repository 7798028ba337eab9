"""The teacher bank: FKD's idea (Shen & Xing, 2022) on mvmr's deterministic views. A term with ``view: augmented``
and ``bank: K`` computes its teacher's outputs on the views of K epochs once and keeps them in the feature cache;
the run's augmentations then cycle with period K (epoch e shows the views of epoch e mod K: image i's view depends
only on (seed, e mod K, i)), so from epoch K on the teacher never runs and a step costs what a step without a
teacher costs, while teacher and student still see the same view (Beyer et al.'s consistent teaching).

Each banked epoch is one ``FeatureCache`` (rows flushed before they are marked filled, sealed with a checksum), keyed
by the teacher (name, params, weights: its preprocessing included), the dataset, the views (every augmentation
setting, the seed, where the augmentation runs), the period, the epoch and the storage dtype: a run with another
setting never reads a bank built for different views, and a bank folder whose record disagrees is refused. It fills
as a run goes (the first K epochs compute and store), or ahead of training with ``mvmr cache build``, resumable.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from .cache import FeatureCache, cache_key, describe
from .errors import ConfigError, MVMRError

BANK_VIEW = "augmented-views/v1"


def bank_period(recipe) -> int:
    """K of the recipe's banked terms (0: none). Every banked term must share it, since it sets the data's cycle."""
    periods = {c.bank for c in recipe.providers.values() if c.bank and c.weight != 0}
    return periods.pop() if len(periods) == 1 else (0 if not periods else -1)


def check_bank(recipe) -> int:
    """Refuse, before anything is written, a bank that cannot do what it says; return the period."""
    for name, cfg in recipe.providers.items():
        if not cfg.bank:
            continue
        if cfg.view != "augmented":
            raise ConfigError(f"providers.{name}.bank={cfg.bank} banks the teacher's outputs on the student's "
                              f"augmented views, so it needs view: augmented (a view: {cfg.view} term reads the "
                              f"original view, which the feature cache holds already); set bank: 0 or view: augmented")
        if cfg.representation == "spatial":
            raise ConfigError(f"providers.{name}.bank: feature maps are not banked; use bank: 0 for a spatial term")
    period = bank_period(recipe)
    if period < 0:
        banks = ", ".join(f"{n}: {c.bank}" for n, c in recipe.providers.items() if c.bank)
        raise ConfigError(f"banked terms set the data's cycle, so they must share one bank period ({banks}); give "
                          f"them the same bank")
    if period and not recipe.trainer.use_cache:
        raise ConfigError(f"providers bank: {period} keeps the teacher's outputs in the feature cache; set "
                          f"trainer.use_cache=true or bank: 0")
    if period and recipe.data.mixup:
        raise ConfigError(f"providers bank: {period}: a mixed image is in no bank (mixup draws new pairs every "
                          f"step); set data.mixup=0 or bank: 0")
    return period


def views_identity(recipe, specs: list, augment_on: str) -> dict[str, Any]:
    """Everything that decides the augmented views: the seed, each view's size and augmentation, where it runs."""
    views = {"seed": recipe.trainer.seed, "augment_on": augment_on,
             "views": [[size, dataclasses.asdict(spec)] for size, spec in specs]}
    return json.loads(json.dumps(views))  # as meta.json holds it (tuples as lists), so the two compare equal


def bank_description(provider, dataset: dict[str, Any], views: dict[str, Any], period: int, epoch: int,
                     dtype: str) -> dict[str, Any]:
    """The key of one banked epoch: the provider's cache description with the views in place of the original view."""
    return {**describe(provider, dataset), "view": BANK_VIEW, "views": views, "period": period, "epoch": epoch,
            "dtype": dtype}


class TeacherBank:
    """One provider's outputs on the augmented view of K epochs: ``slot(e)`` is the cache of epoch e mod K."""

    def __init__(self, name: str, caches: list[FeatureCache]) -> None:
        self.name, self.caches = name, caches

    def slot(self, epoch: int) -> FeatureCache:
        return self.caches[epoch % len(self.caches)]

    @property
    def complete(self) -> bool:
        return all(c.complete for c in self.caches)

    def megabytes(self) -> float:
        return sum(f.stat().st_size for c in self.caches for f in c.folder.iterdir()) / 2**20

    @classmethod
    def open(cls, name: str, provider, dataset: dict[str, Any], views: dict[str, Any], period: int, dtype: str,
             n: int, dim: int, root: Path) -> "TeacherBank":
        caches = []
        for epoch in range(period):
            description = bank_description(provider, dataset, views, period, epoch, dtype)
            folder = Path(root).expanduser() / cache_key(description)
            refuse_other(folder, description, name)
            caches.append(FeatureCache.open(root, description, n, dim, dtype))
        return cls(name, caches)


def refuse_other(folder: Path, description: dict[str, Any], name: str) -> None:
    """A bank folder under this key whose record names other views, seed, teacher or preprocessing is refused, never
    rebuilt over (it cost a teacher pass per image and view) nor read."""
    from .cache import FORMAT

    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return  # absent or unreadable: FeatureCache.open creates or rebuilds it
    held = meta.get("description") if meta.get("format") == FORMAT else None
    if not isinstance(held, dict) or held == description:
        return
    differ = sorted(k for k in set(held) | set(description) if held.get(k) != description.get(k))
    raise MVMRError(f"teacher bank {folder} ({name}) was built for another {'/'.join(differ)}; it is not read: move "
                    f"it away or run 'mvmr cache clear'")


def open_banks(providers: dict[str, Any], configs: dict[str, Any], dataset: dict[str, Any], views: dict[str, Any],
               n: int, image_size: int, root: Path) -> dict[str, TeacherBank]:
    """One bank per banked term's provider."""
    for name, p in providers.items():
        if configs[name].bank and not p.deterministic:
            raise ConfigError(f"providers.{name}.bank: provider '{name}' is not deterministic, so its outputs cannot "
                              f"be banked; set bank: 0")
    return {name: TeacherBank.open(name, p, dataset, views, configs[name].bank, configs[name].bank_dtype, n,
                                   p.output_dim(image_size, image_size), root)
            for name, p in providers.items() if configs[name].bank}


def fill_bank(bank: TeacherBank, provider, dataset, period: int, batch_size: int, device: torch.device,
              num_workers: int = 0, rank: int = 0, world: int = 1,
              progress: Optional[Callable[[int, float], None]] = None) -> int:
    """Compute the rows a bank misses: every image's augmented view in each of its ``period`` epochs (the views a
    run shows), in batches of ``batch_size``; under torchrun process r takes every world-th batch. Finished rows
    are skipped, so an interrupted build continues where it stopped. Returns the images computed."""
    from torch.utils.data import DataLoader, Subset

    from .data import collate

    done = 0
    for epoch in range(period):
        cache = bank.slot(epoch)
        todo = np.flatnonzero(cache.missing(np.arange(len(dataset))))
        mine = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)][rank::world]
        if not mine:
            continue
        dataset.epoch = epoch
        loader = DataLoader(Subset(dataset, np.concatenate(mine).tolist()), batch_size=batch_size,
                            num_workers=num_workers, collate_fn=collate)
        for batch in loader:
            started = time.perf_counter()
            batch = batch.to(device)
            index = batch.index.cpu().numpy()
            feats = provider(batch.views[0].float())
            known = index >= 0  # -1: a stand-in for an unreadable image, never banked
            cache.write(index[known], feats.float().cpu().numpy()[known])
            done += len(index)
            if progress is not None:
                progress(len(index), time.perf_counter() - started)
    return done
