"""Nothing lost, nothing half-written: one run per folder, caches that see changed files, validation labels that
mean the training classes, `cache clear` that touches only mvmr's folders, SIGTERM to the whole process group,
and the failures a shared cluster brings (a full disk, moved data, unreadable files, Ctrl-C at start-up)."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

RECIPE = {
    "method": "mvmr",
    "data": {"name": "digits", "image_size": 16},
    "student": {"backbone": "resnet18", "projector": "32-16"},
    "providers": {"pixels": {"weight": 1.0}},
    "optim": {"batch_size": 8, "epochs": 1, "warmup_epochs": 0},
    "trainer": {"num_workers": 0, "progress": False, "precision": "fp32", "checkpoint_every": 1000, "log_every": 1},
    "eval": {"knn_every": 0},
}


def _recipe(tmp_path: Path, name: str = "r.yaml", **sections) -> Path:
    tree = json.loads(json.dumps(RECIPE))
    tree["trainer"]["cache_dir"] = str(tmp_path / "cache")
    for key, value in sections.items():
        section, field = key.split("__")
        tree.setdefault(section, {})[field] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree))
    return path


def _spawn(recipe: Path, out: Path, *extra: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", "from mvmr.cli import main; main()", "pretrain", str(recipe),
                             "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen)


def _wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _logged_steps(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            pass
    return steps


# -- 1. two runs into one --out ----------------------------------------------------------------------------------
def test_a_second_run_into_a_held_folder_is_refused_and_a_killed_run_still_resumes(tmp_path, run_main):
    """Run A holds its folder (paused with SIGSTOP); run B into the same folder, with another seed, exits 2 naming
    A's process and writes nothing; A continues unharmed. After A is killed with SIGKILL, its stale lock does not
    block a --resume."""
    recipe_a = _recipe(tmp_path, "a.yaml", trainer__checkpoint_every=20)  # the first checkpoint at step 20
    recipe_b = _recipe(tmp_path, "b.yaml", trainer__seed=7)
    out = tmp_path / "run"
    a = _spawn(recipe_a, out)
    try:
        _wait_for(lambda: len(_logged_steps(out)) >= 2, "run A's first steps")
        a.send_signal(signal.SIGSTOP)
        before = sorted((p.name, p.stat().st_size) for p in out.rglob("*"))
        code, _, err = run_main("pretrain", recipe_b, "--out", out)
        assert code == 2 and err.count("\n") == 1, err
        assert "is in use by another mvmr run" in err and f"pid {a.pid}" in err
        assert sorted((p.name, p.stat().st_size) for p in out.rglob("*")) == before
        a.send_signal(signal.SIGCONT)
        _wait_for(lambda: (out / "checkpoints" / "last.pt").is_file() or a.poll() is not None, "A's checkpoint")
        a.kill()  # SIGKILL: the lock file stays behind, the lock itself goes with the process
        a.wait(timeout=60)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["trainer"]["seed"] == 0  # B never wrote its recipe over A's
    killed_at = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"]
    code, _, err = run_main("pretrain", recipe_a, "--out", out, "--resume", "--set",
                            f"trainer.max_steps={killed_at + 2}")
    assert code == 0, err
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == killed_at + 2


@pytest.mark.parametrize("name", [".mvmr-run.owner", ".mvmr-run.lock"])
def test_a_link_under_the_locks_names_is_replaced_not_written_through(tmp_path, run_main, name):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    out = tmp_path / "run"
    out.mkdir()
    (out / name).symlink_to(outside)
    assert run_main("pretrain", _recipe(tmp_path, trainer__max_steps=1), "--out", out)[0] == 0
    assert outside.read_text() == "keep me"


def test_lock_is_released_after_the_run_and_a_refused_run_leaves_no_folder(tmp_path, run_main):
    from mvmr.engine.lock import RunLock

    out = tmp_path / "run"
    code, _, err = run_main("pretrain", _recipe(tmp_path, trainer__max_steps=2), "--out", out)
    assert code == 0, err
    other = RunLock(out)
    other.acquire()  # free again once the run ended
    other.release()
    holder = RunLock(tmp_path / "held")
    holder.acquire()
    try:
        code, _, err = run_main("pretrain", _recipe(tmp_path, trainer__max_steps=2), "--out", tmp_path / "held")
        assert code == 2 and "in use by another mvmr run" in err and f"pid {os.getpid()}" in err
        assert not (tmp_path / "held" / "recipe.yaml").exists()
    finally:
        holder.release()
    code, _, err = run_main("pretrain", _recipe(tmp_path, optim__lr=-1), "--out", tmp_path / "refused")
    assert code == 2 and not (tmp_path / "refused").exists()


# -- 2. stale image-folder cache -----------------------------------------------------------------------------------
def _write_images(root: Path, seed: int, n: int = 6) -> None:
    g = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(g.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")


@pytest.mark.parametrize("fingerprint", ["stat", "content"])
def test_rewritten_images_under_the_same_paths_get_new_cached_features(tmp_path, run_main, fingerprint):
    from mvmr.cache import FeatureCache
    from mvmr.config import DataConfig
    from mvmr.data import OneView, build_dataset

    root = tmp_path / "inet"
    _write_images(root, seed=0)
    recipe = _recipe(tmp_path, data__name="imagefolder", data__root=str(root), data__fingerprint=fingerprint,
                     optim__batch_size=4, trainer__max_steps=3)
    assert run_main("pretrain", recipe, "--out", tmp_path / "one")[0] == 0
    _write_images(root, seed=1)  # the same 12 paths, other images
    assert run_main("pretrain", recipe, "--out", tmp_path / "two")[0] == 0
    caches = sorted((tmp_path / "cache").glob("[0-9a-f]" * 24), key=lambda p: p.stat().st_mtime_ns)
    assert len(caches) == 2, "the rewritten folder reused the old cache"
    new = FeatureCache(caches[-1])
    image0 = OneView(build_dataset(DataConfig(name="imagefolder", root=str(root), image_size=16), "ssl"), 16)[0][0]
    row = np.asarray(new.features[0])
    assert new.filled[0] == 0 or np.allclose(row, image0.flatten().numpy(), atol=1e-6)


def test_an_image_unreadable_when_the_cache_was_built_never_poisons_it(tmp_path, run_main, monkeypatch):
    """An unreadable image is replaced by the next one for the run's batches, but that stand-in's features are never
    written under the unreadable image's row: once the file is readable again, the same cache gives its own."""
    from mvmr.cache import FeatureCache
    from mvmr.config import DataConfig
    from mvmr.data import OneView, build_dataset

    root = tmp_path / "inet"
    _write_images(root, seed=0)
    recipe = _recipe(tmp_path, data__name="imagefolder", data__root=str(root), optim__batch_size=4, optim__epochs=1)
    ds = build_dataset(DataConfig(name="imagefolder", root=str(root), image_size=16), "ssl")
    bad = ds.folder.samples[1][0]
    from torchvision.datasets import folder

    real_loader = folder.pil_loader

    def unreadable(path):  # what chmod 0 does to a user without root's override (mode and mtime stay: same key)
        if path == bad:
            raise PermissionError(13, "Permission denied", path)
        return real_loader(path)
    monkeypatch.setattr(folder, "pil_loader", unreadable)
    code, _, err = run_main("pretrain", recipe, "--out", tmp_path / "one")
    assert code == 0 and "skipping unreadable image" in err and bad in err
    monkeypatch.undo()  # the file is readable again
    [cache] = [FeatureCache(p) for p in (tmp_path / "cache").glob("[0-9a-f]" * 24)]
    assert cache.filled[1] == 0 and cache.filled.sum() == 11  # the stand-in row was never written
    assert run_main("pretrain", recipe, "--out", tmp_path / "two")[0] == 0
    [cache] = [FeatureCache(p) for p in (tmp_path / "cache").glob("[0-9a-f]" * 24)]
    truth = OneView(build_dataset(DataConfig(name="imagefolder", root=str(root), image_size=16), "ssl"), 16)
    assert cache.complete
    np.testing.assert_allclose(cache.read(np.array([1, 2])), torch.stack([truth[1][0], truth[2][0]]).flatten(1).numpy(),
                               atol=1e-6)


