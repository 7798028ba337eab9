"""Frozen pretrained encoders as providers: a network plus its own preprocessing (resize, crop, normalise).

Teachers (CLIP, timm, torchvision, a student trained by mvmr) subclass nothing: they build a ``FrozenEncoder``.
Weights are loaded only from what the recipe names: a pretrained tag, a local file, or ``none`` for an explicit
random network; a tag that cannot be had is an error before training, never a silent random teacher.
"""
from __future__ import annotations

import contextlib
import hashlib
import socket
import sys
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence
from urllib.parse import urlparse

import torch
import torchvision.transforms.v2.functional as TF
from torch import nn

from .errors import WeightsError
from .models import feature_map, pools_map
from .providers import Provider

INTERPOLATIONS = {"bicubic": TF.InterpolationMode.BICUBIC, "bilinear": TF.InterpolationMode.BILINEAR,
                  "nearest": TF.InterpolationMode.NEAREST}


@contextlib.contextmanager
def offline_unless_reachable(timeout: float = 2.0) -> Iterator[bool]:
    """Around a pretrained-weights load: when the Hugging Face Hub cannot be reached within ``timeout`` seconds,
    switch huggingface_hub to offline mode for the block, so weights already in the local cache still load and
    missing ones fail at once instead of after a minute of retries. Yields whether the hub was reachable."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield True
        return
    if constants.HF_HUB_OFFLINE:
        yield False
        return
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        reachable = True
    except OSError:
        reachable = False
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = previous or not reachable
    try:
        yield reachable
    finally:
        constants.HF_HUB_OFFLINE = previous


def file_digest(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A local weight file (.pt/.pth/.bin via torch.load, .safetensors), unwrapping ``state_dict``/``model`` and
    stripping a DDP ``module.`` prefix."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file '{path}' " + ("is a folder; name the weight file itself" if path.is_dir()
                                                         else "does not exist"))
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file, random bytes, a pickle of objects other than tensors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise WeightsError(f"weights file '{path}' could not be read ({first}); pass a state_dict saved with "
                           f"torch.save or a .safetensors file") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file '{path}' holds {type(state).__name__}, not a state_dict")
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


HEAD_PREFIXES = ("fc.", "head.", "heads.", "classifier.", "head_dist.")


def load_strict(model: nn.Module, path: str | Path, who: str) -> None:
    """Load a local state dict strictly, turning a mismatch into one line naming the teacher and the file. A full
    classifier checkpoint loads into the headless encoder: the head's keys are dropped, with a notice naming them."""
    state = load_state_file(path)
    expected = set(model.state_dict())
    dropped = sorted(k for k in state if k not in expected and k.startswith(HEAD_PREFIXES))
    if dropped:
        state = {k: v for k, v in state.items() if k not in dropped}
        print(f"note: {who}: dropped the classifier head of '{path}' ({', '.join(dropped)})", file=sys.stderr)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise WeightsError(f"{who}: '{path}' does not fit the model ({' '.join(first[:2])[:300]})") from None


class FrozenEncoder(Provider):
    """``forward_features(preprocess(images))`` with the encoder's own size, crop and normalisation."""

    description = "frozen pretrained encoder"

    def __init__(self, model: nn.Module, out_dim: int, size: int, mean: Sequence[float], std: Sequence[float],
                 interpolation: str = "bicubic", crop_pct: float = 1.0, half: bool = False,
                 encode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 weights_id: Optional[str] = None,
                 dense: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, pools_dense: bool = False) -> None:
        super().__init__()
        self.model = model
        self.out_dim, self.size, self.crop_pct = int(out_dim), int(size), float(crop_pct)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        if not 0 < float(crop_pct) <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        self.interpolation = INTERPOLATIONS[interpolation]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.half = half
        self._encode, self._dense = encode, dense
        self._pools_dense = pools_dense  # ``encode`` is the average pool of ``dense``: one forward serves both
        self._weights_id = weights_id
        self._digest: Optional[str] = None

    def output_dim(self, height: int, width: int) -> int:
        return self.out_dim

    @property
    def summary_pools_map(self) -> bool:
        """The summary is the average pool of the map: a torchvision ResNet read the default way, or an encoder
        built with ``pools_dense``."""
        return self._pools_dense or (self._encode is None and self._dense is None and pools_map(self.model))

    def weights_digest(self) -> str:
        """The file digest or pretrained tag when known (cheap), else a hash of the parameters."""
        if self._digest is None:
            self._digest = self._weights_id or super().weights_digest()
        return self._digest

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize the short side to size / crop_pct, centre-crop to size, normalise (a no-op resize is skipped)."""
        resize = int(round(self.size / self.crop_pct))
        x = images.float()
        if min(x.shape[-2:]) != resize:
            x = TF.resize(x, resize, interpolation=self.interpolation, antialias=True)
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = TF.center_crop(x, [self.size, self.size])
        return (x - self.mean) / self.std

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)
        use_half = self.half and x.is_cuda
        with torch.autocast(x.device.type, dtype=torch.float16, enabled=use_half):
            out = self._encode(x) if self._encode is not None else self.model(x)
        return out.float().flatten(1)

    def spatial(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's last feature map (a CNN's, or a ViT's patch tokens on their grid) of the preprocessed
        images: (B, D, h, w)."""
        x = self.preprocess(images)
        with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.float16, enabled=self.half and x.is_cuda):
            out = self._dense(x) if self._dense is not None else feature_map(self.model, x)
        return out.float()
