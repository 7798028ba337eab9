"""The catalogue of bad inputs, through the real command line (``mvmr.cli.main``, in-process for speed).

Each case asserts: exit code 2, stderr is one line ``error: ...`` naming the thing (and the fix where there is
one), no traceback, and the file tree (run folders, caches, recipes, data, HOME) is exactly as it was.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mvmr.cli import main

GOOD = {
    "method": "mvmr",
    "data": {"name": "digits", "image_size": 16, "limit": 32},
    "student": {"backbone": "resnet18", "projector": "32-16"},
    "providers": {"pixels": {"weight": 1.0}},
    "optim": {"batch_size": 8, "epochs": 1, "warmup_epochs": 0},
    "trainer": {"max_steps": 2, "num_workers": 0, "progress": False, "precision": "fp32", "checkpoint_every": 1},
    "eval": {"knn_every": 0},
}


class Payload:
    """A pickle that would create a marker file when unpickled with weights_only=False."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder with a good recipe, trained runs and damaged files of every kind."""
    w = tmp_path_factory.mktemp("world")
    good = {**GOOD, "trainer": {**GOOD["trainer"], "cache_dir": str(w / "cache")}}
    (w / "good.yaml").write_text(yaml.safe_dump(good))
    (w / "edited.yaml").write_text(yaml.safe_dump(good))
    (w / "home").mkdir()
    (w / "cwd").mkdir()
    old_cwd, old_home = os.getcwd(), os.environ.get("HOME")
    os.chdir(w / "cwd")
    os.environ["HOME"] = str(w / "home")
    try:
        for out, recipe in [("run", "good.yaml"), ("run_edit", "edited.yaml"), ("run_trunc", "good.yaml"),
                            ("run_payload", "good.yaml")]:
            try:
                main(["pretrain", str(w / recipe), "--out", str(w / out)])
            except SystemExit as exc:
                assert exc.code == 0
    finally:
        os.chdir(old_cwd)
        os.environ["HOME"] = old_home or ""
    edited = {**good, "optim": {**good["optim"], "lr": 0.05}}
    (w / "edited.yaml").write_text(yaml.safe_dump(edited))
    ckpt = w / "run" / "checkpoints" / "last.pt"
    data = ckpt.read_bytes()
    (w / "run_trunc" / "checkpoints" / "last.pt").write_bytes(data[: len(data) // 2])
    (w / "truncated.pt").write_bytes(data[: len(data) // 3])
    (w / "random.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    state = torch.load(ckpt, weights_only=True)
    payload = {**state, "extra": Payload(w / "MARKER")}
    torch.save(payload, w / "payload.pt")
    torch.save(payload, w / "run_payload" / "checkpoints" / "last.pt")
    torch.save({"state_dict": {"w": Payload(w / "MARKER")}}, w / "payload_weights.pt")
    bad = {**state, "method": {k: v.clone() for k, v in state["method"].items()}}
    first = next(k for k, v in bad["method"].items() if v.is_floating_point())
    bad["method"][first].fill_(float("nan"))
    torch.save(bad, w / "nan.pt")
    torch.save({"not": "a checkpoint"}, w / "foreign.pt")
    # npz files, each wrong in one way
    g = np.random.default_rng(1)
    x, y = g.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8), np.arange(16) % 4
    npz = w / "npz"
    npz.mkdir()
    (npz / "random.npz").write_bytes(g.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    np.savez(npz / "good.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    (npz / "truncated.npz").write_bytes((npz / "good.npz").read_bytes()[:3000])
    np.savez(npz / "lengths.npz", x_train=x, y_train=y[:10], x_test=x, y_test=y)
    rgba = np.concatenate([x, x[..., :1]], axis=-1)
    np.savez(npz / "rgba.npz", x_train=rgba, y_train=y, x_test=rgba, y_test=y)
    names = np.array([f"c{i}" for i in y])
    np.savez(npz / "strings.npz", x_train=x, y_train=names, x_test=x, y_test=names)
    np.savez(npz / "floats.npz", x_train=x / 255.0, y_train=y, x_test=x / 255.0, y_test=y)
    np.savez(npz / "missing.npz", x_train=x, y_train=y)
    np.savez(npz / "flat.npz", x_train=x[..., 0], y_train=y, x_test=x[..., 0], y_test=y)
    np.savez(npz / "empty.npz", x_train=x[:0], y_train=y[:0], x_test=x, y_test=y)
    # an ImageNet-style folder with an empty class folder
    from PIL import Image

    for split in ("train", "val"):
        for c in ("a", "b"):
            (w / "imagenet_empty" / split / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(x[i]).save(w / "imagenet_empty" / split / "a" / f"{i}.JPEG")
    (w / "a_file").write_text("not a folder")
    (w / "exports").mkdir()
    provider_recipe = {**good, "providers": {f"mvmr:{w / 'payload.pt'}": {"weight": 1.0}}}
    (w / "payload_provider.yaml").write_text(yaml.safe_dump(provider_recipe))
    (w / "list.yaml").write_text("- a\n- b\n")
    (w / "broken.yaml").write_text("optim: {lr: [1, 2\n")
    text = yaml.safe_dump(good)
    (w / "dup.yaml").write_text(text + "optim: {lr: 0.5}\n")
    (w / "dup_nested.yaml").write_text(text.replace("optim:\n", "optim:\n  lr: 0.1\n  lr: 0.2\n", 1))
    (w / "alias.yaml").write_text("method: mvmr\nproviders:\n  pixels:\n    params: &p {self: *p}\n")
    (w / "merge_dup.yaml").write_text("defaults: &d {lr: 0.1}\noptim:\n  <<: *d\n  epochs: 1\n  epochs: 2\n")
    (w / "exit_plugin.py").write_text("import sys\nsys.exit(0)\n")
    (w / "garbage.safetensors").write_bytes(b"\x00\x01garbage" * 100)
    torch.save({**state, "method": "not weights"}, w / "str_method.pt")
    torch.save({**state, "recipe": "method: mvmr"}, w / "str_recipe.pt")
    unfit = {**state, "method": {k: v for k, v in state["method"].items() if not k.endswith("running_mean")}}
    torch.save(unfit, w / "unfit.pt")
    shutil.copytree(w / "run", w / "run_strrecipe")
    torch.save({**state, "recipe": "method: mvmr"}, w / "run_strrecipe" / "checkpoints" / "last.pt")
    np.savez(npz / "chw.npz", x_train=x.transpose(0, 3, 1, 2), y_train=y, x_test=x.transpose(0, 3, 1, 2), y_test=y)
    np.savez(npz / "huge_label.npz", x_train=x, y_train=np.where(y == 0, 10**9, y), x_test=x, y_test=y)
    np.savez(npz / "other.npz", x_train=x[:12], y_train=y[:12], x_test=x, y_test=y)
    (w / "imagenet_noclass" / "train").mkdir(parents=True)
    (w / "imagenet_noclass" / "train" / "README.txt").write_text("no class folders here")
    for split, classes in (("train", ("a", "b")), ("val", ("a", "zebra"))):
        for c in classes:
            (w / "imagenet_unknown" / split / c).mkdir(parents=True)
            Image.fromarray(x[0]).save(w / "imagenet_unknown" / split / c / "0.png")
    # report folders, each with one damaged file
    for name, lines in {"rep_notjson": ['{"step": 1, "loss": 1.0}', "{oops", '{"step": 2, "loss": 0.5}'],
                        "rep_one": ['{"step": 1, "loss": 1.0}', "1"], "rep_nostep": ['{"loss": 1.0}'],
                        "rep_recipe": ['{"step": 1, "loss": 1.0}'], "rep_summary": ['{"step": 1, "loss": 1.0}']}.items():
        (w / name).mkdir()
        (w / name / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (w / "rep_recipe" / "recipe.yaml").write_text("method: [mvmr\n")
    (w / "rep_summary" / "summary.json").write_text('{"knn_top1": 5')
    npz_run = {**good, "data": {"name": "npz", "root": str(npz / "good.npz"), "image_size": 16}}
    (w / "npz_run.yaml").write_text(yaml.safe_dump(npz_run))
    try:
        main(["pretrain", str(w / "npz_run.yaml"), "--out", str(w / "run_npz")])
    except SystemExit as exc:
        assert exc.code == 0
    shutil.rmtree(w / "cwd")
    (w / "cwd").mkdir()
    return w


def P(*args):  # pretrain with the good recipe and overrides
    return ("pretrain", "{w}/good.yaml", "--out", "{w}/new", *[a for o in args for a in ("--set", o)])


def NPZ(name):
    return P("data.name=npz", f"data.root={{w}}/npz/{name}.npz", "data.limit=null")


CASES = {
    # recipes
    "recipe-missing": (("pretrain", "{w}/nope.yaml"), ["nope.yaml", "does not exist"]),
    "recipe-is-folder": (("pretrain", "{w}/npz"), ["folder"]),
    "recipe-not-yaml": (("pretrain", "{w}/broken.yaml"), ["broken.yaml", "not valid YAML"]),
    "recipe-a-list": (("pretrain", "{w}/list.yaml"), ["mapping of sections"]),
    "unknown-section": (P("foo.bar=1"), ["unknown key 'foo'"]),
    "unknown-key": (P("optim.lrr=1"), ["optim.lrr"]),
    "lr-not-a-number": (P("optim.lr=abc"), ["optim.lr"]),
    "lr-negative": (P("optim.lr=-1"), ["optim.lr", "greater than 0"]),
    "batch-of-one": (P("optim.batch_size=1"), ["optim.batch_size"]),
    "accumulate-zero": (P("optim.accumulate=0"), ["optim.accumulate"]),
    "image-size-tiny": (P("data.image_size=4"), ["data.image_size"]),
    "knn-every-negative": (P("eval.knn_every=-1"), ["eval.knn_every"]),
    "set-without-equals": (P("optim.lr"), ["--set", "section.key=value"]),
    "set-into-a-value": (P("data.name.x=1"), ["'name' is not a section"]),
    "unknown-method": (P("method=simclr"), ["unknown method 'simclr'"]),
    "unknown-optimizer": (P("optim.name=rmsprop"), ["optim.name"]),
    "unknown-precision": (P("trainer.precision=fp8"), ["trainer.precision"]),
    "unknown-assigner": (P("method=mira", "mira.assigner=kmeans"), ["mira.assigner"]),
    "device-tpu9": (P("trainer.device=tpu9"), ["trainer.device 'tpu9'", "cpu"]),
    "unknown-backbone": (P("student.backbone=resnet9000"), ["student.backbone 'resnet9000'"]),
    "bad-projector": (P("student.projector=wide"), ["student.projector", "8192-8192-8192"]),
    "small-stem-removed": (P("student.small_stem=true"), ["unknown key 'student.small_stem'"]),
    "other-methods-section": (P("mira.prototypes=10"), ["section 'mira' belongs to method 'mira'"]),
    "projector-bias-hidden-removed": (P("student.projector_bias=hidden"), ["student.projector_bias"]),
    "stem-on-timm": (P("student.backbone=timm:resnet18", "student.stem=small_kernel"), ["student.stem", "timm"]),
    "unknown-stem": (P("student.stem=tiny"), ["student.stem"]),
    "accumulate-uneven": (P("optim.accumulate=3"), ["optim.accumulate=3", "equal micro-batches"]),
    "unknown-objective": (P("providers.pixels.objective=cosin"), ["unknown objective 'cosin'", "cosine"]),
    "batch-exceeds-data": (P("optim.batch_size=64"), ["optim.batch_size=64", "exceeds"]),
    "unknown-provider": (P("providers.hogg.weight=1"), ["unknown provider 'hogg'", "did you mean 'hog'"]),
    "provider-bad-param": (P("providers.hog.params.bins=3"), ["hog", "no parameter 'bins'", "orientations"]),
    "provider-bad-value": (P("providers.hog.params.orientations=0"), ["orientations must be"]),
    "scatnet-bad-J": (P("providers.scatnet.params.J=0"), ["scatnet", "J and L"]),
    "unknown-dataset": (P("data.name=mnist9"), ["unknown dataset 'mnist9'"]),
    # data on disk
    "stl10-missing": (P("data.name=stl10", "data.root={w}/nowhere"), ["stl10", "data.download=true"]),
    "cifar10-missing": (P("data.name=cifar10", "data.root={w}/nowhere"), ["cifar10", "data.root"]),
    "cifar100-missing": (P("data.name=cifar100", "data.root={w}/nowhere"), ["cifar100", "data.root"]),
    "imagefolder-missing": (P("data.name=imagefolder", "data.root={w}/nowhere"), ["imagefolder", "data.root"]),
    "imagefolder-empty-class": (P("data.name=imagefolder", "data.root={w}/imagenet_empty", "data.limit=null"),
                                ["imagenet_empty", "add images", "remove it"]),
    "npz-missing": (NPZ("nope"), ["npz", "data.root"]),
    "npz-random-bytes": (NPZ("random"), ["random.npz", "not a readable .npz"]),
    "npz-truncated": (NPZ("truncated"), ["truncated.npz", "not a readable .npz"]),
    "npz-lengths-differ": (NPZ("lengths"), ["16 images", "10 labels"]),
    "npz-rgba": (NPZ("rgba"), ["4 channels", "alpha"]),
    "npz-string-labels": (NPZ("strings"), ["y_train", "integer class indices"]),
    "npz-float-images": (NPZ("floats"), ["x_train", "uint8"]),
    "npz-missing-arrays": (NPZ("missing"), ["lacks arrays", "x_test"]),
    "npz-no-channels": (NPZ("flat"), ["x_train", "(N, H, W, C)"]),
    "npz-empty": (NPZ("empty"), ["x_train is empty"]),
    # runs and resume
    "out-holds-a-run": (("pretrain", "{w}/good.yaml", "--out", "{w}/run"), ["already holds a run", "--resume"]),
    "resume-without-checkpoint": (("pretrain", "{w}/good.yaml", "--out", "{w}/new", "--resume"), ["no checkpoint"]),
    "resume-truncated": (("pretrain", "{w}/good.yaml", "--out", "{w}/run_trunc", "--resume"),
                         ["run_trunc/checkpoints/last.pt", "truncated", "start over"]),
    "resume-edited-recipe": (("pretrain", "{w}/edited.yaml", "--out", "{w}/run_edit", "--resume"),
                             ["edited.yaml was edited", "optim.lr", "run_edit/recipe.yaml"]),
    "resume-other-recipe": (("pretrain", "{w}/edited.yaml", "--out", "{w}/run", "--resume"),
                            ["not the recipe of this run", "optim.lr"]),
    "resume-set-changes-math": (("pretrain", "{w}/good.yaml", "--out", "{w}/run", "--resume", "--set",
                                 "optim.lr=0.1"), ["--set optim.lr", "would change"]),
    "resume-payload": (("pretrain", "{w}/good.yaml", "--out", "{w}/run_payload", "--resume"), ["refused to unpickle"]),
    "provider-payload-checkpoint": (("pretrain", "{w}/payload_provider.yaml", "--out", "{w}/new"),
                                    ["payload.pt", "refused to unpickle"]),
    # distillation
    "distill-unknown-teacher": (("distill", "{w}/good.yaml", "--teacher", "clip-vit-b61", "--out", "{w}/new"),
                                ["unknown teacher 'clip-vit-b61'", "did you mean"]),
    "distill-offline-tag": (("distill", "{w}/good.yaml", "--teacher", "clip-vit-b16", "--out", "{w}/new"),
                            ["laion400m_e32", "--teacher-weights", "pretrained: none"]),
    "distill-weights-missing": (("distill", "{w}/good.yaml", "--teacher", "timm:resnet18", "--teacher-weights",
                                 "{w}/nope.pt", "--out", "{w}/new"), ["nope.pt", "does not exist"]),
    "distill-weights-garbage": (("distill", "{w}/good.yaml", "--teacher", "timm:resnet18", "--teacher-weights",
                                 "{w}/random.pt", "--out", "{w}/new"), ["random.pt", "could not be read"]),
    "distill-weights-payload": (("distill", "{w}/good.yaml", "--teacher", "timm:resnet18", "--teacher-weights",
                                 "{w}/payload_weights.pt", "--out", "{w}/new"), ["payload_weights.pt"]),
    "distill-mvmr-teacher-missing": (("distill", "{w}/good.yaml", "--teacher", "mvmr:{w}/nope.pt", "--out",
                                      "{w}/new"), ["nope.pt", "does not exist"]),
    "distill-mvmr-teacher-payload": (("distill", "{w}/good.yaml", "--teacher", "mvmr:{w}/payload.pt", "--out",
                                      "{w}/new"), ["refused to unpickle"]),
    # eval
    "eval-unknown-protocol": (("eval", "kmeans", "{w}/run/checkpoints/last.pt"), ["unknown protocol 'kmeans'"]),
    "eval-missing-checkpoint": (("eval", "knn", "{w}/nope.pt"), ["nope.pt", "does not exist"]),
    "eval-checkpoint-is-folder": (("eval", "knn", "{w}/run"), ["folder"]),
    "eval-random-bytes": (("eval", "knn", "{w}/random.pt"), ["random.pt", "not a torch checkpoint"]),
    "eval-truncated": (("eval", "knn", "{w}/truncated.pt"), ["truncated.pt", "truncated"]),
    "eval-foreign-file": (("eval", "knn", "{w}/foreign.pt"), ["not an mvmr checkpoint"]),
    "eval-payload": (("eval", "knn", "{w}/payload.pt"), ["refused to unpickle"]),
    "eval-nan-weights": (("eval", "knn", "{w}/nan.pt"), ["NaN or Inf", "earlier checkpoint"]),
    "eval-k-zero": (("eval", "knn", "{w}/run/checkpoints/last.pt", "--k", "0"), ["--k"]),
    "eval-limit-zero": (("eval", "knn", "{w}/run/checkpoints/last.pt", "--limit", "0"), ["--limit"]),
    "eval-unknown-dataset": (("eval", "knn", "{w}/run/checkpoints/last.pt", "--data", "name=mnist9"),
                             ["unknown dataset 'mnist9'"]),
    "eval-data-without-equals": (("eval", "knn", "{w}/run/checkpoints/last.pt", "--data", "cifar10"),
                                 ["section.key=value"]),
    "eval-clusters-on-mvmr": (("eval", "clusters", "{w}/run/checkpoints/last.pt"), ["no clustering head"]),
    # export
    "export-to-proc": (("export", "{w}/run/checkpoints/last.pt", "/proc/mvmr_backbone.pt"), ["/proc", "writable"]),
    "export-parent-is-file": (("export", "{w}/run/checkpoints/last.pt", "{w}/a_file/backbone.pt"),
                              ["a_file", "is a file"]),
    "export-to-folder": (("export", "{w}/run/checkpoints/last.pt", "{w}/exports"), ["is a folder", "backbone.pt"]),
    "export-onto-input": (("export", "{w}/run/checkpoints/last.pt", "{w}/run/checkpoints/last.pt"),
                          ["is the checkpoint being exported"]),
    "export-payload": (("export", "{w}/payload.pt", "{w}/exports/b.pt"), ["refused to unpickle"]),
    "export-nan-weights": (("export", "{w}/nan.pt", "{w}/exports/b.pt"), ["NaN or Inf"]),
    "export-missing-checkpoint": (("export", "{w}/nope.pt", "{w}/exports/b.pt"), ["does not exist"]),
    # cache
    "cache-clear-empty-dir": (("cache", "clear", "--dir", ""), ["--dir is empty"]),
    "cache-clear-missing-dir": (("cache", "clear", "--dir", "{w}/nowhere"), ["nowhere", "does not exist"]),
    "cache-clear-dir-is-file": (("cache", "clear", "--dir", "{w}/a_file"), ["a_file", "not a folder"]),
    "cache-build-missing-recipe": (("cache", "build", "{w}/nope.yaml"), ["does not exist"]),
    # the command line itself
    "no-arguments-to-pretrain": (("pretrain",), ["Missing argument", "mvmr pretrain --help"]),
    "unknown-command": (("pretrian",), ["No such command", "mvmr --help"]),
    "unknown-option": (("pretrain", "{w}/good.yaml", "--sett", "a=b"), ["--sett"]),
    "image-size-zero": (("extractors", "list", "--image-size", "0"), ["--image-size"]),
    # --- round 3: recipe values (each refused before anything is written) ---
    "crop-scale-negative": (P("data.augment.crop_scale=[-1,0]"), ["data.augment.crop_scale", "0.0 < lo"]),
    "crop-scale-reversed": (P("data.augment.crop_scale=[0.9,0.2]"), ["data.augment.crop_scale"]),
    "crop-scale-above-one": (P("data.augment.crop_scale=[0.5,2]"), ["data.augment.crop_scale"]),
    "warmup-infinite": (P("optim.warmup_epochs=.inf"), ["optim.warmup_epochs", "finite"]),
    "lr-nan": (P("optim.lr=.nan"), ["optim.lr", "finite"]),
    "momentum-nan": (P("optim.momentum=.nan"), ["optim.momentum", "finite"]),
    "momentum-negative": (P("optim.momentum=-0.5"), ["optim.momentum"]),
    "weight-decay-inf": (P("optim.weight_decay=.inf"), ["optim.weight_decay", "finite"]),
    "provider-weight-nan": (P("providers.pixels.weight=.nan"), ["providers.pixels.weight", "finite"]),
    "provider-weight-inf": (P("providers.pixels.weight=-.inf"), ["providers.pixels.weight", "finite"]),
    "loss-weight-nan": (P("loss.mse=.nan"), ["loss.mse", "finite"]),
    "seed-huge": (P("trainer.seed=99999999999999999999999"), ["trainer.seed"]),
    "seed-negative": (P("trainer.seed=-1"), ["trainer.seed"]),
    "knn-k-negative": (P("eval.knn_k=-1"), ["eval.knn_k"]),
    "knn-t-zero": (P("eval.knn_t=0"), ["eval.knn_t", "greater than 0"]),
    "knn-t-nan": (P("eval.knn_t=.nan"), ["eval.knn_t"]),
    "flip-p-five": (P("data.augment.flip_p=5"), ["data.augment.flip_p", "less than or equal to 1"]),
    "gray-p-negative": (P("data.augment.gray_p=-3"), ["data.augment.gray_p"]),
    "jitter-p-above-one": (P("data.augment.jitter_p=1.5"), ["data.augment.jitter_p"]),
    "blur-p-negative": (P("data.augment.blur_p=-0.1"), ["data.augment.blur_p"]),
    "jitter-negative": (P("data.augment.jitter=[-1,0.8,0.8,0.2]"), ["data.augment.jitter", "≥ 0"]),
    "hue-above-half": (P("data.augment.jitter=[0.8,0.8,0.8,0.9]"), ["data.augment.jitter", "hue"]),
    "blur-sigma-zero": (P("data.augment.blur_sigma=[0,0]"), ["data.augment.blur_sigma"]),
    "blur-sigma-reversed": (P("data.augment.blur_sigma=[2,1]"), ["data.augment.blur_sigma"]),
    "pad-as-large-as-image": (P("data.augment.crop=pad", "data.augment.pad=16"), ["data.augment.pad=16",
                                                                                  "data.image_size=16"]),
    "image-size-huge": (P("data.image_size=1000000"), ["data.image_size", "4096"]),
    "projector-zero": (P("student.projector=0"), ["student.projector", "widths ≥ 1"]),
    "projector-negative-width": (P("student.projector=32--16"), ["student.projector"]),
    "recursive-alias": (("pretrain", "{w}/alias.yaml", "--out", "{w}/new"), ["alias.yaml", "recursive YAML alias"]),
    "duplicate-section": (("pretrain", "{w}/dup.yaml", "--out", "{w}/new"), ["dup.yaml", "'optim' appears twice"]),
    "duplicate-nested-key": (("pretrain", "{w}/dup_nested.yaml", "--out", "{w}/new"), ["'lr' appears twice"]),
    "set-empty-key": (P("=5"), ["--set '=5'", "nothing before '='"]),
    "set-empty-part": (P("optim..lr=1"), ["empty part"]),
    "set-unquoted-provider-path": (P("providers.mvmr:{w}/run/checkpoints/last.pt.weight=2"),
                                   ["must be quoted", 'providers."mvmr:{w}/run/checkpoints/last.pt".weight']),
    # providers and objectives
    "scatnet-J-too-large": (P("providers.scatnet.params.J=4", "data.image_size=8"), ["scatnet", "J=4", "16 px"]),
    "hog-at-8px": (P("providers.hog.weight=1", "data.image_size=8"), ["provider 'hog'", "fewer than a 3x3 block"]),
    "objective-param-typo": (P("providers.pixels.objective=mse", "providers.pixels.objective_params.hiddn=64"),
                             ["providers.pixels.objective_params", "'hiddn'", "did you mean 'hidden'"]),
    "objective-queue-negative": (P("providers.pixels.objective=seed", "providers.pixels.objective_params.queue=-5"),
                                 ["providers.pixels.objective_params", "queue must be ≥ 0"]),
    "objective-param-wrong-type": (P("providers.pixels.objective=mse",
                                     "providers.pixels.objective_params.hidden=wide"), ["providers.pixels"]),
    # backbone and device
    "backbone-without-linear-head": (P("student.backbone=squeezenet1_0"), ["squeezenet1_0", "no Linear layer"]),
    "device-mps": (P("trainer.device=mps"), ["trainer.device 'mps'", "cpu"]),
    "device-meta": (P("trainer.device=meta"), ["trainer.device 'meta'", "cannot train"]),
    # output paths
    "out-is-a-file": (("pretrain", "{w}/good.yaml", "--out", "{w}/a_file"), ["--out", "a_file", "is a file"]),
    "out-is-the-checkpoint": (("pretrain", "{w}/good.yaml", "--out", "{w}/run/checkpoints/last.pt"),
                              ["last.pt", "is a file"]),
    "out-under-a-file": (("pretrain", "{w}/good.yaml", "--out", "{w}/a_file/run"), ["a_file", "is a file"]),
    "out-read-only": (("pretrain", "{w}/good.yaml", "--out", "/proc/mvmr_run"), ["/proc", "cannot write"]),
    "out-empty": (("pretrain", "{w}/good.yaml", "--out", ""), ["--out is empty"]),
    "cache-dir-is-a-file": (P("trainer.cache_dir={w}/a_file"), ["trainer.cache_dir", "a_file", "is a file"]),
    "distill-out-empty": (("distill", "{w}/good.yaml", "--out", ""), ["--out is empty"]),
    "report-out-is-a-file": (("report", "{w}/run", "--out", "{w}/a_file"), ["a_file", "is a file"]),
    # mvmr report on damaged run folders
    "report-line-not-json": (("report", "{w}/rep_notjson"), ["rep_notjson", "line 2", "not JSON"]),
    "report-line-a-number": (("report", "{w}/rep_one"), ["line 2", "not a record"]),
    "report-loss-without-step": (("report", "{w}/rep_nostep"), ["line 1", "no integer 'step'"]),
    "report-corrupt-recipe": (("report", "{w}/rep_recipe"), ["rep_recipe/recipe.yaml", "damaged"]),
    "report-corrupt-summary": (("report", "{w}/rep_summary"), ["rep_summary/summary.json", "damaged"]),
    "report-not-a-run": (("report", "{w}/npz"), ["not a run folder"]),
    # checkpoints
    "eval-method-a-string": (("eval", "knn", "{w}/str_method.pt"), ["str_method.pt", "not a state_dict"]),
    "eval-recipe-a-string": (("eval", "knn", "{w}/str_recipe.pt"), ["str_recipe.pt", "not a mapping"]),
    "resume-recipe-a-string": (("pretrain", "{w}/good.yaml", "--out", "{w}/run_strrecipe", "--resume"),
                               ["run_strrecipe", "not a mapping"]),
    "export-method-a-string": (("export", "{w}/str_method.pt", "{w}/exports/b.pt"), ["not a state_dict"]),
    "eval-weights-do-not-fit": (("eval", "knn", "{w}/unfit.pt"), ["do not fit", "missing", "running_mean"]),
    "distill-weights-garbage-safetensors": (("distill", "{w}/good.yaml", "--teacher", "timm:resnet18",
                                             "--teacher-weights", "{w}/garbage.safetensors", "--out", "{w}/new"),
                                            ["garbage.safetensors", "could not be read"]),
    "distill-weights-folder": (("distill", "{w}/good.yaml", "--teacher", "timm:resnet18", "--teacher-weights",
                                "{w}/exports", "--out", "{w}/new"), ["exports", "is a folder"]),
    "distill-mvmr-teacher-folder": (("distill", "{w}/good.yaml", "--teacher", "mvmr:{w}/run", "--out", "{w}/new"),
                                    ["is a folder", "last.pt"]),
    "eval-checkpoint-folder-says-folder": (("eval", "knn", "{w}/exports"), ["is a folder"]),
    # evaluation
    "eval-linear-one-class": (("eval", "linear", "{w}/run/checkpoints/last.pt", "--limit", "1"),
                              ["single class", "--limit"]),
    "npz-label-huge": (NPZ("huge_label"), ["class index 1000000000", "0..C-1"]),
    # data: wrong fixes no longer suggested
    "npz-channels-first": (NPZ("chw"), ["channels-first", "transpose(0, 2, 3, 1)"]),
    "npz-root-is-folder": (P("data.name=npz", "data.root={w}/npz"), ["is a folder", "the .npz file itself"]),
    "npz-missing-no-download-hint": (NPZ("absent"), ["npz", "data.root"]),
    "imagefolder-no-class-folders": (P("data.name=imagefolder", "data.root={w}/imagenet_noclass", "data.limit=null"),
                                     ["has no class folders", "<class>"]),
    "imagefolder-val-unknown-class": (P("data.name=imagefolder", "data.root={w}/imagenet_unknown",
                                        "data.limit=null", "eval.knn_every=1", "optim.batch_size=2"),
                                      ["'zebra'", "train/"]),
    "cifar10-root-is-a-file": (P("data.name=cifar10", "data.root={w}/a_file"), ["data.root", "is a file"]),
    "cifar10-download-offline": (P("data.name=cifar10", "data.root={w}/downloads/cifar", "data.download=true"),
                                 ["cifar10", "could not fetch", "data.root"]),
    "resume-data-moved-to-other-data": (("pretrain", "{w}/npz_run.yaml", "--out", "{w}/run_npz", "--resume",
                                         "--set", "data.root={w}/npz/other.npz"), ["other.npz", "length 16 vs 12"]),
    # silent acceptance, now refused
    "distill-resume-objective": (("distill", "{w}/good.yaml", "--out", "{w}/run", "--resume", "--objective",
                                  "cosine"), ["--objective", "resume without"]),
    "distill-resume-teacher-weights": (("distill", "{w}/good.yaml", "--out", "{w}/run", "--resume",
                                        "--teacher-weights", "{w}/random.pt"), ["--teacher-weights"]),
    "plugin-exits-on-import": (("pretrain", "{w}/good.yaml", "--out", "{w}/new", "--import", "{w}/exit_plugin.py"),
                               ["exit_plugin.py", "sys.exit(0)"]),
    "cache-info-missing-dir": (("cache", "info", "--dir", "{w}/nowhere"), ["nowhere", "does not exist"]),
    "cache-info-dir-is-file": (("cache", "info", "--dir", "{w}/a_file"), ["a_file", "not a folder"]),
    # misleading detail, now named right
    "teacher-unknown-torchvision-model": (("distill", "{w}/good.yaml", "--teacher", "torchvision:notamodel", "--out",
                                           "{w}/new"), ["teacher 'torchvision:notamodel'"]),
    "teacher-torchvision-offline": (("distill", "{w}/good.yaml", "--teacher", "torchvision:resnet18", "--out",
                                     "{w}/new"), ["torchvision:resnet18", "--teacher-weights", "pretrained: none"]),
}
CASES.update({
    # values a section's validator now refuses
    "local-scale-negative": (P("loss.local_scale=[-1,3]"), ["local_scale", "0.0 < lo"]),
    "local-scale-reversed": (P("loss.local_scale=[0.9,0.1]"), ["local_scale"]),
    "mira-ema-above-one": (P("method=mira", "mira.ema=[1.5,2.0]"), ["mira.ema", "[0, 1]"]),
    "mira-beta-one": (P("method=mira", "mira.beta=[1.0,0.5]"), ["mira.beta", "[0, 1)"]),
    "kd-on-teacher-features": (P("providers.torchvision:resnet18.objective=kd",
                                 "providers.torchvision:resnet18.params.pretrained=none"),
                               ["objective kd", "params.output: logits"]),
    "rkd-both-weights-zero": (P("providers.pixels.objective=rkd", "providers.pixels.objective_params.distance_weight=0",
                                "providers.pixels.objective_params.angle_weight=0"), ["distance_weight", "not both 0"]),
    "yaml-merge-key-duplicate": (("pretrain", "{w}/merge_dup.yaml"), ["'epochs' appears twice"]),
    # the teacher bank
    "bank-on-cross-view": (P("providers.pixels.bank=2"), ["providers.pixels.bank=2", "view: augmented"]),
    "bank-spatial": (P("providers.pixels.bank=2", "providers.pixels.view=augmented",
                       "providers.pixels.representation=spatial"), ["feature maps are not banked"]),
    "bank-two-periods": (P("providers.pixels.bank=2", "providers.pixels.view=augmented", "providers.lsd.bank=3",
                           "providers.lsd.view=augmented"), ["share one bank period", "pixels: 2", "lsd: 3"]),
    "bank-without-cache": (P("providers.pixels.bank=2", "providers.pixels.view=augmented", "trainer.use_cache=false"),
                           ["use_cache=true"]),
    "bank-with-mixup": (P("providers.pixels.bank=2", "providers.pixels.view=augmented", "data.mixup=0.2"),
                        ["mixup", "bank: 0"]),
    "bank-dtype-unknown": (P("providers.pixels.bank_dtype=int8"), ["bank_dtype"]),
    "bank-negative": (P("providers.pixels.bank=-1"), ["providers.pixels.bank"]),
    "cache-build-bank-on-cross-view": (("cache", "build", "{w}/good.yaml", "--set", "providers.pixels.bank=2"),
                                       ["providers.pixels.bank=2", "view: augmented"]),
    # EfficientNet-Lite teachers
    "lite-bad-pretrained": (P("providers.efficientnet-lite0.params.pretrained=xyz"),
                            ["efficientnet-lite0", "pretrained must be imagenet or none"]),
    "lite-bad-output": (P("providers.efficientnet-lite0.params.output=map"), ["output must be features or logits"]),
    "lite-weights-missing": (P("providers.efficientnet-lite0.params.weights={w}/nope.pth"), ["nope.pth", "does not exist"]),
    "lite-weights-of-another-net": (P("providers.efficientnet-lite0.params.weights={w}/unfit.pt"),
                                    ["efficientnet-lite0", "does not fit"]),
    "set-section-to-a-list": (P("optim=[1,2]"), ["optim"]),
})
if importlib.util.find_spec("tensorboard") is None:
    CASES["tensorboard-missing"] = (P("trainer.tensorboard=true"), ["tensorboard", "pip install"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, world, run_main, monkeypatch):
    argv, needles = CASES[case]
    monkeypatch.chdir(world / "cwd")
    monkeypatch.setenv("HOME", str(world / "home"))
    before = snapshot(world)
    code, out, err = run_main(*[a.replace("{w}", str(world)) for a in argv])
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle.replace("{w}", str(world)) in lines[0], (needle, lines[0])
    after = snapshot(world)
    assert after == before, ("the file tree changed", sorted(set(after) ^ set(before)),
                             sorted(k for k in set(after) & set(before) if after[k] != before[k]))
    assert not (world / "MARKER").exists(), "a pickle payload ran"


def test_catalogue_is_large():
    assert len(CASES) >= 190


def test_cuda_asked_for_without_cuda(world, run_main, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.chdir(world / "cwd")
    before = snapshot(world)
    code, _, err = run_main(*[a.replace("{w}", str(world)) for a in P("trainer.device=cuda")])
    assert code == 2 and err.strip().count("\n") == 0 and "no CUDA device" in err
    assert snapshot(world) == before


def test_corrupt_jpeg_is_skipped_with_one_warning_and_the_run_completes(tmp_path, run_main, monkeypatch):
    """Policy for an unreadable image (chosen over failing): report it once, substitute the next image, finish."""
    from PIL import Image

    g = np.random.default_rng(4)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / "inet" / split / c).mkdir(parents=True)
            for i in range(5):
                Image.fromarray(g.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
                    tmp_path / "inet" / split / c / f"{i}.JPEG")
    broken = tmp_path / "inet" / "train" / "a" / "2.JPEG"
    broken.write_bytes(broken.read_bytes()[:40])
    recipe = {**GOOD, "data": {"name": "imagefolder", "root": str(tmp_path / "inet"), "image_size": 16},
              "optim": {**GOOD["optim"], "batch_size": 10},  # every image in every step
              "trainer": {**GOOD["trainer"], "cache_dir": str(tmp_path / "cache"), "max_steps": 2}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    code, _, err = run_main("pretrain", tmp_path / "r.yaml", "--out", tmp_path / "run")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "2.JPEG" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: skipping unreadable image")
    assert (tmp_path / "run" / "summary.json").is_file()
