"""Teacher → student transfer on real data (../shared/data/cifar10-mini.npz), one JSON line per objective.

1. Supervised teachers, trained with labels in plain PyTorch and cached in benchmarks/.cache/: teacher A, ResNet-18
   (standard stem, 32 px; 10 epochs, pad-4 crop + flip, Adam 1e-3 one-cycle, seed 0), and teacher B, the same
   network with other augmentations and seed (random resized crop, scale 0.35-1, + flip; seed 1), and teacher C,
   teacher A's pad-4 crop + flip plus cutout (one 8x8 square zeroed, DeVries & Taylor 2017) and seed 2, and teacher
   D, C's augmentation with seed 3 and 20 epochs (cutout wants a longer schedule): a second kind of teacher at
   least as strong as A, for the many-teacher goal, and teacher E, A's augmentation with seed 4 and 20 epochs (no
   cutout: D's other kind at D's schedule), and teacher F, E's recipe with seed 5 (a seed ensemble's second member,
   Hinton et al. 2015). Their test accuracy and k-NN are printed, and the k-NN of two teachers'
   features side by side (what an ensemble holds).
2. Label-free distillation into a ResNet-18 student through mvmr (``mvmr.engine.pretrain``), every objective at
   the same budget (6 epochs, batch 128, Adam 1e-3), k-NN (k=20, T=0.07) of the student's backbone features.
3. Baselines: random init, the no-teacher MV-MR run (hand-crafted providers), and a plain ~30-line loop (cosine
   regression of the student's features onto the teacher's through a 2-layer predictor, both on one pad-crop-flip
   view); ``plain_kd_lr2e-3`` is the same loop with Hinton KD on the teacher's logits (T = 4, a linear head);
   ``plain_*_d`` (``_e``) run either loop against teacher D (E).
Variants ending in ``_b`` (``_c``, ``_d``, ``_e``) distil teacher B (C, D, E), ``multi_*`` teachers A and B, ``multi_*_ac``
(``_ad``) A and C (D), ``multi_*_de`` (``_ef``) D and E (E and F; one term each, own adaptor and standardisation); ``ens_kd_de``
(``_ad``, ``_ef``, ``_def``) one ``kd`` term on the ``ensemble`` teacher of D and E (A and D; E and F; D, E and F): their averaged logits, one head. ``*_local2`` add two 18-px student crops
against the same teacher features (multi-crop); variants ending in ``_mix`` add mixup (function matching: the teacher sees the
student's mixed image, Beyer et al. 2022); ``*_64`` run student and teacher on the images resized to 64 px, where
both ResNets end on a 2x2 map, and ``*_spatial_64`` add a dense term on it beside the summary one.
``kd_e_sgd`` (``_adamw``) is ``kd_e`` under SGD + Nesterov 0.1, weight decay 5e-4 (AdamW 2e-3, decoupled decay 0.05);
``kd_e_cross2`` adds a second ``kd`` head on teacher E's logits of the clean image (cross view, cached) to ``kd_e``.
``kd_e_views`` adds MV-MR's dCor between the student's two views (``loss.dcor_views: 0.1``, the 6-epoch pick) to ``kd_e``.
``kd_e_rrc`` runs ``kd_e`` on a random resized crop (scale 0.35-1) + flip, teacher and student on the same view;
``kd_e_feat`` adds cos + smooth-L1 on teacher E's features (own adaptor, layernorm) beside its logits.
``kd_e_hand`` adds MV-MR's hand-crafted providers (pixels, HOG, LSD; 1 − dCor, weight 0.1) to ``kd_e``.
``kd_e_crd`` adds CRD (``objective: crd``, InfoNCE with the batch's negatives) on E's features to ``kd_e``; ``crd_e`` has it alone.
``kd_e_mlp`` fits E's logits through an MLP head (512 wide, BN, ReLU) in place of the linear one.
``*_kd`` add Hinton KD on the teacher's class logits (T = 4; ``_t1``: T = 1) beside its features; ``kd`` has the
logits term alone. ``recipe`` runs the shipped ``recipes/cifar10_distill.yaml`` as a user does (teacher A's weights,
the sample's path and the seed set; its own 30 epochs unless ``--epochs`` is given); ``recipe_kd`` runs
``recipes/cifar10_distill_kd.yaml``, and a ``_d`` (``_e``) ending either against teacher D (E); ``recipe_kd_ens_de``
(``_ens_ef``) runs ``mvmr distill --teacher ... D --teacher ... E --ensemble cifar10_distill_kd`` (E and F), ``recipe_multi_ef``
``mvmr distill cifar10_distill_multi --teacher-weights E --teacher-weights F``.
Usage: python bench_distill_transfer.py [variant ...] [--seed=N] [--epochs=N] (every run of one call, the plain
loop too, at the same budget; default 6)
"""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.transforms.v2 import RandomResizedCrop