# -- 3. shifted labels -----------------------------------------------------------------------------------------------
def test_val_uses_the_training_class_indices(tmp_path, run_main):
    from mvmr.config import DataConfig
    from mvmr.data import build_dataset

    g = np.random.default_rng(0)
    images = {c: g.integers(0, 256, (16, 16, 3), dtype=np.uint8) for c in ("a", "b", "c")}
    for split, classes in (("train", "abc"), ("val", "ac")):  # val/ lacks class b
        for c in classes:
            (tmp_path / "inet" / split / c).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(images[c]).save(tmp_path / "inet" / split / c / f"{i}.png")
    cfg = DataConfig(name="imagefolder", root=str(tmp_path / "inet"), image_size=16)
    test = build_dataset(cfg, "test")
    assert sorted({label for _, label in test.folder.samples}) == [0, 2]  # c keeps index 2
    recipe = _recipe(tmp_path, data__name="imagefolder", data__root=str(tmp_path / "inet"), trainer__max_steps=1,
                     optim__batch_size=4, eval__knn_every=1, eval__knn_k=1)
    code, out, err = run_main("pretrain", recipe, "--out", tmp_path / "run")
    assert code == 0, err
    assert "k-NN top-1: 100.00%" in out  # each val image equals its class's training images


def test_an_imagefolder_symlink_loop_is_walked_once(tmp_path):
    from mvmr.config import DataConfig
    from mvmr.data import build_dataset

    _write_images(tmp_path / "inet", seed=0)
    os.symlink(tmp_path / "inet" / "train" / "a", tmp_path / "inet" / "train" / "a" / "loop")
    ds = build_dataset(DataConfig(name="imagefolder", root=str(tmp_path / "inet"), image_size=16), "ssl")
    assert len(ds) == 12


