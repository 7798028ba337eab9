"""A run's set-up and state: recipe → data → views → method → optimiser, the step counters, and the checkpoint
round trip. The loop (``loop.py``) trains it; callbacks (``callbacks.py``) log, save and evaluate it.

Determinism: the shuffle of epoch e comes from a generator seeded with (seed, e), and each image's augmentation
from a generator seeded with (seed, e, index), so a resumed run sees exactly the batches an uninterrupted one sees.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

import importlib.util

import torch
from torch.utils.data import DataLoader, Sampler

from .. import distributed as dist_utils
from ..bank import check_bank, open_banks, views_identity
from ..cache import CachedFeatures, open_caches
from ..checkpoint import read_checkpoint, save_checkpoint
from ..config import Recipe, build_recipe
from ..data import Views, augment_on, augment_spec, build_dataset, collate, dataset_identity, portable_identity
from ..errors import ConfigError, MVMRError
from ..guards import FiniteMonitor, ignore_interrupts_in_worker
from ..methods import Method, build_method
from ..provider_terms import reads_cache
from ..registry import methods
from ..syncbn import convert_batchnorm
from ..paths import check_writable_folder
from .lock import RunLock, check_out_dir
from .optim import build_optimizer, effective_precision, seed_everything
from .resume import MOVABLE_KEYS, recipe_differences, show_keys


COMPILE_OPTIONS: dict[str, Any] = {}  # torch.compile's keyword arguments under trainer.compile (its defaults: inductor)


class EpochSampler(Sampler[int]):
    """This process's share of epoch e's permutation (generator seeded with (seed, e)), from global position
    ``start``. Global batch t is perm[t·B : (t+1)·B]; process r takes its r-th slice of b = B / world images, so
    the processes' batches, concatenated in rank order, are exactly the one-process batch."""

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world: int = 1,
                 local_batch: int = 1) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start
        self.rank, self.world, self.local_batch = rank, world, local_batch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)[self.start:]
        global_batch = self.local_batch * self.world
        steps = len(perm) // global_batch
        mine = perm[: steps * global_batch].view(steps, self.world, self.local_batch)[:, self.rank]
        return iter(mine.reshape(-1).tolist())

    def __len__(self) -> int:
        return (self.n - self.start) // (self.local_batch * self.world) * self.local_batch


def feature_cache(method: Method, recipe: Recipe, base, identity: Optional[dict] = None,
                  views: Optional[dict] = None) -> CachedFeatures:
    """Deterministic providers read their original-view features from the on-disk cache, filling it as they go,
    and banked terms their augmented-view outputs from their bank (``views``: what decides the views, see
    ``bank.views_identity``). Under torchrun the main process creates the folders first; every process then fills
    its own rows."""
    terms = method.provider_terms
    providers = {n: p for n, p in terms.providers.items() if reads_cache(terms.configs[n])}
    banked = {n: p for n, p in terms.providers.items() if terms.configs[n].bank and terms.configs[n].weight != 0}
    identity = identity or dataset_identity(recipe.data, "ssl", base)
    root = Path(recipe.trainer.cache_dir)
    args = (providers, identity, len(base), recipe.data.image_size, root)

    def banks():
        return open_banks(banked, terms.configs, identity, views, len(base), recipe.data.image_size, root)
    opened = (open_caches(*args), banks()) if dist_utils.is_main() else None
    dist_utils.barrier()
    caches, bank = opened if opened is not None else (open_caches(*args), banks())
    return CachedFeatures({**providers, **banked}, caches, bank)


