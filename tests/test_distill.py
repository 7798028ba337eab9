"""`mvmr distill`: two CPU steps with a random ViT-B/16, a tiny timm teacher and an mvmr checkpoint as teachers;
teacher weights from a file; the missing-weights error before training; `mvmr cache` commands."""
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mvmr.cli import app

RECIPES = Path(__file__).parent.parent / "recipes"


TINY_RUN = ["data.name=digits", "data.limit=16", "data.image_size=32", "student.backbone=resnet18",
            "student.projector=32", "optim.batch_size=8", "trainer.max_steps=2", "trainer.num_workers=0",
            "trainer.progress=false", "trainer.precision=fp32", "eval.knn_every=0"]  # two CPU steps on 16 digits


def distill_args(root: Path, *extra: str, out: str = "run") -> list[str]:
    """`mvmr distill EXTRA` as a two-step CPU run writing root/OUT, its feature cache under root/cache."""
    args = ["distill", *extra, "--out", str(root / out)]
    for o in [*TINY_RUN, f"trainer.cache_dir={root / 'cache'}"]:
        args += ["--set", o]
    return args


def _distill(tmp_path, teacher, *extra, out="run", recipe=None):
    args = distill_args(tmp_path, "--teacher", teacher, *([str(recipe)] if recipe else []), out=out)
    args += list(extra)
    return CliRunner().invoke(app, args)


