"""Safety: `cache clear` touches only caches, nothing non-finite passes silently, and runs survive kill -9,
SIGINT and SIGTERM with bit-identical final weights."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import mvmr
from mvmr.cache import FeatureCache, describe
from mvmr.cache_admin import clear_caches
from mvmr.checkpoint import save_checkpoint
from mvmr.errors import NonFiniteError
from mvmr.losses import distance_correlation

RECIPE = {
    "method": "mvmr",
    "data": {"name": "digits", "image_size": 16, "limit": 48},
    "student": {"backbone": "resnet18", "projector": "32-16"},
    "providers": {"pixels": {"weight": 1.0}, "lsd": {"weight": 1.0}},
    "optim": {"batch_size": 8, "epochs": 2, "warmup_epochs": 0},
    "trainer": {"max_steps": 8, "num_workers": 0, "progress": False, "precision": "fp32", "checkpoint_every": 3},
    "eval": {"knn_every": 0},
}


# -- cache clear -------------------------------------------------------------------------------------------------
def test_cache_clear_removes_only_caches(tmp_path, run_main):
    from mvmr.cache import open_caches

    root = tmp_path / "home"
    provider = mvmr.create_extractor("pixels")
    real = open_caches({"pixels": provider}, {"name": "x", "n": 4}, 4, 8, root)["pixels"].folder
    half_made = root / f".{real.name}.abc_12"  # an interrupted FeatureCache.open: its marker is written first
    half_made.mkdir()
    (half_made / ".mvmr-feature-cache").write_text("mvmr-feature-cache/1\n")
    decoys = {".git": "HEAD", ".ssh": "id_rsa", ".config": "settings", ".venv": "pyvenv.cfg"}
    for folder, name in decoys.items():
        (root / folder).mkdir()
        (root / folder / name).write_text("precious")
    foreign = root / ("0" * 24)  # named like a cache, but its meta.json is not mvmr's
    foreign.mkdir()
    (foreign / "meta.json").write_text(json.dumps({"owner": "someone else"}))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "meta.json").write_text(json.dumps({"format": "mvmr-feature-cache/1"}))
    (root / ("1" * 24)).symlink_to(outside)  # a symlink that looks like a cache
    (root / "notes.txt").write_text("keep")
    code, out, _ = run_main("cache", "clear", "--dir", root, "--dry-run")
    assert code == 0 and "would remove 2" in out and real.exists() and half_made.exists()
    code, out, _ = run_main("cache", "clear", "--dir", root)
    assert code == 0 and "removed 2 cache folder(s)" in out
    assert not real.exists() and not half_made.exists()
    for folder, name in decoys.items():
        assert (root / folder / name).read_text() == "precious"
    assert (foreign / "meta.json").exists() and (outside / "meta.json").exists() and (root / "notes.txt").exists()
    assert (root / ("1" * 24)).is_symlink()


@pytest.mark.parametrize("where", ["", ".", "~"])
def test_cache_clear_in_a_home_like_folder_keeps_everything(tmp_path, run_main, monkeypatch, where):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for folder in (".git", ".ssh", ".venv"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "f").write_text("x")
    code, _, err = run_main("cache", "clear", "--dir", where)
    assert code == (2 if where == "" else 0), err
    assert all((tmp_path / f / "f").exists() for f in (".git", ".ssh", ".venv"))
    assert clear_caches(tmp_path, dry_run=True) == []


# -- non-finite values -------------------------------------------------------------------------------------------
class BrokenAfter(mvmr.Provider):
    """Finite features for the first ``good`` calls, then NaN."""

    description = "test provider that breaks"

    def __init__(self, good: int = 0) -> None:
        super().__init__()
        self.good, self.calls = int(good), 0

    def output_dim(self, height, width):
        return 4

    def extract(self, images):
        self.calls += 1
        out = images.mean((2, 3)).repeat(1, 2)[:, :4]
        return out if self.calls <= self.good else out * float("nan")


@pytest.fixture
def broken_provider():
    mvmr.register_extractor("broken_after", BrokenAfter)
    yield
    from mvmr.registry import extractors

    extractors.unregister("broken_after")


def _recipe(tmp_path, **changes):
    tree = json.loads(json.dumps(RECIPE))
    tree["trainer"]["cache_dir"] = str(tmp_path / "cache")
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        tree[section][key] = value
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.mark.parametrize("use_cache", [False, True])
def test_nan_provider_is_an_error_naming_it_and_never_cached(tmp_path, run_main, broken_provider, use_cache):
    recipe = _recipe(tmp_path, providers__broken_after={"weight": 1.0, "params": {"good": 3}},
                     trainer__use_cache=use_cache)
    code, _, err = run_main("pretrain", recipe, "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1, err
    assert "provider 'broken_after' returned NaN or Inf" in err
    assert "at step 4" in err or use_cache  # the cache path names the provider; online also names the step
    for meta in (tmp_path / "cache").glob("*/meta.json"):
        folder = meta.parent
        feats, filled = np.load(folder / "features.npy"), np.load(folder / "filled.npy")
        assert np.isfinite(feats[filled.astype(bool)]).all()
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 3  # the last good checkpoint is intact


def test_nonfinite_loss_stops_with_terms_and_step_and_keeps_the_last_good_checkpoint(tmp_path, run_main):
    recipe = _recipe(tmp_path, optim__name="sgd", optim__lr=1e30, trainer__checkpoint_every=1)
    code, _, err = run_main("pretrain", recipe, "--out", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1, err
    assert "the loss is NaN or Inf at step" in err and "dcor/pixels=" in err and "mse=" in err
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["method"].values() if v.is_floating_point())
    assert f"at step {state['step'] + 1}" in err


def test_checkpoint_with_nonfinite_weights_is_never_written(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"method": {"w": torch.ones(3)}, "optimizer": {}, "step": 1}, path)
    before = path.read_bytes()
    for bad in ({"method": {"w": torch.tensor([1.0, float("nan")])}, "optimizer": {}},
                {"method": {"w": torch.ones(2)}, "optimizer": {"state": {0: {"exp_avg": torch.tensor([float("inf")])}}}}):
        with pytest.raises(NonFiniteError, match="NaN or Inf"):
            save_checkpoint({**bad, "step": 2}, path)
        assert path.read_bytes() == before
    assert not list(tmp_path.glob(".last.pt.*"))


def test_dcor_propagates_nan_instead_of_reading_zero():
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    y[3, 1] = float("nan")
    for estimator in ("biased", "unbiased"):
        assert torch.isnan(distance_correlation(x, y, estimator))
        assert distance_correlation(x, torch.zeros(16, 3), estimator) == 0  # constant: dcor's 0, not NaN


def test_cache_key_holds_mvmr_and_provider_versions():
    provider = mvmr.create_extractor("pixels")
    d = describe(provider, {"name": "x"})
    assert d["mvmr"] == mvmr.__version__ and d["provider_version"] == provider.version
    provider.version = "2"
    assert describe(provider, {"name": "x"}) != d


def test_cache_refuses_nonfinite_rows(tmp_path):
    provider = mvmr.create_extractor("pixels")
    cache = FeatureCache.open(tmp_path, describe(provider, {"name": "x"}), 4, 3)
    with pytest.raises(NonFiniteError, match="pixels"):
        cache.write(np.arange(2), np.array([[1.0, 2.0, np.inf], [0.0, 0.0, 0.0]], dtype=np.float32))
    assert not cache.filled.any()


# -- signals and kill -9 -----------------------------------------------------------------------------------------
DRIVER = r"""
import os, signal, sys, torch
import mvmr.engine.optim as engine
mode, at = os.environ.get("CRASH_MODE", ""), int(os.environ.get("CRASH_AT", "0"))
if mode == "kill_in_save":  # SIGKILL half-way through writing the at-th checkpoint
    real_save, calls = torch.save, [0]
    def dying_save(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            f.write(b"half a checkpoint"); f.flush(); os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kwargs)
    torch.save = dying_save
