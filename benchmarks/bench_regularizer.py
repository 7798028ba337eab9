"""mvmr.FeatureRegularizer in a plain supervised loop: ResNet-18 trained with labels on 10% of the shared CIFAR-10
sample (1,000 images, 100 per class), with and without the regulariser on the penultimate features, same budget,
3 seeds each; test accuracy on the 2,000 test images (mean ± std).

Regularisers: the hand-crafted providers (pixels, HOG, LSD; 1 − dCor), or with ``--teacher`` a label-free teacher:
an MV-MR model pretrained through mvmr on all 10,000 train images without their labels (hand-crafted providers,
torchvision init, ``TEACHER_EPOCHS`` epochs; cached in benchmarks/.cache), loaded as ``mvmr:<checkpoint>`` and tied to
the features by cos + smooth-L1 through RADIO's adaptor on layer-normed teacher features. ``--teacher=mira``: the
shipped ``cifar10_mira`` recipe instead (MIRA + MV-MR hybrid, 25 epochs, the same 10,000 images, no labels;
``--teacher-epochs=N``: N epochs instead). ``--teacher=lite0``: a real teacher, EfficientNet-Lite0 with its ImageNet
weights at 128 px, tied directly (its original-view features computed once and read from the feature cache by
image index, ``view: cross``); with ``--finetune`` or ``--probe`` the label-free checkpoint is then the shipped
``cifar10_distill_lite`` student (distilled from it on the 10,000 images, no labels) and the probe reads the
teacher's own features.
``--unlabelled``: each step the regulariser also reads a batch drawn from all 10,000 train images (their labels are
never loaded), the semi-supervised use: the cross-entropy sees the 1,000 labelled images only; ``--mu=N`` reads N
times as many unlabelled images as labelled ones (FixMatch's mu). ``--anneal``: the regulariser's weight follows a
cosine from its value to 0 over the run, so the student follows the teacher first and the labels alone last.
``--hand=W`` (with ``--teacher=lite0``): MV-MR's hand-crafted providers (pixels, HOG, LSD; 1 − dCor, weight W
each) beside the teacher. ``--batch=N``: labelled images per step (125), ``--lr``: Adam's peak (1e-3, one cycle),
``--seeds=N``: runs per variant (3). Each run fills a fresh feature cache, so its minutes include the teacher's pass.
``--finetune``: the peer a user would try first, no regulariser: fine-tune the label-free checkpoint's backbone
with the 1,000 labels.
``--probe``: no training run; what the label-free teacher's frozen features hold for the 1,000 labels, beside a
random-init ResNet-18's: a logistic regression on the standardised features (scikit-learn, C = 1), test accuracy.
How the teacher term ties: ``--objective=dcor`` (1 − dCor, no head) instead of cos + smooth-L1, ``--hidden=0`` a
linear adaptor instead of RADIO's MLP (2048 wide), ``--adaptor=identity`` none (with ``--finetune`` and
``--standardize=none``: DELTA's tie of the fine-tuned features to those of the model it started from).
Usage: python bench_regularizer.py [epochs] [weights, comma-separated] [--teacher] [--unlabelled] [--finetune]
[--teacher=mira] [--teacher-epochs=N] [--probe] [--objective=NAME] [--hidden=N] [--adaptor=NAME] [--standardize=MODE] [--mu=N] [--anneal]
[--hand=W] [--batch=N] [--lr=X] [--seeds=N]   (one JSON line per variant)
"""
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from common import CIFAR_NPZ as NPZ, DATA_TAG, emit, option, pad_crop_flip
import mvmr

positional = [a for a in sys.argv[1:] if not a.startswith("--")]
epochs = int(positional[0]) if positional else 30
weights = [float(w) for w in (positional[1] if len(positional) > 1 else "0,1").split(",")]
TEACHER_EPOCHS = 20
UNLABELLED, FINETUNE, ANNEAL = "--unlabelled" in sys.argv, "--finetune" in sys.argv, "--anneal" in sys.argv
SEEDS = option("seeds", 3)  # runs per variant, seeds 0 .. SEEDS - 1
BATCH = option("batch", 125)  # labelled images per step
LR = option("lr", 1e-3)  # Adam's peak learning rate (one-cycle schedule)
MU = option("mu", 1)  # unlabelled images per labelled one in a step (FixMatch's mu), with --unlabelled
TEACHER = option("teacher", "mvmr")  # which label-free teacher: bench's MV-MR run, or the cifar10_mira recipe
USE_TEACHER = any(a == "--teacher" or a.startswith("--teacher=") for a in sys.argv[1:])
PROVIDERS = HAND_PROVIDERS = {"pixels": {}, "hog": {"params": {"orientations": 9, "pixels_per_cell": 8, "cells_per_block": 2}},
             "lsd": {"params": {"size": 3}}}


