"""The built-in datasets, in their real on-disk formats, registered by name (``data.name``) exactly as a plug-in's.

A builder ``(cfg: DataConfig, split) -> Dataset`` returns (image, label) pairs for a split: "ssl" (what pretraining
sees), "train" and "test" (labelled, for evaluation). Images may be PIL images or uint8 HWC arrays; the views turn
them into float tensors in [0, 1].
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional

import numpy as np
from torch.utils.data import Dataset

from ..config import DataConfig
from ..errors import DataError, MissingDataError
from ..paths import missing_dirs
from ..registry import datasets


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


def _missing(name: str, root: Path, what: str, downloadable: bool = True) -> DataError:
    fetch = "set data.download=true to fetch it, or " if downloadable else ""
    return MissingDataError(f"{name}: no data at {root} (expected {what}); {fetch}set data.root to where it is")


def _torchvision(name: str, cls_name: str, expected: str, **split_kwargs):
    """Wrap a torchvision dataset class; turn its 'not found' error into one clear line, and a download that
    fails (no network) into one line that leaves no folder behind."""
    def build(cfg: DataConfig, split: str) -> Dataset:
        import torchvision.datasets as tvd

        root = Path(cfg.root).expanduser()
        if root.exists() and not root.is_dir():
            raise DataError(f"{name}: data.root '{root}' is a file; set data.root to the folder that holds "
                            f"{expected}")
        made = missing_dirs(root) if cfg.download else []
        try:
            ds = getattr(tvd, cls_name)(str(root), download=cfg.download, **split_kwargs[split])
        except RuntimeError as exc:
            if "not found" in str(exc).lower() or "download" in str(exc).lower():
                raise _missing(name, root, expected) from None
            raise
        except OSError as exc:  # URLError (no network), a full disk, a read-only folder
            if made:
                shutil.rmtree(made[0], ignore_errors=True)
            reason = getattr(exc, "reason", None) or exc.strerror or exc
            raise DataError(f"{name}: data.download=true could not fetch it into {root} ({reason}); download it "
                            f"where there is network and set data.root to it") from None
        base = Path(getattr(ds, "root", root)) / getattr(ds, "base_folder", "")
        ds.mvmr_files = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else []
        return ds
    datasets.register(name, build)


_torchvision("stl10", "STL10", "stl10_binary/{train,test,unlabeled}_X.bin",
             ssl={"split": "train+unlabeled"}, train={"split": "train"}, test={"split": "test"})
_torchvision("cifar10", "CIFAR10", "cifar-10-batches-py/",
             ssl={"train": True}, train={"train": True}, test={"train": False})
_torchvision("cifar100", "CIFAR100", "cifar-100-python/",
             ssl={"train": True}, train={"train": True}, test={"train": False})


def _walk_files(folder: str) -> list[str]:
    """Every file under ``folder``, following symlinked folders but never into one already visited (a symlink
    loop would list the same images again and again); an unreadable folder is an error, not a silent skip."""
    seen: set[str] = set()

    def refuse(exc: OSError) -> None:
        raise DataError(f"imagefolder: cannot read '{exc.filename}' ({exc.strerror}); fix its permissions "
                        f"(chmod -R u+rX) or remove it") from None

    files = []
    for root, dirs, names in os.walk(folder, followlinks=True, onerror=refuse):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        files += [os.path.join(root, n) for n in sorted(names)]
    return files


def _image_folder_class():
    """torchvision's ImageFolder with a loop-safe walk and a class-to-index map that may come from another split."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

    class Folder(ImageFolder):
        def __init__(self, root: str, class_to_idx: Optional[dict[str, int]] = None) -> None:
            self._given = class_to_idx
            super().__init__(root, allow_empty=class_to_idx is not None)

        def find_classes(self, directory):
            try:
                own = sorted(e.name for e in os.scandir(directory) if e.is_dir())
            except OSError as exc:
                raise DataError(f"imagefolder: cannot read '{directory}' ({exc.strerror}); fix its permissions") from None
            if not own:
                raise DataError(f"imagefolder: {directory} has no class folders; put the images in "
                                f"{directory}/<class>/*.JPEG (one folder per class)")
            if self._given is None:
                return own, {c: i for i, c in enumerate(own)}
            unknown = [c for c in own if c not in self._given]
            if unknown:
                raise DataError(f"imagefolder: {directory} has class folder '{unknown[0]}' that train/ does not "
                                f"have; every class of {Path(directory).name}/ must also be in train/ (add it there "
                                f"or remove it)")
            return sorted(self._given, key=self._given.get), dict(self._given)

        @staticmethod
        def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
            samples, empty = [], []
            for cls in sorted(class_to_idx):
                target = os.path.join(directory, cls)
                if not os.path.isdir(target):
                    continue
                found = [(f, class_to_idx[cls]) for f in _walk_files(target)
                         if has_file_allowed_extension(f, IMG_EXTENSIONS)]
                if not found:
                    empty.append(target)
                samples += found
            if empty and not allow_empty:
                raise DataError(f"imagefolder: class folder {empty[0]} holds no image "
                                f"({', '.join(IMG_EXTENSIONS[:4])}, ...); add images to it or remove it")
            return samples

    return Folder