elif mode:  # send a signal to this process while it computes step `at` (0-based)
    real_lr = engine.lr_at
    def lr_at(step, *args):
        if step == at:
            os.kill(os.getpid(), getattr(signal, mode))
        return real_lr(step, *args)
    engine.lr_at = lr_at
from mvmr.cli import main
main(sys.argv[1:])
"""


def _run(recipe, out, *extra, mode="", at=0):
    env = {**os.environ, "CRASH_MODE": mode, "CRASH_AT": str(at), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", DRIVER, "pretrain", str(recipe), "--out", str(out), *extra],
                          capture_output=True, text=True, env=env, timeout=300)


def _weights(out):
    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)


def _assert_same_run(reference, out):
    a, b = _weights(reference), _weights(out)
    assert a["step"] == b["step"] == 8 and a["epoch"] == b["epoch"] == 1
    for k in a["method"]:
        assert torch.equal(a["method"][k], b["method"][k]), k
    for k, v in a["optimizer"]["state"].items():
        for name, tensor in v.items():
            assert torch.equal(tensor, b["optimizer"]["state"][k][name]), (k, name)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert len(steps) == len(set(steps)), "metrics.jsonl repeats records after the resume"
    assert not list((out / "checkpoints").glob(".last.pt.*.tmp")), "a stale temporary file survived"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    tree = json.loads(json.dumps(RECIPE))
    tree["trainer"].update(cache_dir=str(root / "cache"), log_every=1, num_workers=1)
    (root / "r.yaml").write_text(yaml.safe_dump(tree))
    done = _run(root / "r.yaml", root / "reference")
    assert done.returncode == 0, done.stderr
    return root


@pytest.mark.parametrize("mode,at,first_code", [("kill_in_save", 2, -9), ("SIGKILL", 4, -9), ("SIGINT", 4, 130)])
def test_killed_or_interrupted_run_resumes_to_identical_weights(reference, mode, at, first_code):
    out = reference / mode
    first = _run(reference / "r.yaml", out, mode=mode, at=at)
    assert first.returncode == first_code, first.stderr
    if mode == "kill_in_save":
        assert list((out / "checkpoints").glob(".last.pt.*.tmp")), "the kill did not land inside a save"
    if mode == "SIGINT":
        assert _weights(out)["step"] == at + 1  # the current step finished and was saved
        assert first.stderr.strip().splitlines()[-1] == (
            f"interrupted at step {at + 1}; continue with: mvmr pretrain {reference / 'r.yaml'} --out {out} --resume")
    again = _run(reference / "r.yaml", out, "--resume")
    assert again.returncode == 0, again.stderr
    _assert_same_run(reference / "reference", out)


def test_sigterm_saves_and_exits_143(tmp_path, run_main, signal_at_step):
    signal_at_step(1, signal.SIGTERM)
    code, _, err = run_main("pretrain", _recipe(tmp_path), "--out", tmp_path / "run")
    assert code == 143 and err.strip().startswith("interrupted at step 2; continue with: mvmr pretrain")
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after the run


def test_new_run_in_a_folder_without_checkpoint_starts_its_files_afresh(tmp_path, run_main):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 99, "loss": 1.0}\n')
    (out / "summary.json").write_text("{}")
    code, _, err = run_main("pretrain", _recipe(tmp_path, trainer__max_steps=2), "--out", out)
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert 99 not in steps and json.loads((out / "summary.json").read_text())["steps"] == 2