def normalise(images: torch.Tensor) -> torch.Tensor:
    """CIFAR-10's per-channel mean and std, as the supervised student and a random-init network read images."""
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1), torch.tensor([0.247, 0.243, 0.261]).view(1, 3, 1, 1)
    return (images - mean) / std


def load():
    f = np.load(NPZ)
    y = f["y_train"]
    keep = np.concatenate([np.flatnonzero(y == c)[:100] for c in range(10)])
    as_float = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    return (as_float(f["x_train"][keep]), torch.from_numpy(y[keep]).long(), as_float(f["x_test"]),
            torch.from_numpy(f["y_test"]).long(), as_float(f["x_train"]),  # all train images, no labels
            torch.from_numpy(keep).long())  # the labelled images' indices among them (the feature cache's rows)



def train(weight: float, seed: int, data) -> float:
    """One run: test accuracy of the classifier trained with the labels (and the regulariser at ``weight``)."""
    with tempfile.TemporaryDirectory(prefix="mvmr-regularizer-features-") as cache_dir:  # a fresh feature cache
        return train_in(weight, seed, data, Path(cache_dir))


def train_in(weight: float, seed: int, data, cache_dir: Path) -> float:
    x, y, xt, yt, unlabelled, keep = data
    torch.manual_seed(seed)
    g, g_unlabelled = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1000)
    if FINETUNE:  # the label-free checkpoint's backbone (it normalises inside) under a new linear classifier
        from mvmr.checkpoint import load_student
        _, student = load_student(label_free_teacher())
        embed, fc = student.embed, torch.nn.Linear(student.feature_dim, 10)
        model = torch.nn.ModuleDict({"student": student, "fc": fc})
    else:
        model = torchvision.models.resnet18(num_classes=10)
        backbone, fc = torch.nn.Sequential(*list(model.children())[:-1], torch.nn.Flatten()), model.fc
        embed = lambda b: backbone(normalise(b))  # noqa: E731
    reg = mvmr.FeatureRegularizer({n: {"weight": weight, **p} for n, p in PROVIDERS.items()}, embedding_dim=512,
                                  image_size=32) if weight else None
    cross = reg is not None and any(p.get("view") == "cross" for p in PROVIDERS.values())
    if cross:  # the teacher on the original images, once per image and run (its pass counted in the run's time)
        reg.enable_cache(cache_dir, f"{DATA_TAG}-train", n=len(unlabelled), image_size=32)
    params = list(model.parameters()) + (list(reg.parameters()) if reg is not None else [])  # the adaptor's
    opt = torch.optim.Adam(params, lr=LR, weight_decay=5e-4)
    steps = epochs * math.ceil(len(x) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    model.train()
    step = 0
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(BATCH):
            images, rows = pad_crop_flip(x[idx], g), keep[idx]
            if UNLABELLED and reg is not None:  # MU times as many from all train images, for the regulariser only
                extra = torch.randint(len(unlabelled), (MU * len(idx),), generator=g_unlabelled)
                images = torch.cat([images, pad_crop_flip(unlabelled[extra], g_unlabelled)])
                rows = torch.cat([rows, extra])
            features = embed(images)
            loss = F.cross_entropy(fc(features[: len(idx)]), y[idx])
            if reg is not None:  # --anneal: the weight follows a cosine from its value to 0 (distil, then free)
                scale = 0.5 * (1.0 + math.cos(math.pi * step / steps)) if ANNEAL else 1.0
                tied = reg(images, features, index=rows, original=unlabelled[rows]) if cross else reg(images, features)
                loss = loss + scale * tied[0]
            step += 1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([fc(embed(b)).argmax(1) for b in xt.split(500)])
    return 100.0 * (pred == yt).float().mean().item()


def label_free_teacher() -> Path:
    """A checkpoint pretrained on all 10,000 train images of the sample, no labels (trained once, cached): the
    bench's MV-MR run, or with ``--teacher=mira`` the shipped ``cifar10_mira`` recipe."""
    import shutil

    from common import HAND, cifar_tree
    from mvmr.config import build_recipe
    from mvmr.engine import pretrain
    from mvmr.recipe_files import read_recipe_tree, resolve_recipe

    if TEACHER in ("mira", "lite0"):  # a shipped recipe, as a user runs it
        tree = read_recipe_tree(resolve_recipe({"mira": "cifar10_mira", "lite0": "cifar10_distill_lite"}[TEACHER]))
        tree["data"]["root"], tree["trainer"]["progress"] = str(NPZ), False
        if option("teacher-epochs"):  # another length than the recipe's own epochs, its schedule stretched; at a
            # set budget no report of the teacher's own k-NN (an evaluation, not a part of training)
            tree["optim"]["epochs"] = tree["eval"]["knn_every"] = int(option("teacher-epochs"))
            tree["eval"]["teacher_knn"] = False
        name = f"{tree['method'] if TEACHER == 'mira' else 'lite0_distilled'}_label_free_{DATA_TAG}_e{tree['optim']['epochs']}.pt"
    else:
        tree = cifar_tree(TEACHER_EPOCHS, method="mvmr", providers=HAND, student={"zero_init_residual": False})
        name = f"mvmr_label_free_{DATA_TAG}_e{TEACHER_EPOCHS}.pt"
    path = Path(__file__).resolve().parent / ".cache" / name
    if not path.is_file():
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            tree["trainer"]["cache_dir"] = str(Path(out) / "cache")
            summary = pretrain(build_recipe(tree), Path(out) / "run")
            path.parent.mkdir(exist_ok=True)
            shutil.copyfile(Path(out) / "run" / "checkpoints" / "last.pt", path)
        emit(bench="regularizer", variant="label_free_teacher", method=tree["method"], epochs=tree["optim"]["epochs"],
             labels_used=0, knn_top1=round(summary["knn_top1"], 2), knn_top1_at_init=round(summary.get("knn_top1_at_init", float("nan")), 2),
             minutes=round((time.perf_counter() - started) / 60, 1))
    return path


if USE_TEACHER and TEACHER == "lite0" and not FINETUNE:  # the ImageNet teacher itself, on the original images
    PROVIDERS = {"efficientnet-lite0": {"objective": option("objective", "cos_smoothl1"), "view": "cross",
                                       "standardize": option("standardize", "layernorm"), "representation": "backbone",
                                       "params": {"size": 128, **({"output": "logits"} if option("objective") == "kd"
                                                                  else {})}}}
    if option("hand"):  # --hand=W: MV-MR's hand-crafted providers beside the teacher, 1 − dCor at weight W each
        PROVIDERS.update({n: {**p, "weight": float(option("hand")), "view": "cross"} for n, p in HAND_PROVIDERS.items()})
elif USE_TEACHER:
    head = {k: v for k, v in {"hidden": option("hidden") and int(option("hidden")),
                              "adaptor": option("adaptor")}.items() if v is not None}
    PROVIDERS = {f"mvmr:{label_free_teacher()}": {"objective": option("objective", "cos_smoothl1"),
                                                   **({"objective_params": head} if head else {}),
                                                   "standardize": option("standardize", "layernorm"),
                                                   "representation": "backbone"}}


def linear_probe(data) -> None:
    """Logistic regression on frozen features of the 1,000 labelled images: the label-free teacher's against a
    random-init ResNet-18's (the student's starting point), one JSON line."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mvmr.checkpoint import load_student

    x, y, xt, yt = data[:4]
    if TEACHER == "lite0":  # the real teacher's own features (the probe a user keeping the teacher would train)
        teacher, encode_teacher = Path("efficientnet-lite0@128"), mvmr.create_provider("efficientnet-lite0", size=128)
    else:
        teacher = label_free_teacher()
        encode_teacher = load_student(teacher)[1].embed
    torch.manual_seed(0)
    untrained = torchvision.models.resnet18()
    untrained.fc = torch.nn.Identity()
    untrained.eval()
    accs = {}
    for name, encode in (("label_free_teacher", encode_teacher), ("random_init", lambda b: untrained(normalise(b)))):
        with torch.no_grad():
            f, ft = (torch.cat([encode(b) for b in imgs.split(500)]).numpy() for imgs in (x, xt))
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(f, y.numpy())
        accs[name] = round(100.0 * (clf.predict(ft) == yt.numpy()).mean(), 2)
    emit(bench="regularizer", variant="linear_probe", teacher=teacher.name, labelled=len(x),
         test_acc=accs["label_free_teacher"], test_acc_random_init=accs["random_init"])


data = load()
if "--probe" in sys.argv:
    linear_probe(data)
    sys.exit(0)
for weight in weights:
    t0, accs = time.perf_counter(), [train(weight, seed, data) for seed in range(SEEDS)]
    emit(bench="regularizer", providers=[Path(n).name for n in sorted(PROVIDERS)] if weight else [], weight=weight, labelled=len(data[0]),
         unlabelled=len(data[4]) if UNLABELLED and weight else 0, mu=MU if UNLABELLED and weight else 0,
         anneal=ANNEAL and bool(weight), init="label_free_teacher" if FINETUNE else "random",
         tie={k: v for k, v in next(iter(PROVIDERS.values())).items() if k in ("objective", "objective_params", "standardize", "view")}
         if weight and USE_TEACHER else None,
         teacher=("efficientnet-lite0@128" if TEACHER == "lite0" and not FINETUNE else Path(label_free_teacher()).name)
         if (USE_TEACHER and weight) or FINETUNE else None,
         **({"hand_weight": float(option("hand"))} if option("hand") and weight else {}),
         epochs=epochs, batch=BATCH, lr=LR, seeds=SEEDS, test_acc_mean=round(statistics.mean(accs), 2), test_acc_std=round(statistics.stdev(accs), 2) if SEEDS > 1 else None,
         test_accs=[round(a, 2) for a in accs], minutes_per_run=round((time.perf_counter() - t0) / 60 / SEEDS, 2),
         threads=torch.get_num_threads())