class SafeImageFolder(Dataset):
    """torchvision's ImageFolder, except that an unreadable image never stops a run: it is reported (one line per
    file and process) and replaced by the next readable image, so the batch keeps its size, and a resumed run sees
    exactly the same batches instead of crashing again at the same step. ``class_to_idx``: the training split's
    map, so that val/ labels mean the same classes even when val/ lacks some."""

    def __init__(self, root: Path, class_to_idx: Optional[dict[str, int]] = None) -> None:
        self.folder = _image_folder_class()(str(root), class_to_idx)
        self.reported: set[int] = set()
        self.substituted: set[int] = set()  # in this process: items served by another image (never cached)
        self.mvmr_files = [Path(p) for p, _ in self.folder.samples]

    def __len__(self) -> int:
        return len(self.folder)

    def was_substituted(self, i: int) -> bool:
        """Whether item ``i``, when this process last read it, was another image standing in for an unreadable one."""
        return i in self.substituted

    def __getitem__(self, i: int):
        self.substituted.discard(i)
        for k in range(len(self.folder)):
            j = (i + k) % len(self.folder)
            try:
                item = self.folder[j]
                if k:
                    self.substituted.add(i)
                return item
            except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for broken and truncated files
                if j not in self.reported:
                    self.reported.add(j)
                    print(f"warning: skipping unreadable image {self.folder.samples[j][0]} ({exc}); "
                          f"the next image takes its place", file=sys.stderr)
        raise DataError(f"imagefolder: no image under {self.folder.root} can be read")


@datasets.register("imagefolder")
def _imagefolder(cfg: DataConfig, split: str) -> Dataset:
    """ImageNet layout: ROOT/train/<class>/*.JPEG and ROOT/val/<class>/*.JPEG. val/ takes train/'s class indices
    (a class missing from val/ shifts nothing; one unknown to train/ is an error). A class folder of train/ with no
    image is an error (dropping it would shift every later class index); an unreadable image is skipped (see
    SafeImageFolder)."""
    base = Path(cfg.root).expanduser()
    root = base / ("val" if split == "test" else "train")
    if not root.is_dir():
        raise _missing("imagefolder", root, "one sub-folder of images per class", downloadable=False)
    if split != "test":
        return SafeImageFolder(root)
    if not (base / "train").is_dir():
        raise _missing("imagefolder", base / "train", "one sub-folder of images per class", downloadable=False)
    train_classes = _image_folder_class()(str(base / "train")).class_to_idx
    return SafeImageFolder(root, train_classes)


MAX_CLASSES = 100_000  # more than any labelled image dataset has (ImageNet-21k: 21,841)


def _check_arrays(path: Path, x: np.ndarray, y: np.ndarray, part: str) -> None:
    """One clear line for each way an npz file's arrays can be wrong."""
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        raise DataError(f"npz: {path}: x_{part} {x.shape} looks channels-first (N, C, H, W); mvmr takes "
                        f"channels-last images: save x.transpose(0, 2, 3, 1)")
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
    if y.max() >= MAX_CLASSES:
        raise DataError(f"npz: {path}: y_{part} holds class index {int(y.max())}, more than {MAX_CLASSES:,} classes; "
                        f"map the labels to 0..C-1 first (numpy.unique(y, return_inverse=True))")


@datasets.register("npz")
def _npz(cfg: DataConfig, split: str) -> Dataset:
    """An .npz file with uint8 NHWC x_train, y_train, x_test, y_test (as ../shared/data/cifar10-mini.npz)."""
    path = Path(cfg.root).expanduser()
    if path.is_dir():
        raise DataError(f"npz: data.root '{path}' is a folder; set data.root to the .npz file itself "
                        f"(x_train, y_train, x_test, y_test)")
    if not path.is_file():
        raise _missing("npz", path, "an .npz file with x_train, y_train, x_test, y_test", downloadable=False)
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
    ds = ArrayDataset(x, y)
    ds.mvmr_files = [path]
    return ds


@datasets.register("digits")
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