class Run:
    """One training run in a folder: recipe.yaml, metrics.jsonl, checkpoints/last.pt, summary.json.

    Set-up is a sequence of named steps that write nothing (validate, data, model, optimiser, resume state), so a
    refused recipe leaves no file behind; :meth:`claim` then takes the folder (a lock held until :meth:`close`)
    and opens the feature caches, the run's first writes."""

    def __init__(self, recipe: Recipe, out_dir: Path, resume: bool = False, source: Optional[Path] = None,
                 resume_command: Optional[str] = None, state: Optional[dict[str, Any]] = None) -> None:
        self.recipe, self.out = recipe, Path(out_dir)
        self.ckpt_path = self.out / "checkpoints" / "last.pt"
        self.resume_command = resume_command or f"mvmr pretrain {self.out / 'recipe.yaml'} --out {self.out} --resume"
        # The recipe file as it was when the run started: --resume refuses it once edited.
        self.source = None
        if source is not None and Path(source).is_file():
            self.source = {"path": str(Path(source).resolve()), "text": Path(source).read_text()}
        self.method_cls = methods.get(recipe.method)  # looked up once; build_method below is handed it
        state = self._validate(resume, state)
        self._build_data()
        self._build_model()
        self._build_optimizer()
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.summary: dict[str, Any] = {}
        self.metrics_bytes = 0  # length of metrics.jsonl at the last checkpoint: a resume cuts it back to that
        self.resumed = state is not None
        if state is not None:
            self._check_moved_data(state)
            self._load(state)
        self.lock = RunLock(self.out)

    # set-up steps -------------------------------------------------------------------------------------------------
    def _validate(self, resume: bool, state: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
        """Everything checkable before data and model: the folders, the trainer settings, the resume state (read
        from the checkpoint and compared with the recipe here, unless ``state`` was read and checked already)."""
        t = self.recipe.trainer
        check_out_dir(self.out)
        if t.use_cache:
            check_writable_folder(Path(t.cache_dir), "trainer.cache_dir")
        if t.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError("trainer.tensorboard=true needs tensorboard: pip install 'mvmr[tensorboard]' "
                              "(or set trainer.tensorboard=false)")
        state = state if resume and state is not None else self._check_resume(resume)
        self.device = dist_utils.setup(t.device)
        self.rank, self.world, self.main = dist_utils.rank(), dist_utils.world_size(), dist_utils.is_main()
        o = self.recipe.optim
        if o.batch_size % self.world:
            raise ConfigError(f"optim.batch_size={o.batch_size} (the global batch) must divide among {self.world} processes")
        self.local_batch = o.batch_size // self.world
        if o.accumulate > 1 and self.method_cls.encode is Method.encode:
            raise ConfigError(f"optim.accumulate={o.accumulate}: method '{self.recipe.method}' does not split into "
                              f"encode/objective, which exact accumulation needs; use optim.accumulate=1")
        if self.local_batch % o.accumulate:
            raise ConfigError(f"optim.batch_size={o.batch_size} gives {self.local_batch} images per process, which "
                              f"optim.accumulate={o.accumulate} does not split into equal micro-batches")
        self.bank_period = check_bank(self.recipe)
        seed_everything(t.seed)
        return state

    def _build_data(self) -> None:
        """The training images and the views the method declares; the schedule in steps."""
        recipe, o = self.recipe, self.recipe.optim
        self.base = build_dataset(recipe.data, "ssl")
        specs, where = self.method_cls.view_specs(recipe), augment_on(recipe.data, self.device)
        self.dataset = Views(self.base, recipe.data.image_size, augment_spec(recipe.data), seed=recipe.trainer.seed,
                             specs=specs, augment_on=where)
        self.views_identity = views_identity(recipe, specs, where)
        if len(self.dataset) < o.batch_size:
            raise ConfigError(f"optim.batch_size={o.batch_size} exceeds the {len(self.dataset)} training images")
        self.steps_per_epoch = len(self.dataset) // o.batch_size  # batch_size: the global batch of one step
        self.total_steps = self.steps_per_epoch * o.epochs
        self.last_step = min(self.total_steps, recipe.trainer.max_steps or self.total_steps)
        self.warmup_steps = int(round(o.warmup_epochs * self.steps_per_epoch))
        self.data_identity = dataset_identity(recipe.data, "ssl", self.base)

    def _build_model(self) -> None:
        """The method (student, providers, objective) on the device; DDP around it under torchrun."""
        t = self.recipe.trainer
        self.method: Method = build_method(self.recipe, self.method_cls).to(self.device)
        self.monitor = FiniteMonitor(deferred=self.device.type != "cpu")
        self.method.monitor = self.monitor
        channels_last = self.recipe.student.channels_last
        self.channels_last = self.device.type == "cuda" if channels_last is None else channels_last
        if self.channels_last:
            self.method.student.to(memory_format=torch.channels_last)
        if t.compile:  # in place (the state_dict keys stay the plain ones); embed() and forward() both use them
            self.method.student.backbone.compile(**COMPILE_OPTIONS)
            self.method.student.projector.compile(**COMPILE_OPTIONS)
        self.model: torch.nn.Module = self.method
        if self.world > 1:
            if t.sync_bn is not False:  # on by default: BatchNorm sees the global batch, as one process would
                self.method = convert_batchnorm(self.method, self.device.type)
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.method, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _build_optimizer(self) -> None:
        t = self.recipe.trainer
        self.optimizer = build_optimizer(self.method, self.recipe.optim)
        self.precision = effective_precision(self.device, t.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.device.type == "cuda" and self.precision == "fp16")

    # the folder ---------------------------------------------------------------------------------------------------
    def claim(self) -> None:
        """Lock the run folder for this run (refusing one that another run holds) and open the feature caches."""
        if self.main:
            self.lock.acquire()
            if not self.resumed and self.ckpt_path.is_file():  # a run finished there since the first check
                self.lock.release()
                raise ConfigError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
        if self.recipe.trainer.use_cache and not self.recipe.data.mixup:  # mixed images have no cached features
            try:
                self.method.feature_source = feature_cache(self.method, self.recipe, self.base, self.data_identity,
                                                           self.views_identity)
            except MVMRError:  # e.g. a bank folder built for other settings: the folder is released as found
                self.close()
                raise
            except OSError as exc:
                self.close()
                raise ConfigError(f"trainer.cache_dir '{self.recipe.trainer.cache_dir}' cannot be written "
                                  f"({exc.strerror or exc}); choose a writable folder or trainer.use_cache=false") from None

    def close(self) -> None:
        """Release the run folder."""
        self.lock.release()

    @property
    def progress(self) -> float:
        """Fraction of the schedule done, 0 → 1 (methods ramp their own schedules on it)."""
        return self.step / self.total_steps

    def _check_resume(self, resume: bool) -> Optional[dict[str, Any]]:
        if not resume:
            if self.ckpt_path.is_file():
                raise ConfigError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
            return None
        if not self.ckpt_path.is_file():
            raise ConfigError(f"--resume: no checkpoint at {self.ckpt_path}; start a new run without --resume")
        state = read_checkpoint(self.ckpt_path)
        saved = build_recipe(state["recipe"], source=str(self.ckpt_path)).to_dict()
        diff = [k for k in recipe_differences(saved, self.recipe.to_dict()) if k not in MOVABLE_KEYS]
        if diff:
            raise ConfigError(f"--resume: the recipe differs from the one saved in {self.ckpt_path} in "
                              f"{show_keys(diff)}; resume with the saved recipe ({self.out / 'recipe.yaml'})")
        return state

    def _check_moved_data(self, state: dict[str, Any]) -> None:
        """A resume may point ``data.root`` elsewhere (the data moved) only when the dataset there is the same:
        name, split, length and the files' relative paths and sizes."""
        then, now = state["recipe"]["data"]["root"], self.recipe.data.root
        if then == now:
            return
        saved, here = state.get("data_identity"), portable_identity(self.data_identity)
        if saved != here:
            what = ("its checkpoint holds no dataset identity to compare" if saved is None else
                    ", ".join(f"{k} {saved.get(k)} vs {here.get(k)}" for k in here if saved.get(k) != here.get(k)))
            raise ConfigError(f"--resume with data.root={now}: the data there is not the data the run started on at "
                              f"{then} ({what}); point data.root at a copy of the same files")

    def loader(self) -> DataLoader:
        """This epoch's batches from the current position, as named ``Batch``es."""
        o, t = self.recipe.optim, self.recipe.trainer
        # With a teacher bank the views cycle: epoch e shows (and reads the banked outputs of) epoch e mod K.
        self.dataset.epoch = self.epoch % self.bank_period if self.bank_period else self.epoch
        if isinstance(self.method.feature_source, CachedFeatures):
            self.method.feature_source.slot = self.dataset.epoch
        start = self.batch_in_epoch * o.batch_size
        sampler = EpochSampler(len(self.dataset), t.seed, self.epoch, start, self.rank, self.world, self.local_batch)
        return DataLoader(self.dataset, batch_size=self.local_batch, sampler=sampler, drop_last=True,
                          num_workers=t.num_workers, pin_memory=self.device.type == "cuda", collate_fn=collate,
                          worker_init_fn=ignore_interrupts_in_worker if t.num_workers > 0 else None)

    # checkpoints
    def state(self) -> dict[str, Any]:
        return {"recipe": self.recipe.to_dict(), "method": self.method.trainable_state(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "summary": self.summary, "torch_rng": torch.get_rng_state(), "source": self.source,
                "metrics_bytes": self.metrics_bytes, "data_identity": portable_identity(self.data_identity)}

    def save(self) -> None:
        """Check everything queued for finiteness, then write the checkpoint atomically (refusing NaN weights)."""
        self.monitor.flush()
        if self.main:
            save_checkpoint(self.state(), self.ckpt_path)

    def _load(self, state: dict[str, Any]) -> None:
        self.method.load_trainable_state(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.summary = state["summary"]
        self.metrics_bytes = int(state.get("metrics_bytes", 0))
        self.source = state.get("source")
        torch.set_rng_state(state["torch_rng"])