# -- 4. cache clear and a user folder named like a temporary ------------------------------------------------------------
def test_cache_clear_keeps_a_user_folder_named_like_a_temporary(tmp_path, run_main):
    from mvmr.cache import MARKER, open_caches
    import mvmr

    root = tmp_path / "cache"
    real = open_caches({"pixels": mvmr.create_extractor("pixels")}, {"name": "x"}, 4, 8, root)["pixels"].folder
    lookalike = root / f".{'a' * 24}.work"
    lookalike.mkdir()
    (lookalike / "thesis.tex").write_text("three years of work")
    half_made = root / f".{real.name}.k3j2"  # what an interrupted FeatureCache.open leaves: the marker is first
    half_made.mkdir()
    (half_made / MARKER).write_text("mvmr-feature-cache/1\n")
    code, out, err = run_main("cache", "clear", "--dir", root)
    assert code == 0, err
    assert (lookalike / "thesis.tex").read_text() == "three years of work"
    assert not real.exists() and not half_made.exists()


def test_cache_clear_that_cannot_remove_deletes_nothing(tmp_path, run_main, monkeypatch):
    """A read-only parent (simulated: root ignores permissions): the first rename fails, and every file stays."""
    from mvmr.cache import open_caches
    import mvmr

    root = tmp_path / "cache"
    folders = [open_caches({"pixels": mvmr.create_extractor("pixels")}, {"name": n}, 4, 8, root)["pixels"].folder
               for n in ("x", "y")]
    real_rename, calls = os.rename, []

    def rename(a, b):
        calls.append(a)
        if len(calls) == 2:
            raise PermissionError(errno.EACCES, "Permission denied", str(a))
        return real_rename(a, b)

    monkeypatch.setattr(os, "rename", rename)
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    code, _, err = run_main("cache", "clear", "--dir", root)
    assert code == 2 and "nothing was deleted" in err and err.count("\n") == 1
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before
    assert all((f / "features.npy").is_file() for f in folders)


