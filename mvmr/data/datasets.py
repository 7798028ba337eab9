"""The built-in datasets, in their real on-disk formats, registered by name (``data.name``) exactly as a plug-in's.

A builder ``(cfg: DataConfig, split) -> Dataset`` returns (image, label) pairs for a split: "ssl" (what pretraining
sees), "train" and "test" (labelled, for evaluation). Images may be PIL images or uint8 HWC arrays; the views turn
them into float tensors in [0, 1].
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import DataError
from ..registry import datasets

register_dataset = datasets.register


class ArrayDataset(Dataset):
    """uint8 NHWC images (N, H, W, C) with integer labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise DataError(f"expected uint8 images shaped (N, H, W, C), got {images.dtype} {images.shape}")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def _missing(name: str, root: Path, what: str) -> DataError:
    return DataError(f"{name}: no data at {root} (expected {what}); set data.download=true to fetch it, "
                     f"or data.root to where it is")


def _torchvision(name: str, cls_name: str, expected: str, **split_kwargs):
    """Wrap a torchvision dataset class; turn its 'not found' error into one clear line."""
    def build(cfg: DataConfig, split: str) -> Dataset:
        import torchvision.datasets as tvd

        root = Path(cfg.root).expanduser()
        try:
            return getattr(tvd, cls_name)(str(root), download=cfg.download, **split_kwargs[split])
        except RuntimeError as exc:
            if "not found" in str(exc).lower() or "download" in str(exc).lower():
                raise _missing(name, root, expected) from None
            raise
    register_dataset(name, build)


_torchvision("stl10", "STL10", "stl10_binary/{train,test,unlabeled}_X.bin",
             ssl={"split": "train+unlabeled"}, train={"split": "train"}, test={"split": "test"})
_torchvision("cifar10", "CIFAR10", "cifar-10-batches-py/",
             ssl={"train": True}, train={"train": True}, test={"train": False})
_torchvision("cifar100", "CIFAR100", "cifar-100-python/",
             ssl={"train": True}, train={"train": True}, test={"train": False})


class SafeImageFolder(Dataset):
    """torchvision's ImageFolder, except that an unreadable image never stops a run: it is reported (one line per
    file and process) and replaced by the next readable image, so the batch keeps its size, and a resumed run sees
    exactly the same batches instead of crashing again at the same step."""

    def __init__(self, root: Path) -> None:
        from torchvision.datasets import ImageFolder

        self.folder = ImageFolder(str(root))
        self.reported: set[int] = set()

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int):
        for k in range(len(self.folder)):
            j = (i + k) % len(self.folder)
            try:
                return self.folder[j]
            except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for broken and truncated files
                if j not in self.reported:
                    self.reported.add(j)
                    print(f"warning: skipping unreadable image {self.folder.samples[j][0]} ({exc}); "
                          f"the next image takes its place", file=sys.stderr)
        raise DataError(f"imagefolder: no image under {self.folder.root} can be read")


@register_dataset("imagefolder")
def _imagefolder(cfg: DataConfig, split: str) -> Dataset:
    """ImageNet layout: ROOT/train/<class>/*.JPEG and ROOT/val/<class>/*.JPEG. A class folder with no image is an
    error (dropping it would shift every later class index between train/ and val/); an unreadable image is
    skipped (see SafeImageFolder)."""
    root = Path(cfg.root).expanduser() / ("val" if split == "test" else "train")
    if not root.is_dir():
        raise _missing("imagefolder", root, "one sub-folder of images per class")
    try:
        return SafeImageFolder(root)
    except FileNotFoundError as exc:
        message = str(exc).split(". Supported")[0]
        raise DataError(f"imagefolder: {root}: {message}; add images to that class folder or remove it") from None


def _check_arrays(path: Path, x: np.ndarray, y: np.ndarray, part: str) -> None:
    """One clear line for each way an npz file's arrays can be wrong."""
    if x.dtype != np.uint8 or x.ndim != 4:
        raise DataError(f"npz: {path}: x_{part} must be uint8 images shaped (N, H, W, C), got {x.dtype} "
                        f"{x.shape}; convert with (x * 255).round().astype('uint8') if they are floats in [0, 1]")
    if x.shape[-1] not in (1, 3):
        raise DataError(f"npz: {path}: x_{part} has {x.shape[-1]} channels; mvmr takes RGB (3) or gray (1) "
                        f"channels-last images (drop an alpha channel with x[..., :3])")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"npz: {path}: y_{part} must be a 1-D array of integer class indices, got {y.dtype} "
                        f"{y.shape}; map class names to 0..C-1 first")
    if len(x) != len(y):
        raise DataError(f"npz: {path}: x_{part} has {len(x)} images but y_{part} has {len(y)} labels; they must match")
    if len(x) == 0:
        raise DataError(f"npz: {path}: x_{part} is empty")
    if y.min() < 0:
        raise DataError(f"npz: {path}: y_{part} holds negative labels; use class indices 0..C-1")


@register_dataset("npz")
def _npz(cfg: DataConfig, split: str) -> Dataset:
    """An .npz file with uint8 NHWC x_train, y_train, x_test, y_test (as ../shared/data/cifar10-mini.npz)."""
    path = Path(cfg.root).expanduser()
    if not path.is_file():
        raise _missing("npz", path, "an .npz file with x_train, y_train, x_test, y_test")
    part = "test" if split == "test" else "train"
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
            if missing:
                raise DataError(f"npz: {path} lacks arrays {', '.join(sorted(missing))}; it needs x_train, y_train, "
                                f"x_test, y_test")
            x, y = f[f"x_{part}"], f[f"y_{part}"]
    except DataError:
        raise
    except Exception as exc:  # random bytes, a truncated archive, pickled objects
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:100]
        raise DataError(f"npz: {path} is not a readable .npz archive ({type(exc).__name__}: {first}); "
                        f"write it with numpy.savez") from None
    _check_arrays(path, x, y, part)
    return ArrayDataset(x, y)


@register_dataset("digits")
def _digits(cfg: DataConfig, split: str) -> Dataset:
    """scikit-learn's digits (1,797 real 8×8 scans shipped in its wheel), as RGB; a fixed stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None].repeat(3, axis=-1)
    idx_train, idx_test = train_test_split(np.arange(len(images)), test_size=0.25, random_state=0,
                                           stratify=digits.target)
    idx = idx_test if split == "test" else idx_train
    return ArrayDataset(images[idx], digits.target[idx])
