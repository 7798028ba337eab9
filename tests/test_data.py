"""Datasets through their real on-disk formats, the two views, and missing-data errors."""
import numpy as np
import pytest
import torch

from mvmr.config import DataConfig
from mvmr.data import Batch, OneView, Views, augment_spec, build_dataset, collate
from mvmr.errors import DataError


def _check(cfg, sizes):
    for split, n in sizes.items():
        ds = build_dataset(cfg, split)
        assert len(ds) == n, split
    views = Views(build_dataset(cfg, "ssl"), cfg.image_size, augment_spec(cfg), seed=0, n_views=2)
    original, (augmented, second), label, index = views[1]
    assert original.shape == augmented.shape == second.shape == (3, cfg.image_size, cfg.image_size)
    assert 0 <= original.min() and original.max() <= 1 and index == 1
    assert not torch.equal(augmented, second)  # two independent augmentations
    assert torch.equal(views[1][1][0], augmented)  # seeded: same view again
    views.epoch = 1
    assert not torch.equal(views[1][1][0], augmented)  # new epoch: new view
    assert torch.equal(views[1][0], original)  # the original view is deterministic
    batch = collate([views[0], views[1]])
    assert isinstance(batch, Batch) and len(batch) == 2 and len(batch.views) == 2
    assert batch.views[0].shape == (2, 3, cfg.image_size, cfg.image_size) and batch.index.tolist() == [0, 1]


def test_stl10(stl10_root):
    cfg = DataConfig(name="stl10", root=str(stl10_root), image_size=32)
    _check(cfg, {"ssl": 32, "train": 20, "test": 10})
    # the original view of a 96 px image at 96 px is the image itself (STL10's column-major layout undone)
    raw = np.fromfile(stl10_root / "stl10_binary" / "train_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96)
    img, label = OneView(build_dataset(DataConfig(name="stl10", root=str(stl10_root), image_size=96), "train"), 96)[0]
    assert torch.allclose(img, torch.tensor(raw[0].transpose(0, 2, 1) / 255.0, dtype=torch.float32))
    assert label == 0


def test_cifar10(cifar10_root):
    _check(DataConfig(name="cifar10", root=str(cifar10_root), image_size=32), {"ssl": 40, "train": 40, "test": 8})


def test_imagefolder(imagefolder_root):
    _check(DataConfig(name="imagefolder", root=str(imagefolder_root), image_size=32), {"ssl": 12, "train": 12, "test": 6})


def test_npz(npz_path):
    _check(DataConfig(name="npz", root=str(npz_path), image_size=32), {"ssl": 24, "train": 24, "test": 8})


def test_digits_and_limit():
    cfg = DataConfig(name="digits", image_size=16)
    _check(cfg, {"train": 1347, "test": 450})
    assert len(build_dataset(DataConfig(name="digits", limit=100), "ssl")) == 100


@pytest.mark.parametrize("name,expected,downloadable", [
    ("stl10", "stl10_binary", True), ("cifar10", "cifar-10-batches-py", True), ("imagefolder", "class", False),
    ("npz", "x_train", False)])
def test_missing_data_says_where_and_how(tmp_path, name, expected, downloadable):
    """Only the datasets torchvision can fetch suggest data.download=true; every one names data.root."""
    root = tmp_path / "nothing.npz" if name == "npz" else tmp_path
    with pytest.raises(DataError, match=f"{name}: no data at .*{expected}.*data.root") as caught:
        build_dataset(DataConfig(name=name, root=str(root)), "train")
    assert ("data.download=true" in str(caught.value)) == downloadable


def test_pad_crop_shifts_without_rescaling():
    from mvmr.data import AugmentSpec, PaperAugment

    img = torch.rand(3, 32, 32)
    aug = PaperAugment(32, AugmentSpec(crop="pad", pad=4, flip_p=0.0, jitter_p=0.0, gray_p=0.0, blur_p=0.0))
    g = torch.Generator().manual_seed(0)
    padded = torch.nn.functional.pad(img[None], [4] * 4, mode="reflect")[0]
    for _ in range(5):
        out = aug(img, g)
        assert out.shape == (3, 32, 32)
        assert any(torch.equal(out, padded[:, t:t + 32, s:s + 32]) for t in range(9) for s in range(9))