# -- 5. SIGTERM to the whole process group -------------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_to_the_process_group_saves_and_exits_143(tmp_path, signum):
    """What `timeout`, Slurm, `docker stop` and Kubernetes do: every process of the job, DataLoader workers
    included, gets SIGTERM. The workers leave it to the main process, which saves the current step. A closed
    terminal or ssh session (SIGHUP) stops the run the same way (exit 129)."""
    out = tmp_path / "run"
    run = _spawn(_recipe(tmp_path, trainer__num_workers=2), out, start_new_session=True)
    try:
        _wait_for(lambda: len(_logged_steps(out)) >= 3, "the first steps")
        os.killpg(run.pid, signum)
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 128 + signum, err
    assert "Traceback" not in err and "DataLoader worker" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at step ") and "--resume" in last
    step = int(last.split()[3].rstrip(";"))
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == step >= 3 and state["epoch"] == 0  # saved at the signal, not at an epoch end


def _fail_save(monkeypatch, at: int, error: Exception) -> None:
    """torch.save raises ``error`` at its ``at``-th call (a checkpoint write failing mid-run)."""
    import mvmr.checkpoint as checkpoint

    real, calls = checkpoint.torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            raise error
        return real(obj, f, *args, **kwargs)
    monkeypatch.setattr(checkpoint.torch, "save", save)


# -- the failures a cluster brings --------------------------------------------------------------------------------
@pytest.mark.parametrize("failing_save", [1, 3])
def test_a_full_disk_keeps_the_last_good_checkpoint_and_says_so(tmp_path, run_main, monkeypatch, failing_save):
    _fail_save(monkeypatch, failing_save, OSError(errno.ENOSPC, "No space left on device"))
    out = tmp_path / "run"
    code, _, err = run_main("pretrain", _recipe(tmp_path, trainer__max_steps=4, trainer__checkpoint_every=1),
                            "--out", out)
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err, err
    assert f"checkpoint of step {failing_save}" in err
    if failing_save == 1:
        assert "no earlier checkpoint exists" in err and not (out / "checkpoints" / "last.pt").exists()
    else:
        assert f"the last good one stays at {out / 'checkpoints' / 'last.pt'}" in err
        assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == failing_save - 1
    assert not list((out / "checkpoints").glob(".last.pt.*.tmp")) if (out / "checkpoints").exists() else True


