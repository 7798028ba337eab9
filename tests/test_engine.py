"""Training runs: every shipped recipe for two CPU steps, resume equivalence, export, CLI errors."""
import copy
import json
from pathlib import Path

import pytest
import torch
import torchvision
from typer.testing import CliRunner

from mvmr.cli import app

RECIPES = Path(__file__).parent.parent / "recipes"
TINY = ["trainer.max_steps=2", "trainer.num_workers=0", "trainer.progress=false", "trainer.precision=fp32",
        "optim.batch_size=8", "eval.limit=16", "student.projector=64-32"]


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def _pretrain(recipe, out, *overrides):
    args = ["pretrain", recipe, "--out", out]
    for o in [*TINY, f"trainer.cache_dir={out.parent / (out.name + '_cache')}", *overrides]:
        args += ["--set", o]
    result = cli(*args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads((out / "summary.json").read_text())


def _check_run(out: Path, steps=2):
    assert (out / "recipe.yaml").is_file() and (out / "checkpoints" / "last.pt").is_file()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "loss" in r][-1]
    assert last["step"] == steps and all(torch.isfinite(torch.tensor(v)) for k, v in last.items() if k != "step")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == steps
    return summary


def test_quickstart_two_steps(tmp_path):
    summary = _pretrain(RECIPES / "quickstart.yaml", tmp_path / "run", "data.limit=64")
    _check_run(tmp_path / "run")
    assert 0 <= summary["knn_top1"] <= 100 and 0 <= summary["knn_top1_at_init"] <= 100
    split = summary["step_ms"]  # where a step's time went, also printed at the end
    assert list(split) == ["data", "augment", "student", "providers", "objective", "backward", "optimizer"]
    assert all(v >= 0 for v in split.values()) and split["student"] > 0 and split["backward"] > 0


def test_stl10_recipe_two_steps(tmp_path, stl10_root):
    _pretrain(RECIPES / "stl10_mvmr.yaml", tmp_path / "run", f"data.root={stl10_root}", "data.image_size=32",
              "student.backbone=resnet18", "providers.scatnet.params.L=4")
    _check_run(tmp_path / "run")


def test_exact_accumulation_in_a_run(tmp_path):
    _pretrain(RECIPES / "quickstart.yaml", tmp_path / "run", "data.limit=64", "optim.accumulate=4",
              "eval.knn_every=0")
    _check_run(tmp_path / "run")


def test_cifar10_recipe_two_steps(tmp_path, cifar10_root):
    _pretrain(RECIPES / "cifar10_mvmr.yaml", tmp_path / "run", f"data.root={cifar10_root}",
              "student.stem=standard")
    _check_run(tmp_path / "run")


def test_imagenet_recipe_two_steps(tmp_path, imagefolder_root):
    _pretrain(RECIPES / "imagenet_mvmr.yaml", tmp_path / "run", f"data.root={imagefolder_root}",
              "data.image_size=32", "student.backbone=resnet18", "providers.scatnet.params.L=4")
    _check_run(tmp_path / "run")


@pytest.mark.parametrize("augment_on", ["workers", "device"])
def test_resume_reaches_the_same_weights(tmp_path, augment_on):
    """Interrupted and resumed = uninterrupted, weight for weight, with the views made in the workers or on the
    device (its parameters drawn per (seed, epoch, index) in the workers either way)."""
    common = ["data.limit=48", "trainer.checkpoint_every=1", "optim.epochs=2", "eval.knn_every=0",
              "student.backbone=resnet18", "trainer.num_workers=1", f"data.augment_on={augment_on}"]
    _pretrain(RECIPES / "quickstart.yaml", tmp_path / "full", *common, "trainer.max_steps=8")
    _pretrain(RECIPES / "quickstart.yaml", tmp_path / "split", *common, "trainer.max_steps=3")
    result = cli("pretrain", RECIPES / "quickstart.yaml", "--out", tmp_path / "split", "--resume",
                 "--set", "trainer.max_steps=8")
    assert result.exit_code == 0, result.output
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=False)
    assert a["step"] == b["step"] == 8 and a["epoch"] == b["epoch"] == 1  # crossed an epoch boundary
    for k in a["method"]:
        assert torch.equal(a["method"][k], b["method"][k]), k


def test_export_loads_into_torchvision(tmp_path):
    _pretrain(RECIPES / "quickstart.yaml", tmp_path / "run", "data.limit=32", "eval.knn_every=0",
              "student.stem=cifar")
    result = cli("export", tmp_path / "run" / "checkpoints" / "last.pt", tmp_path / "backbone.pt")
    assert result.exit_code == 0, result.output
    model = torchvision.models.resnet18()
    model.fc = torch.nn.Identity()
    model.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = torch.nn.Identity()
    model.load_state_dict(torch.load(tmp_path / "backbone.pt"), strict=True)
    from mvmr.checkpoint import load_checkpoint

    _, method = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", with_providers=False)
    x = torch.rand(2, 3, 32, 32)
    model.eval(), method.eval()
    assert torch.allclose(model(x), method.student.backbone(x))


def test_eval_cli(tmp_path):
    _pretrain(RECIPES / "quickstart.yaml", tmp_path / "run", "data.limit=32", "eval.knn_every=0")
    for protocol in ("knn", "linear"):
        result = cli("eval", protocol, tmp_path / "run" / "checkpoints" / "last.pt", "--limit", "60")
        assert result.exit_code == 0, result.output
        scores = json.loads(result.output.strip().splitlines()[-1])
        assert 0 <= scores["top1"] <= scores["top5"] <= 100


