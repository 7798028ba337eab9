"""Small parts the training loop calls: the run folder, metrics (metrics.jsonl, TensorBoard), the progress bar,
online k-NN and checkpoints. Each is a ``Callback`` with hooks; the loop calls them in list order."""
from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any, Optional

from .. import distributed as dist_utils
from ..checkpoint import remove_stale_temporaries
from ..recipe_files import atomic_write_text, save_recipe
from ..data import has_labels
from ..eval import extract_features, knn_classify, labelled_splits
from .optim import precision_note

if TYPE_CHECKING:
    from .loop import StepInfo
    from .run import Run


class Callback:
    """Hooks of the training loop; every one is optional."""

    def on_train_start(self, run: "Run") -> None: ...
    def on_step(self, run: "Run", info: "StepInfo") -> None: ...
    def on_epoch_end(self, run: "Run", record: dict[str, Any]) -> None: ...
    def on_interrupt(self, run: "Run") -> None: ...
    def on_train_end(self, run: "Run") -> None: ...
    def on_exit(self, run: "Run") -> None:
        """Always called last, also when the run stops on an error: release what the callback holds."""


class RunFolder(Callback):
    """recipe.yaml at the start (stale temporaries of a killed checkpoint write removed); the summary's step count
    and throughput at the end."""

    def on_train_start(self, run: "Run") -> None:
        self.started, self.images = time.perf_counter(), 0
        if not run.main:
            return
        run.out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(run.ckpt_path)
        if not run.resumed:
            (run.out / "summary.json").unlink(missing_ok=True)
        save_recipe(run.recipe, run.out / "recipe.yaml")
        t = run.recipe.trainer
        note = precision_note(run.device, t.precision)
        if note:
            print(note, file=sys.stderr)

    def on_step(self, run: "Run", info: "StepInfo") -> None:
        self.images += info.images

    def on_train_end(self, run: "Run") -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        run.summary.update(steps=run.step, epochs_completed=run.epoch, images_per_s=self.images / elapsed,
                           minutes=run.summary.get("minutes", 0.0) + elapsed / 60)
        if run.profile.steps:
            run.summary["step_ms"] = {k: round(v, 2) for k, v in run.profile.summary().items()}
            if run.main:
                print(run.profile.line(), file=sys.stderr)


class MetricsLog(Callback):
    """metrics.jsonl (one JSON record per log step and per epoch, with a wall-clock ``time``) and optionally
    TensorBoard. A new run starts the file afresh; a resumed one cuts it back to its checkpoint."""

    def __init__(self) -> None:
        self.tb = None

    def on_train_start(self, run: "Run") -> None:
        if not run.main:
            return
        path = run.out / "metrics.jsonl"
        if not run.resumed:
            path.write_text("")
        elif path.is_file() and path.stat().st_size > run.metrics_bytes:
            with open(path, "r+b") as f:
                f.truncate(run.metrics_bytes)
        if run.recipe.trainer.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run.out / "tensorboard"))

    def write(self, run: "Run", record: dict[str, Any]) -> None:
        if not run.main:
            return
        record = {**record, "time": time.time()}
        with open(run.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
            run.metrics_bytes = f.tell()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch", "time"):
                    self.tb.add_scalar(k, v, record.get("step", run.step))

    def on_step(self, run: "Run", info: "StepInfo") -> None:
        if info.logging:
            run.monitor.flush()
            self.write(run, {"step": run.step, "epoch": run.epoch, "lr": info.lr, **info.values(),
                             "images_per_s": info.images / max(info.seconds, 1e-9)})

    def on_epoch_end(self, run: "Run", record: dict[str, Any]) -> None:
        self.write(run, record)

    def on_exit(self, run: "Run") -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


class ProgressBar(Callback):
    """A rich progress bar with the loss, every term and images/s (main process, ``trainer.progress``)."""

    def on_train_start(self, run: "Run") -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                            disable=not (run.recipe.trainer.progress and run.main))
        self.bar.start()
        self.task = self.bar.add_task("train", total=run.last_step, completed=run.step, info="")

    def on_step(self, run: "Run", info: "StepInfo") -> None:
        if info.logging:
            v = info.values()
            text = " ".join(f"{k} {x:.3f}" for k, x in v.items())
            self.bar.update(self.task, info=f"{text} | {info.images / max(info.seconds, 1e-9):.0f} img/s")
        self.bar.update(self.task, completed=run.step)

    def on_exit(self, run: "Run") -> None:
        if hasattr(self, "bar"):
            self.bar.stop()