from common import CIFAR_NPZ as NPZ, DATA_TAG, HAND, emit, option, pad_crop_flip
from mvmr.config import build_recipe
from mvmr.engine import pretrain
from mvmr.eval import knn_classify

CACHE = Path(__file__).resolve().parent / ".cache"
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
BATCH = 128


args = [a for a in sys.argv[1:] if not a.startswith("--")]
SEED, EPOCHS = option("seed", 0), option("epochs", 6)
EPOCHS_GIVEN = option("epochs") is not None


def arrays():
    f = np.load(NPZ)
    as_float = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    return as_float(f["x_train"]), torch.from_numpy(f["y_train"]).long(), as_float(f["x_test"]), torch.from_numpy(f["y_test"]).long()



def resnet18():
    model = torchvision.models.resnet18(num_classes=10)
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return model, lambda x: (x - mean) / std


@torch.no_grad()
def knn_of(encode, data) -> float:
    x, y, xt, yt = data
    feats = lambda imgs: torch.cat([encode(b) for b in imgs.split(500)])  # noqa: E731
    return knn_classify(feats(x), y, feats(xt), yt)["top1"]


TEACHERS = {"a": {"seed": 0, "crop": "pad"}, "b": {"seed": 1, "crop": "resized"}, "c": {"seed": 2, "crop": "cutout"},
            "d": {"seed": 3, "crop": "cutout", "epochs": 20}, "e": {"seed": 4, "crop": "pad", "epochs": 20},
            "f": {"seed": 5, "crop": "pad", "epochs": 20}}