def test_bad_recipe_exits_2_and_writes_nothing(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lrr: 1}\n")
    out = subprocess.run([sys.executable, "-m", "mvmr", "pretrain", str(bad), "--out", str(tmp_path / "run")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {bad}: unknown key 'optim.lrr'"
    assert not (tmp_path / "run").exists()


def test_existing_run_needs_resume(tmp_path):
    _pretrain(RECIPES / "quickstart.yaml", tmp_path / "run", "data.limit=32", "eval.knn_every=0")
    result = cli("pretrain", RECIPES / "quickstart.yaml", "--out", tmp_path / "run")
    assert result.exit_code != 0 and "already holds a run" in str(result.exception)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "lars"])
def test_optimizers_cover_exactly_the_trainable_parameters(name):
    from mvmr.config import build_recipe
    from mvmr.engine import build_optimizer
    from mvmr.methods import build_method

    recipe = build_recipe({"student": {"backbone": "resnet18", "projector": "32"}, "providers": {"pixels": {}},
                           "optim": {"name": name}})
    method = build_method(recipe)
    opt = build_optimizer(method, recipe.optim)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in method.student.parameters()}
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(p) for p in method.student.parameters() if p.ndim > 1}  # no decay on biases and norms


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_fused_optimizer_takes_the_same_steps_as_torchs_loop(name):
    """build_optimizer's fused step (where this torch has it) against torch's per-tensor loop: same update."""
    from timm.optim import create_optimizer_v2

    from mvmr.config import build_recipe
    from mvmr.engine import build_optimizer

    cfg = build_recipe({"optim": {"name": name, "lr": 0.01, "weight_decay": 0.01}}).optim
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))]
    models.append(copy.deepcopy(models[0]))
    start = copy.deepcopy(models[0])
    extra = {"momentum": cfg.momentum} if name == "sgd" else {}
    opts = [build_optimizer(models[0], cfg),
            create_optimizer_v2(models[1], opt=name, lr=0.01, weight_decay=0.01, filter_bias_and_bn=True, **extra)]
    assert not opts[1].defaults.get("fused")
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 5):  # fused CPU steps since 2.4-2.5
        assert opts[0].defaults["fused"]
    for _ in range(5):
        x = torch.randn(32, 8)
        for model, opt in zip(models, opts):
            model(x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all(not torch.equal(a, b) for a, b in zip(models[0].parameters(), start.parameters()))  # it stepped


def test_optimizer_falls_back_where_torch_has_no_fused_step(monkeypatch):
    import timm.optim

    from mvmr.config import build_recipe
    from mvmr.engine import build_optimizer

    real = timm.optim.create_optimizer_v2

    def no_fused(*args, fused=None, **kwargs):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real(*args, **kwargs)

    monkeypatch.setattr(timm.optim, "create_optimizer_v2", no_fused)
    opt = build_optimizer(torch.nn.Linear(4, 2), build_recipe({"optim": {"name": "adam"}}).optim)
    assert isinstance(opt, torch.optim.Adam) and not opt.defaults.get("fused")


def test_lr_schedule_warmup_then_cosine():
    from mvmr.engine import lr_at

    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[9] == 1.0 and lrs[0] == 0.1 and all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 0.01
    assert abs(lr_at(55, 100, 10, 1.0) - 0.5) < 1e-12  # half-way through the cosine


def test_linear_and_sqrt_learning_rate_scaling():
    from mvmr.config import build_recipe
    from mvmr.engine.optim import scaled_lr

    def lr(**optim):
        return scaled_lr(build_recipe({"optim": optim}).optim)

    assert lr(lr=0.3, batch_size=4096, lr_scaling="linear") == pytest.approx(4.8)  # the official MIRA ImageNet lr
    assert lr(lr=0.3, batch_size=256, lr_scaling="sqrt") == pytest.approx(1.2)
    assert lr(lr=0.3, batch_size=4096) == 0.3


@pytest.mark.parametrize("method, expected", [("mvmr", [False, False, False]), ("mira", [False, False, True])])
def test_projector_biases_follow_the_official_code(method, expected):
    """Official MV-MR: no projector Linear has a bias; official MIRA: only the last one."""
    from mvmr.config import build_recipe
    from mvmr.methods import build_method

    recipe = build_recipe({"method": method, "student": {"backbone": "resnet18", "projector": "32-32-16"}})
    linears = [m for m in build_method(recipe).student.projector if isinstance(m, torch.nn.Linear)]
    assert [m.bias is not None for m in linears] == expected


def test_checkpoints_carry_a_format_and_other_formats_are_refused(tmp_path):
    """No silent migration: a checkpoint of another format (or none: written before mvmr 0.3) is one clear line."""
    from mvmr.checkpoint import FORMAT, load_checkpoint, save_checkpoint
    from mvmr.config import build_recipe
    from mvmr.errors import CheckpointError
    from mvmr.methods import build_method

    method = build_method(build_recipe({"student": {"backbone": "resnet18", "projector": "32-16"}}))
    save_checkpoint({"recipe": method.recipe.to_dict(), "method": method.trainable_state()}, tmp_path / "now.pt")
    assert torch.load(tmp_path / "now.pt", weights_only=True)["format"] == FORMAT
    load_checkpoint(tmp_path / "now.pt", with_providers=False)
    old = {"recipe": method.recipe.to_dict(), "method": method.trainable_state()}
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="format none: written before mvmr 0.3.*reads format 1"):
        load_checkpoint(tmp_path / "old.pt")
    torch.save({**old, "format": FORMAT + 1}, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match=f"format {FORMAT + 1}"):
        load_checkpoint(tmp_path / "newer.pt")


def test_cifar10_mira_recipe_two_steps(tmp_path, npz_path):
    _pretrain(RECIPES / "cifar10_mira.yaml", tmp_path / "run", f"data.root={npz_path}", "data.limit=32")
    _check_run(tmp_path / "run")