def test_distill_random_clip_two_steps_headline_and_paper_form_with_cache(tmp_path):
    """The headline recipe (cos + smooth-L1 on the cross view) and the paper's form (1 − dCor on the cross view):
    both read the teacher's original-view features from one cache."""
    result = _distill(tmp_path, "clip-vit-b16", "--set", "providers.clip-vit-b16.params.pretrained=none")
    assert result.exit_code == 0, result.output + repr(result.exception)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "loss" in r][-1]
    assert "cos_smoothl1/clip-vit-b16" in last and all(torch.isfinite(torch.tensor(v)) for v in last.values())
    assert len(list((tmp_path / "cache").glob("[0-9a-f]" * 24))) == 1  # the teacher's original-view features
    result = _distill(tmp_path, "clip-vit-b16", "--set", "providers.clip-vit-b16.params.pretrained=none",
                      out="paper", recipe="stl10_distill_clip_paper")
    assert result.exit_code == 0, result.output + repr(result.exception)
    recipe = (tmp_path / "paper" / "recipe.yaml").read_text()
    assert "clip-vit-b16" in recipe
    records = [json.loads(line) for line in (tmp_path / "paper" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "loss" in r][-1]
    assert "dcor/clip-vit-b16" in last and all(torch.isfinite(torch.tensor(v)) for v in last.values())
    info = CliRunner().invoke(app, ["cache", "info", "--dir", str(tmp_path / "cache")])
    assert "clip-vit-b16" in info.output and "16x512" in info.output
    cleared = CliRunner().invoke(app, ["cache", "clear", "--dir", str(tmp_path / "cache")])
    assert "removed 2" in cleared.output  # the headline's teacher runs in half precision on a GPU: its own cache


def test_distill_missing_weights_fails_before_training(tmp_path):
    result = _distill(tmp_path, "clip-vit-b16")
    assert result.exit_code != 0
    assert "laion400m_e32" in str(result.exception) and "--teacher-weights" in str(result.exception)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_distill_timm_teacher_from_weights_file(tmp_path):
    import timm

    torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=0).state_dict(), tmp_path / "t.pt")
    result = _distill(tmp_path, "timm:resnet10t", "--teacher-weights", str(tmp_path / "t.pt"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "timm:resnet10t" in (tmp_path / "run" / "recipe.yaml").read_text()


def test_student_checkpoint_as_teacher_and_cache_build(tmp_path):
    assert _distill(tmp_path, "timm:resnet10t", "--set", "providers.timm:resnet10t.params.pretrained=none",
                    out="first").exit_code == 0
    ckpt = tmp_path / "first" / "checkpoints" / "last.pt"
    # A run whose only term is its teacher's (an adaptor head, no view terms) loads for export, eval and as a teacher.
    exported = CliRunner().invoke(app, ["export", str(ckpt), str(tmp_path / "backbone.pt")])
    assert exported.exit_code == 0, exported.output + repr(exported.exception)
    from mvmr.checkpoint import load_student

    _, student = load_student(ckpt)
    assert set(torch.load(tmp_path / "backbone.pt")) == set(student.backbone.state_dict())
    evaluated = CliRunner().invoke(app, ["eval", "knn", str(ckpt), "--limit", "16", "--data", "limit=16"])
    assert evaluated.exit_code == 0 and "top1" in evaluated.output, evaluated.output + repr(evaluated.exception)
    result = _distill(tmp_path, f"mvmr:{ckpt}", out="second")
    assert result.exit_code == 0, result.output + repr(result.exception)
    built = CliRunner().invoke(app, ["cache", "build", str(RECIPES / "quickstart.yaml"), "--set", "data.limit=16",
                                     "--set", f"trainer.cache_dir={tmp_path / 'c2'}", "--set", "trainer.num_workers=0"])
    assert built.exit_code == 0, built.output
    assert built.output.count("complete") == 3


@pytest.mark.parametrize("recipe, term", [("cifar10_distill", "cos_smoothl1"), ("cifar10_distill_kd", "kd")])
def test_cifar10_distill_recipes_on_npz_with_a_classifier_teacher(tmp_path, npz_path, recipe, term):
    """The shipped CIFAR recipes, by name, with a full classifier checkpoint as the teacher (read as features, head
    dropped; or as class logits)."""
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "teacher.pt")
    args = ["distill", "--teacher", "torchvision:resnet18", recipe, "--teacher-weights",
            str(tmp_path / "teacher.pt"), "--out", str(tmp_path / "run")]
    for o in [f"data.root={npz_path}", "optim.batch_size=8", "trainer.max_steps=2", "trainer.num_workers=0",
              "trainer.progress=false", "eval.knn_every=0", f"trainer.cache_dir={tmp_path / 'cache'}"]:
        args += ["--set", o]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert f"{term}/torchvision:resnet18" in [r for r in records if "loss" in r][-1]


def test_with_teachers_replaces_the_teachers_and_keeps_their_term_settings(tmp_path):
    from mvmr.distill import with_teachers

    def with_teacher(providers, name, weights=None, objective=None):
        return with_teachers(providers, [name], [weights] if weights else [], objective)
    from mvmr.errors import RegistryError

    providers = {"pixels": {"weight": 0.5},
                 "clip-vit-b16": {"weight": 2.0, "objective": "mse", "view": "augmented", "representation": "backbone",
                                  "objective_params": {"hidden": 0}, "params": {"pretrained": "none"}}}
    swapped = with_teacher(providers, "timm:resnet10t")
    assert list(swapped) == ["pixels", "timm:resnet10t"] and swapped["pixels"] == {"weight": 0.5}
    assert swapped["timm:resnet10t"] == {"weight": 2.0, "objective": "mse", "view": "augmented",
                                         "representation": "backbone", "objective_params": {"hidden": 0}, "params": {}}
    same = with_teacher(providers, "clip-vit-b16", weights=tmp_path / "w.pt", objective="cosine")
    assert same["clip-vit-b16"]["params"] == {"pretrained": "none", "weights": str((tmp_path / "w.pt").resolve())}
    assert same["clip-vit-b16"]["objective"] == "cosine" and same["clip-vit-b16"]["objective_params"] == {}
    assert with_teacher({"pixels": {"weight": 1.0}}, "clip-vit-b16")["clip-vit-b16"] == {"weight": 1.0, "params": {}}
    with pytest.raises(RegistryError, match="did you mean"):
        with_teacher(providers, "clip-vit-b61")
    assert providers["clip-vit-b16"]["objective"] == "mse"  # the input is not modified


def test_with_teachers_reads_a_new_teacher_as_logits_like_the_recipes_or_refuses_it():
    """A recipe that distils class logits (objective kd, output: logits) gives a new classifier teacher the same
    reading; a teacher with no logits to give is one clear line, unless --objective distils its features."""
    from mvmr.distill import with_teachers
    from mvmr.errors import ConfigError

    providers = {"torchvision:resnet18": {"weight": 1.0, "objective": "kd", "view": "augmented",
                                          "representation": "backbone", "params": {"output": "logits", "size": 32}}}
    two = with_teachers(providers, ["torchvision:resnet18", "torchvision:resnet34"])
    assert two["torchvision:resnet34"]["params"] == {"output": "logits"} and two["torchvision:resnet34"]["objective"] == "kd"
    with pytest.raises(ConfigError, match="cannot give; add --objective cos_smoothl1"):
        with_teachers(providers, ["clip-vit-b16"])
    features = with_teachers(providers, ["clip-vit-b16"], objective="cos_smoothl1")["clip-vit-b16"]
    assert features["params"] == {} and features["objective"] == "cos_smoothl1"
