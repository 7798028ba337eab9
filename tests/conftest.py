"""Shared fixtures: tiny datasets written in the real on-disk formats."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here: a pretrained tag must fail at once, not retry

import pickle
from pathlib import Path

import numpy as np
import pytest


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.fixture
def stl10_root(tmp_path, monkeypatch) -> Path:
    """stl10_binary/{train,test,unlabeled}_X.bin and *_y.bin, 96x96 column-major uint8 as the real release."""
    import torchvision.datasets.stl10 as stl

    d = tmp_path / "stl10" / "stl10_binary"
    d.mkdir(parents=True)
    g = _rng()
    for split, n in [("train", 20), ("test", 10), ("unlabeled", 12)]:
        g.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(d / f"{split}_X.bin")
        if split != "unlabeled":
            (np.arange(n) % 10 + 1).astype(np.uint8).tofile(d / f"{split}_y.bin")
    (d / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)))
    # The real files carry md5 sums; tiny test files are checked for existence instead.
    monkeypatch.setattr(stl.STL10, "_check_integrity", lambda self: (d / "train_X.bin").is_file())
    return tmp_path / "stl10"


@pytest.fixture
def cifar10_root(tmp_path, monkeypatch) -> Path:
    """cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} as pickled dicts, as the real release."""
    import torchvision.datasets.cifar as cifar

    d = tmp_path / "cifar10" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    g = _rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": g.integers(0, 256, (8, 3072), dtype=np.uint8), "labels": list(range(8))}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: (d / "test_batch").is_file())
    return tmp_path / "cifar10"


@pytest.fixture
def imagefolder_root(tmp_path) -> Path:
    """ROOT/{train,val}/<class>/*.JPEG, real JPEG files."""
    from PIL import Image

    g = _rng(2)
    root = tmp_path / "imagenet"
    for split, n in [("train", 6), ("val", 3)]:
        for c in ("n01440764", "n01443537"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(g.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / split / c / f"{i}.JPEG")
    return root


@pytest.fixture
def npz_path(tmp_path) -> Path:
    g = _rng(3)
    path = tmp_path / "mini.npz"
    np.savez(path, x_train=g.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8), y_train=np.arange(24) % 4,
             x_test=g.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), y_test=np.arange(8) % 4)
    return path


@pytest.fixture
def run_main(capsys):
    """The real console entry point in process: run_main(*argv) -> (exit code, stdout, stderr)."""
    from mvmr.cli import main

    def run(*argv):
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


@pytest.fixture
def signal_at_step(monkeypatch):
    """signal_at_step(step, signum): this process receives ``signum`` while the loop computes ``step`` (0-based)."""
    import os

    import mvmr.engine.optim as engine

    def arm(step: int, signum: int) -> None:
        real = engine.lr_at

        def lr_at(s, *args):
            if s == step:
                os.kill(os.getpid(), signum)
            return real(s, *args)
        monkeypatch.setattr(engine, "lr_at", lr_at)
    return arm