def cutout(x: torch.Tensor, g: torch.Generator, size: int = 8) -> torch.Tensor:
    """Zero one size x size square per image, centred anywhere (it may overhang the border)."""
    ci, cj = torch.randint(0, x.shape[-1], (2, len(x)), generator=g)
    span = lambda n, c: (torch.arange(n)[None] >= c[:, None] - size // 2) & (torch.arange(n)[None] < c[:, None] + size // 2)  # noqa: E731
    square = span(x.shape[-2], ci)[:, :, None] & span(x.shape[-1], cj)[:, None, :]
    return x * ~square[:, None]


def teacher(data, which: str = "a") -> Path:
    """Train (or reuse) a supervised teacher; returns its full classifier state_dict file."""
    path = CACHE / (f"teacher_resnet18_{DATA_TAG}.pt" if which == "a" else f"teacher_{which}_resnet18_{DATA_TAG}.pt")
    if path.is_file():
        return path
    x, y, xt, yt = data
    how = TEACHERS[which]
    torch.manual_seed(how["seed"])
    g = torch.Generator().manual_seed(how["seed"])
    resized = RandomResizedCrop(32, scale=(0.35, 1.0), antialias=True)
    augment = {"pad": lambda b: pad_crop_flip(b, g), "cutout": lambda b: cutout(pad_crop_flip(b, g), g),
               "resized": lambda b: flip(torch.stack([resized(i) for i in b]), g)}[how["crop"]]
    model, norm = resnet18()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    epochs = how.get("epochs", 10)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=epochs * (len(x) // BATCH))
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g)[: len(x) // BATCH * BATCH].split(BATCH):
            loss = F.cross_entropy(model(norm(augment(x[idx]))), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    CACHE.mkdir(exist_ok=True)
    torch.save(model.state_dict(), path)
    with torch.no_grad():
        acc = 100 * (torch.cat([model(norm(b)).argmax(1) for b in xt.split(500)]) == yt).float().mean().item()
    emit(bench="distill_transfer", variant="teacher" if which == "a" else f"teacher_{which}", test_acc=round(acc, 2),
         knn_top1=round(knn_of(teacher_encoder(path), data), 2), minutes=round((time.perf_counter() - started) / 60, 1))
    return path


def teacher_classifier(path: Path):
    """images -> the teacher's class logits."""
    model, norm = resnet18()
    model.load_state_dict(torch.load(path, weights_only=True))
    model.eval()
    return lambda b: model(norm(b))


def teacher_encoder(path: Path):
    """images -> the teacher's penultimate features."""
    model, norm = resnet18()
    model.load_state_dict(torch.load(path, weights_only=True))
    backbone = torch.nn.Sequential(*list(model.children())[:-1], torch.nn.Flatten()).eval()
    return lambda b: backbone(norm(b))


def ensemble_accuracy(paths: list[Path], data) -> float:
    """Test accuracy of the teachers' averaged softmax (what a logits ensemble holds, beside their features' k-NN)."""
    classifiers = [teacher_classifier(p) for p in paths]
    with torch.no_grad():
        probs = torch.cat([sum(F.softmax(c(b), 1) for c in classifiers) for b in data[2].split(500)])
    return 100 * (probs.argmax(1) == data[3]).float().mean().item()


def flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    mask = torch.rand(len(x), generator=g) < 0.5
    x[mask] = x[mask].flip(-1)
    return x


def plain_baseline(data, teacher_path: Path, seed: int, lr: float = 1e-3, kd: bool = False) -> float:
    """The ~30-line loop the issue measured: cosine regression through a 2-layer predictor, one shared view. With
    ``kd`` the loop a user who knows Hinton KD writes instead: KL at T = 4 to the teacher's logits through a linear
    head."""
    x = data[0]
    _, norm = resnet18()
    t_encode = teacher_classifier(teacher_path) if kd else teacher_encoder(teacher_path)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    student = torchvision.models.resnet18()
    student.fc = torch.nn.Identity()
    head = (torch.nn.Linear(512, 10) if kd else
            torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.BatchNorm1d(1024), torch.nn.ReLU(),
                                torch.nn.Linear(1024, 512)))
    params = list(student.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=EPOCHS * (len(x) // BATCH))
    for _ in range(EPOCHS):
        student.train()
        for idx in torch.randperm(len(x), generator=g)[: len(x) // BATCH * BATCH].split(BATCH):
            view = pad_crop_flip(x[idx], g)
            with torch.no_grad():
                target = t_encode(view)
            out = head(student(norm(view)))
            if kd:
                loss = 16 * F.kl_div(F.log_softmax(out / 4, 1), F.log_softmax(target / 4, 1), reduction="batchmean",
                                     log_target=True)
            else:
                loss = 1 - F.cosine_similarity(out, target, dim=1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    student.eval()
    return knn_of(lambda b: student(norm(b)), data)


LIGHT = {"crop_scale": [0.6, 1.0], "jitter_p": 0.0, "gray_p": 0.0, "blur_p": 0.0}  # resized crop + flip
PAD = {"crop": "pad", "pad": 4, "jitter_p": 0.0, "gray_p": 0.0, "blur_p": 0.0}  # the baseline's pad-4 crop + flip
NO_ZERO_INIT = {"zero_init_residual": False}
NO_VIEW_TERMS = {"mse": 0.0, "variance": 0.0, "dcor_views": 0.0}
LOCAL2 = {"local_crops": 2, "local_size": 18, "local_scale": [0.14, 0.6]}  # multi-crop: two small student crops


def teacher_term(path: Path, name: str = "torchvision:resnet18", size: int = 32, **how) -> dict:
    params = {"weights": str(path), "size": size, "crop_pct": 1.0, "mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)}
    kind = {} if name == "torchvision:resnet18" else {"provider": "torchvision:resnet18"}
    return {name: {"weight": 1.0, **kind, "params": params, **how}}


def logits_term(path: Path, name: str, temperature: float = 4.0, weight: float = 1.0, view: str = "augmented",
                hidden: int = 0) -> dict:
    """Hinton KD on a teacher's class logits (``output: logits``, ``objective: kd``), on the student's view (``view:
    cross``: the teacher on the original image, its logits read from the feature cache); ``hidden``: an MLP head."""
    term = teacher_term(path, name, objective="kd", view=view, representation="backbone",
                        objective_params={"temperature": temperature, **({"hidden": hidden} if hidden else {})})
    term[name]["weight"] = weight  # name is a label: teacher_term set provider: torchvision:resnet18
    term[name]["params"]["output"] = "logits"
    return term


def ensemble_logits_term(paths: list[Path], name: str, temperature: float = 4.0) -> dict:
    """One KD term on the teachers' averaged logits (the ``ensemble`` teacher, as ``mvmr distill --ensemble`` folds
    one term per teacher into it): one head fits the ensemble."""
    from mvmr.distill import as_ensemble

    apart = {k: v for i, p in enumerate(paths) for k, v in logits_term(p, f"member_{i}", temperature).items()}
    return {name: {**as_ensemble(apart)["ensemble"], "provider": "ensemble"}}


def variants(paths: dict[str, Path]) -> dict[str, dict]:
    """name -> recipe changes; every run has the same student, batch, epochs and optimiser."""
    path = paths["a"]
    def solo(objective, augment=LIGHT, student=None, view="augmented", **kw):
        return {"providers": teacher_term(path, objective=objective, view=view, representation="backbone", **kw),
                "loss": NO_VIEW_TERMS, "augment": augment, "student": student or {}}

    def radio(standardize="layernorm", teachers=("a",), extra=None, loss=NO_VIEW_TERMS, mixup=0.0, size=32,
              spatial=False, **kw):
        """cos + smooth-L1 through RADIO's adaptor, PAD views, no zero-init, lr 2e-3 (the shipped setting). ``size``:
        student and teachers see the images resized to it; ``spatial``: each teacher adds a dense term on its map."""
        how = dict(objective="cos_smoothl1", view="augmented", representation="backbone", standardize=standardize,
                   size=size, **kw)
        terms = {}
        for t in teachers:
            name = "torchvision:resnet18" if t == "a" else f"teacher_{t}"
            terms.update(teacher_term(paths[t], name, **how))
            if spatial:  # same kind and params: one shared network (build_providers)
                terms.update(teacher_term(paths[t], f"{name.replace(':', '_')}_spatial", **{**how, "representation": "spatial"}))
        return {"providers": {**terms, **(extra or {})}, "loss": loss, "augment": {**PAD, "pad": 4 * size // 32},
                "student": NO_ZERO_INIT, "optim": {"lr": 2e-3}, "data": {"mixup": mixup, "image_size": size},
                "teachers": teachers}

    def logits_with(other: str, weight: float = 1.0, first: str = "a") -> dict:
        """KD terms on teacher ``first``'s logits and another teacher's, the other's at ``weight``."""
        return {**logits_term(paths[first], f"teacher_{first}_logits"),
                **logits_term(paths[other], f"teacher_{other}_logits", weight=weight)}

    def kd(t: str, extra: dict | None = None, hidden: int = 0, **kw) -> dict:
        """Hinton KD on teacher ``t``'s logits through one head (the kd_<t> variants; ``hidden``: an MLP head), plus
        ``extra`` terms; ``kw`` as for ``radio``."""
        logits = logits_term(paths[t], f"teacher_{t}_logits", hidden=hidden)
        return radio(teachers=(), extra={**logits, **(extra or {})}, **kw) | {"teachers": (t,)}

    crd_e = teacher_term(paths["e"], "teacher_e_crd", objective="crd", view="augmented", representation="backbone")
    return {
        "no_teacher": {"providers": HAND, "loss": {}, "augment": None},
        "dcor_paper": {"providers": teacher_term(path), "loss": {}, "augment": None},  # today's mvmr distill
        "dcor_biased": solo("dcor"),
        "dcor_unbiased": solo("dcor", objective_params={"estimator": "unbiased"}),
        "cosine": solo("cosine"),
        "mse": solo("mse"),
        "rkd": solo("rkd"),
        "sp": solo("sp"),
        "seed": solo("seed"),
        # where the term attaches and how the student starts (second round)
        "cosine_pad": solo("cosine", PAD),
        "cosine_pad_nozi": solo("cosine", PAD, NO_ZERO_INIT),
        "cosine_original": solo("cosine", view="original"),
        "dcor_pad_nozi": solo("dcor", PAD, NO_ZERO_INIT),
        "rkd_pad_nozi": solo("rkd", PAD, NO_ZERO_INIT),
        "mse_pad_nozi": solo("mse", PAD, NO_ZERO_INIT),
        "seed_pad_nozi": solo("seed", PAD, NO_ZERO_INIT),
        "mse_cross_pad_nozi": solo("mse", PAD, NO_ZERO_INIT, view="cross"),
        "mse_pad_nozi_lr2e-3": {**solo("mse", PAD, NO_ZERO_INIT), "optim": {"lr": 2e-3}},
        # this round (#20): cos + smooth-L1, RADIO adaptor, teacher standardisation, MV-MR's terms, two teachers
        "radio_ln": radio(),
        "radio_dim": radio("dimension"),
        "radio_none": radio("none"),
        "mse_ln": {**solo("mse", PAD, NO_ZERO_INIT, standardize="layernorm"), "optim": {"lr": 2e-3}},
        "radio_ln_hand": radio(extra={k: {**v, "weight": 0.1, "representation": "backbone"} for k, v in HAND.items()}),
        "radio_ln_views": radio(loss={"mse": 0.0, "variance": 0.0, "dcor_views": 0.1}),
        "radio_ln_b": radio(teachers=("b",)),
        "multi_radio_ln": radio(teachers=("a", "b")),
        "radio_ln_c": radio(teachers=("c",)),
        "multi_radio_ln_ac": radio(teachers=("a", "c")),
        "radio_ln_mix": radio(mixup=1.0),
        "radio_ln_views_mix": radio(loss={"mse": 0.0, "variance": 0.0, "dcor_views": 0.1}, mixup=1.0),
        "multi_radio_ln_mix": radio(teachers=("a", "b"), mixup=1.0),
        "radio_ln_local2": radio(loss={**NO_VIEW_TERMS, **LOCAL2}),
        "radio_ln_local2_mix": radio(loss={**NO_VIEW_TERMS, **LOCAL2}, mixup=1.0),
        # the teacher's class logits beside its features (Hinton KD, T = 4): the class structure k-NN reads
        "radio_ln_kd": radio(extra=logits_term(path, "teacher_a_logits")),
        "radio_ln_kd_t1": radio(extra=logits_term(path, "teacher_a_logits", temperature=1.0)),
        "kd": radio(teachers=(), extra=logits_term(path, "teacher_a_logits")),
        "multi_kd_ac": radio(teachers=(), extra=logits_with("c")) | {"teachers": ("a", "c")},
        "multi_kd_ac_c03": radio(teachers=(), extra=logits_with("c", 0.3)) | {"teachers": ("a", "c")},  # the balance
        "multi_radio_ln_kd_ac": radio(teachers=("a", "c"), extra=logits_with("c")),
        "kd_d": kd("d"),
        "multi_kd_ad": radio(teachers=(), extra=logits_with("d")) | {"teachers": ("a", "d")},
        "kd_d_mix": kd("d", mixup=1.0),
        "kd_e": kd("e"),
        "multi_kd_de": radio(teachers=(), extra=logits_with("e", first="d")) | {"teachers": ("d", "e")},  # one strength
        "ens_kd_ad": radio(teachers=(), extra=ensemble_logits_term([paths["a"], paths["d"]], "teachers_ad")) | {"teachers": ("a", "d")},
        "ens_kd_de": radio(teachers=(), extra=ensemble_logits_term([paths["d"], paths["e"]], "teachers_de")) | {"teachers": ("d", "e")},
        # the optimiser (#20 goal 1b): the shipped Adam 2e-3 without weight decay against the CIFAR ResNet standard,
        # SGD + Nesterov 0.1, weight decay 5e-4 (timm's "sgd"), and AdamW with decoupled decay 0.05
        "kd_e_sgd": kd("e") | {"optim": {"name": "sgd", "lr": 0.1, "weight_decay": 5e-4}},
        "kd_e_adamw": kd("e") | {"optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 0.05}},
        # one teacher as two heads (#20 goal 1b): kd on the student's view, and a second head fitting the teacher's
        # logits on the clean image (cross view, cached: almost free), a second function from one teacher
        "kd_e_cross2": kd("e", extra=logits_term(paths["e"], "teacher_e_clean", view="cross")),
        # MV-MR's own view term beside the teacher's (#20 goal 1b), at the weight the 6-epoch table picked
        "kd_e_views": kd("e", loss={**NO_VIEW_TERMS, "dcor_views": 0.1}),
        # function matching on more varied views (#20 goal 1b): teacher and student on one random resized crop
        # (scale 0.35-1, teacher B's) + flip in place of the pad-4 crop; and the teacher's features beside its logits
        "kd_e_rrc": kd("e") | {"augment": {"crop_scale": [0.35, 1.0], "jitter_p": 0.0, "gray_p": 0.0, "blur_p": 0.0}},
        "kd_e_feat": radio(teachers=("e",), extra=logits_term(paths["e"], "teacher_e_logits")),
        # the head between the student's features and the logits (#20 goal 1b): an MLP (Linear → BN → ReLU → Linear,
        # 512 wide) in place of the linear head, so the features k-NN reads sit one layer before the class space
        "kd_e_mlp": kd("e", hidden=512),
        # MV-MR's multi-representation terms beside the logits (#20 goal 1b): 1 − dCor of the student's backbone to
        # pixels, HOG and LSD of the original image (cached) at weight 0.1, radio_ln_hand's setting, on kd_e
        "kd_e_hand": kd("e", extra={k: {**v, "weight": 0.1, "representation": "backbone"} for k, v in HAND.items()}),
        # contrastive distillation (#20 goal 1b): CRD with the batch's negatives on E's features, beside E's logits
        # (kd_e_crd) and alone (crd_e): each image's nearest teacher neighbour its own, the geometry k-NN reads
        "kd_e_crd": kd("e", extra=crd_e),
        "crd_e": radio(teachers=(), extra=crd_e) | {"teachers": ("e",)},
        "kd_f": kd("f"),
        "multi_kd_ef": radio(teachers=(), extra=logits_with("f", first="e")) | {"teachers": ("e", "f")},
        "ens_kd_ef": radio(teachers=(), extra=ensemble_logits_term([paths["e"], paths["f"]], "teachers_ef")) | {"teachers": ("e", "f")},
        "ens_kd_def": radio(teachers=(), extra=ensemble_logits_term([paths[t] for t in "def"], "teachers_def")) | {"teachers": tuple("def")},
        # dense features (#20 item 3): at 32 px both ResNets end on a 1x1 map, so these run at 64 px (a 2x2 grid)
        "radio_ln_64": radio(size=64),
        "radio_ln_spatial_64": radio(size=64, spatial=True),
    }


def variant_tree(change: dict, seed: int) -> dict:
    """The recipe tree of one variant: the bench's common setting with ``change`` applied."""
    tree = {"method": "mvmr", "data": {"name": "npz", "root": str(NPZ), "image_size": 32},
            "student": {"backbone": "resnet18", "projector": "512-512", **change.get("student", {})},
            "providers": change["providers"],
            "loss": change["loss"],
            "optim": {"name": "adam", "lr": 1e-3, "batch_size": BATCH, "epochs": EPOCHS, "warmup_epochs": 0.5,
                      **change.get("optim", {})},
            "trainer": {"precision": "fp32", "num_workers": 1, "progress": False, "log_every": 50, "seed": seed},
            "eval": {"knn_every": EPOCHS}}
    if change["augment"]:
        tree["data"]["augment"] = change["augment"]
    tree["data"].update(change.get("data", {}))
    return tree


def shipped_tree(name: str, teacher_paths: list[Path], seed: int, ensemble: bool = False,
                 keep_names: bool = False) -> dict:
    """A packaged recipe as a user runs it: ``mvmr distill --teacher-weights A NAME --set data.root=...``; with two
    paths ``--teacher torchvision:resnet18 --teacher-weights A`` twice (``keep_names``: no ``--teacher``, the
    recipe's own teachers), and ``--ensemble`` if asked."""
    from mvmr.distill import as_ensemble, with_teachers
    from mvmr.recipe_files import read_recipe_tree, resolve_recipe

    tree = read_recipe_tree(resolve_recipe(name))
    names = None if len(teacher_paths) == 1 or keep_names else ["torchvision:resnet18"] * len(teacher_paths)
    tree["providers"] = with_teachers(tree["providers"], names, teacher_paths)
    if ensemble:
        tree["providers"] = as_ensemble(tree["providers"])
    tree["data"]["root"] = str(NPZ)
    tree.setdefault("trainer", {}).update(progress=False, log_every=50, seed=seed)
    if EPOCHS_GIVEN:
        tree["optim"]["epochs"] = tree["eval"]["knn_every"] = EPOCHS
    return tree


def run_mvmr(tree: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        tree["trainer"]["cache_dir"] = str(Path(tmp) / "cache")
        return pretrain(build_recipe(tree), Path(tmp) / "run")


if __name__ == "__main__":
    if not NPZ.is_file():
        sys.exit(f"{NPZ} is missing: this benchmark needs the shared CIFAR-10 sample")
    data = arrays()
    paths = {t: teacher(data, t) for t in TEACHERS}
    encoders = {t: teacher_encoder(p) for t, p in paths.items()}
    knn = {t: knn_of(e, data) for t, e in encoders.items()}
    if "teachers" in args:
        both = lambda x, y: lambda b: torch.cat([F.normalize(x(b), dim=1), F.normalize(y(b), dim=1)], 1)  # noqa: E731
        emit(bench="distill_transfer", variant="teachers", **{f"knn_{t}": round(v, 2) for t, v in knn.items()},
             knn_concatenated=round(knn_of(both(encoders["a"], encoders["b"]), data), 2),
             knn_concatenated_ac=round(knn_of(both(encoders["a"], encoders["c"]), data), 2),
             acc_a=round(ensemble_accuracy([paths["a"]], data), 2),
             acc_ensemble_ab=round(ensemble_accuracy([paths["a"], paths["b"]], data), 2),
             acc_ensemble_ac=round(ensemble_accuracy([paths["a"], paths["c"]], data), 2),
             acc_d=round(ensemble_accuracy([paths["d"]], data), 2),
             acc_ensemble_ad=round(ensemble_accuracy([paths["a"], paths["d"]], data), 2),
             knn_concatenated_ad=round(knn_of(both(encoders["a"], encoders["d"]), data), 2),
             acc_e=round(ensemble_accuracy([paths["e"]], data), 2),
             acc_ensemble_de=round(ensemble_accuracy([paths["d"], paths["e"]], data), 2),
             knn_concatenated_de=round(knn_of(both(encoders["d"], encoders["e"]), data), 2),
             acc_f=round(ensemble_accuracy([paths["f"]], data), 2),
             acc_ensemble_ef=round(ensemble_accuracy([paths["e"], paths["f"]], data), 2),
             acc_ensemble_def=round(ensemble_accuracy([paths[t] for t in "def"], data), 2),
             knn_a_at_64px=round(knn_of(lambda b: encoders["a"](F.interpolate(b, size=64, mode="bilinear")), data), 2))
    table = variants(paths)
    for name in [a for a in args if a != "teachers"] or ([] if args else ["plain_baseline", *table]):
        started = time.perf_counter()
        suffix = name.rsplit("_", 1)[-1]
        plain_teacher = suffix if suffix in TEACHERS else "a"  # plain_*_d: the loop against teacher D
        ensemble = tuple(name.split("_ens_")[1]) if name.startswith("recipe") and "_ens_" in name else ()  # ..._ens_de
        multi = tuple(name.split("_multi_")[1]) if name.startswith("recipe_multi_") else ()  # recipe_multi_ef
        if name.startswith(("plain_baseline", "plain_kd")):
            lr = float(name.split("_lr")[1].split("_")[0]) if "_lr" in name else 1e-3
            student, init = plain_baseline(data, paths[plain_teacher], SEED, lr, kd=name.startswith("plain_kd")), None
        elif name.startswith("recipe"):  # recipe[_kd][_d]: the shipped cifar10_distill[_kd] against A (D)
            recipe = "cifar10_distill_multi" if multi else "cifar10_distill_kd" if "_kd" in name else "cifar10_distill"
            tree = shipped_tree(recipe, [paths[t] for t in ensemble or multi or plain_teacher], SEED,
                                ensemble=bool(ensemble), keep_names=bool(multi))
            summary = run_mvmr(tree)
            student, init = summary["knn_top1"], summary.get("knn_top1_at_init")
        else:
            tree = variant_tree(table[name], SEED)
            summary = run_mvmr(tree)
            student, init = summary["knn_top1"], summary.get("knn_top1_at_init")
        distilled = table.get(name, {}).get("teachers") or ensemble or multi or plain_teacher
        best = max(knn[t] for t in distilled)  # the best teacher it distils
        epochs = EPOCHS if name.startswith(("plain_baseline", "plain_kd")) else tree["optim"]["epochs"]
        emit(bench="distill_transfer", variant=name, seed=SEED, epochs=epochs, student_knn=round(student, 2),
             teacher_knn=round(best, 2), ratio=round(student / best, 3),
             student_knn_at_init=None if init is None else round(init, 2),
             minutes=round((time.perf_counter() - started) / 60, 1))