@pytest.fixture
def small_disk(tmp_path):
    """A real 200 MB filesystem (tmpfs; root only): room for one ResNet-18 checkpoint with its Adam state (about
    135 MB), not for the next one's temporary file beside it."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (the zip-writer failure is also simulated below)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_real_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_last_good_one(tmp_path, run_main, small_disk):
    out = small_disk / "run"
    code, _, err = run_main("pretrain", _recipe(tmp_path, trainer__max_steps=3, trainer__checkpoint_every=1),
                            "--out", out)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "cannot write the checkpoint of step 2" in err and "No space left on device" in err
    assert f"the last good one stays at {out / 'checkpoints' / 'last.pt'}" in err
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 1
    assert not list((out / "checkpoints").glob(".last.pt.*.tmp"))


def test_a_failed_write_in_torchs_zip_writer_is_one_line(tmp_path, run_main, monkeypatch):
    """What torch's zip writer raises when a write fails (seen on a full 60 MB tmpfs): a RuntimeError, not OSError."""
    _fail_save(monkeypatch, 2, RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"))
    out = tmp_path / "run"
    code, _, err = run_main("pretrain", _recipe(tmp_path, trainer__max_steps=3, trainer__checkpoint_every=1),
                            "--out", out)
    assert code == 2 and err.count("\n") == 1 and "cannot write the checkpoint of step 2" in err, err
    assert "inline_container" in err and torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 1


def test_nonfinite_loss_without_any_checkpoint_says_none_was_written(tmp_path, run_main):
    recipe = _recipe(tmp_path, optim__name="sgd", optim__lr=1e30, trainer__max_steps=6)
    code, _, err = run_main("pretrain", recipe, "--out", tmp_path / "run")
    assert code == 2 and "the loss is NaN or Inf" in err and "no checkpoint was written yet" in err
    assert "kept" not in err


def test_resume_after_the_data_moved(tmp_path, run_main):
    g = np.random.default_rng(0)
    x, y = g.integers(0, 256, (32, 16, 16, 3), dtype=np.uint8), np.arange(32) % 4
    np.savez(tmp_path / "a.npz", x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    recipe = _recipe(tmp_path, data__name="npz", data__root=str(tmp_path / "a.npz"), trainer__max_steps=2,
                     trainer__checkpoint_every=1)
    out = tmp_path / "run"
    assert run_main("pretrain", recipe, "--out", out)[0] == 0
    (tmp_path / "moved").mkdir()
    shutil.move(tmp_path / "a.npz", tmp_path / "moved" / "a.npz")
    code, _, err = run_main("pretrain", out / "recipe.yaml", "--out", out, "--resume", "--set",
                            "trainer.max_steps=4")
    assert code == 2 and "data.root" in err  # the data is not where the run left it
    code, _, err = run_main("pretrain", out / "recipe.yaml", "--out", out, "--resume", "--set",
                            "trainer.max_steps=4", "--set", f"data.root={tmp_path / 'moved' / 'a.npz'}")
    assert code == 0, err
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["step"] == 4


def test_printed_resume_command_carries_the_imports(tmp_path, run_main, signal_at_step):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text("import mvmr\n")
    signal_at_step(1, signal.SIGINT)
    code, _, err = run_main("pretrain", _recipe(tmp_path), "--out", tmp_path / "run", "--import", plugin)
    assert code == 130 and err.strip().endswith(f"--resume --import {plugin}"), err


def test_unreadable_recipe_and_class_folder_say_permissions(tmp_path, run_main, monkeypatch):
    """Root reads everything, so the permission errors are simulated where the files are opened."""
    recipe = _recipe(tmp_path)
    real_read = Path.read_text

    def read_text(self, *args, **kwargs):
        if self == recipe:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    code, _, err = run_main("pretrain", recipe, "--out", tmp_path / "run")
    assert code == 2 and "cannot be read (Permission denied)" in err and "permissions" in err
    monkeypatch.undo()
    _write_images(tmp_path / "inet", seed=0)
    locked = str(tmp_path / "inet" / "train" / "b")
    real_walk = os.walk

    def walk(top, *args, onerror=None, **kwargs):
        if str(top) == locked:
            onerror(PermissionError(errno.EACCES, "Permission denied", locked))
        return real_walk(top, *args, onerror=onerror, **kwargs)

    monkeypatch.setattr(os, "walk", walk)
    recipe = _recipe(tmp_path, data__name="imagefolder", data__root=str(tmp_path / "inet"))
    code, _, err = run_main("pretrain", recipe, "--out", tmp_path / "run2")
    assert code == 2 and "cannot read" in err and "train/b" in err and "permissions" in err
    assert "add images" not in err


START_UP_INTERRUPT = r"""
import builtins, sys
real = builtins.__import__
def interrupted(name, *args, **kwargs):
    if name == "torch":
        raise KeyboardInterrupt
    return real(name, *args, **kwargs)
builtins.__import__ = interrupted
from mvmr.cli import main
main(["pretrain", "quickstart"])
"""


def test_ctrl_c_during_start_up_is_one_line_not_a_traceback():
    done = subprocess.run([sys.executable, "-c", START_UP_INTERRUPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and done.stderr.strip() == "aborted" and "Traceback" not in done.stderr


def test_the_cli_starts_without_importing_torch():
    code = "import sys, mvmr.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_resume_from_an_edited_run_recipe_applies_the_keys_a_resume_may_change(tmp_path, run_main):
    """Editing trainer.max_steps in the run's recipe.yaml and resuming from that file continues to the new limit
    (as --set would) and keeps the edit; an edit that changes the math is refused, naming the key."""
    out = tmp_path / "run"
    assert run_main("pretrain", _recipe(tmp_path, trainer__max_steps=2), "--out", out)[0] == 0
    saved = out / "recipe.yaml"
    tree = yaml.safe_load(saved.read_text())
    tree["trainer"]["max_steps"] = 4
    saved.write_text(yaml.safe_dump(tree))
    code, _, err = run_main("pretrain", saved, "--out", out, "--resume")
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["steps"] == 4
    assert yaml.safe_load(saved.read_text())["trainer"]["max_steps"] == 4
    tree["optim"]["lr"] = 0.5
    saved.write_text(yaml.safe_dump(tree))
    code, _, err = run_main("pretrain", saved, "--out", out, "--resume")
    assert code == 2 and "optim.lr" in err and err.count("\n") == 1