class OnlineKNN(Callback):
    """Weighted k-NN of the student's backbone features: at initialisation, every ``eval.knn_every`` epochs and
    at the last epoch, and once more at the end only if training stopped elsewhere. Every process extracts its
    shard (no process waits in a collective while another evaluates); datasets are built once."""

    def __init__(self, run: "Run") -> None:
        e = run.recipe.eval
        self.enabled = e.knn_every > 0 and has_labels(run.recipe.data)
        self.splits = labelled_splits(run.recipe.data, e.limit) if self.enabled else None

    def measure(self, run: "Run") -> Optional[dict[str, float]]:
        e = run.recipe.eval
        train, test = self.splits
        args = (e.batch_size, str(run.device), 0, run.rank, run.world)
        tx, ty = extract_features(run.method.student, train, *args)
        vx, vy = extract_features(run.method.student, test, *args)
        run.method.train()
        run.summary["knn_step"] = run.step
        if not run.main:
            return None
        scores = knn_classify(tx, ty, vx, vy, e.knn_k, e.knn_t)
        return {"knn_top1": scores["top1"], "knn_top5": scores["top5"]}

    def on_train_start(self, run: "Run") -> None:
        if self.enabled and run.step == 0 and not run.resumed:
            init = self.measure(run)
            if init is not None:
                run.summary.update({f"{k}_at_init": v for k, v in init.items()})
            if run.recipe.eval.teacher_knn:
                run.summary["teacher_knn_top1"] = self.teachers(run)

    def teachers(self, run: "Run") -> dict[str, float]:
        """k-NN top-1 of each teacher's own features (its summary output on the original view) of the same images."""
        from ..distill import kind
        from ..registry import teachers

        e, train, test = run.recipe.eval, *self.splits
        terms, scores = run.method.provider_terms, {}
        for name, provider in terms.providers.items():
            if kind(name, terms.configs[name].model_dump()) in teachers:
                args = (e.batch_size, str(run.device), 0, run.rank, run.world)
                (tx, ty), (vx, vy) = extract_features(provider, train, *args), extract_features(provider, test, *args)
                scores[name] = knn_classify(tx, ty, vx, vy, e.knn_k, e.knn_t)["top1"]
        return scores

    def on_epoch_end(self, run: "Run", record: dict[str, Any]) -> None:
        last = run.epoch == run.recipe.optim.epochs
        if self.enabled and (run.epoch % run.recipe.eval.knn_every == 0 or last):
            scores = self.measure(run)
            if scores is not None:
                record.update(scores)
                run.summary.update(scores)

    def on_train_end(self, run: "Run") -> None:
        if self.enabled and run.summary.get("knn_step") != run.step:
            scores = self.measure(run)
            if scores is not None:
                run.summary.update(scores)


class Checkpoint(Callback):
    """checkpoints/last.pt every ``trainer.checkpoint_every`` steps, at each epoch end, on an interrupt and at the
    end (then summary.json beside it). Written atomically, never with non-finite values."""

    def on_step(self, run: "Run", info: "StepInfo") -> None:
        if run.step % run.recipe.trainer.checkpoint_every == 0:
            run.save()

    def on_epoch_end(self, run: "Run", record: dict[str, Any]) -> None:
        run.save()

    def on_interrupt(self, run: "Run") -> None:
        run.save()
        dist_utils.barrier()

    def on_train_end(self, run: "Run") -> None:
        run.save()
        if run.main:
            atomic_write_text(run.out / "summary.json", json.dumps(run.summary, indent=2))
        dist_utils.barrier()


class CollapseWatch(Callback):
    """One warning line when the method's ``collapse_warning(values)`` fires on ``patience`` consecutive log
    steps; it reads the values the metrics log already fetched (no extra host sync)."""

    def __init__(self, patience: int = 5) -> None:
        self.patience, self.hits, self.warned = patience, 0, False

    def on_step(self, run: "Run", info: "StepInfo") -> None:
        if not info.logging or self.warned:
            return
        message = run.method.collapse_warning(info.values())
        self.hits = self.hits + 1 if message else 0
        if message and self.hits >= self.patience and run.main:
            self.warned = True
            print(f"warning: step {run.step}: {message}", file=sys.stderr)


def default_callbacks(run: "Run") -> list[Callback]:
    """The standard set, in the order the loop calls them."""
    return [RunFolder(), OnlineKNN(run), MetricsLog(), ProgressBar(), CollapseWatch(), Checkpoint()]
