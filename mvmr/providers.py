"""The representation-provider contract: a frozen map from images to (B, D) features.

Images arrive as float tensors in [0, 1], RGB, shaped (B, 3, H, W); every provider applies its own resizing and
normalization. A provider declares whether it is deterministic (so its features on the original view may be cached)
and its output size for a given image size, and may declare a ``version`` (part of the cache key, so a fixed
provider never reads features its older code cached). It is always frozen: eval mode, no parameter requires gradients, and its
forward runs under ``torch.no_grad``.
"""
from __future__ import annotations

import abc
import hashlib
import json
from typing import Any

import torch
from torch import nn


class Provider(nn.Module, metaclass=abc.ABCMeta):
    """Base class of extractors and teachers. Subclasses implement :meth:`extract` and :meth:`output_dim`."""

    deterministic: bool = True
    summary_pools_map: bool = False  # forward() is spatial() averaged over locations: one forward serves both terms
    description: str = ""
    version: str = "1"  # bump when the features a provider computes change: it is part of the feature-cache key

    def __init__(self) -> None:
        super().__init__()
        self.name: str = type(self).__name__
        self.params: dict[str, Any] = {}

    @abc.abstractmethod
    def output_dim(self, height: int, width: int) -> int:
        """Length of the feature vector for images of this size."""

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` (one line, with the fix) when images of this size give no features; called before
        training so that a provider that cannot work at ``data.image_size`` stops the run before it starts."""
        if self.output_dim(height, width) < 1:
            raise ValueError(f"gives no features for {height}x{width} images; use larger images")

    @abc.abstractmethod
    def extract(self, images: torch.Tensor) -> torch.Tensor:
        """Map (B, 3, H, W) images in [0, 1] to features with leading dimension B."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"provider '{self.name}' expects images shaped (B, 3, H, W), got {tuple(images.shape)}"
            )
        with torch.no_grad():
            out = self.extract(images)
        return out.reshape(images.shape[0], -1)

    def spatial(self, images: torch.Tensor) -> torch.Tensor:
        """Dense features (B, D, h, w) of (B, 3, H, W) images in [0, 1], for ``representation: spatial`` terms.
        Providers without a feature map (hand-crafted descriptors) keep this default, which refuses."""
        raise ValueError(f"provider '{self.name}' has no spatial features; use representation: backbone or projector")

    def train(self, mode: bool = True) -> "Provider":
        """Providers stay in eval mode whatever the surrounding model does."""
        return super().train(False)

    def weights_digest(self) -> str:
        """SHA-256 over the parameters and buffers; identifies the weights a learned provider holds."""
        h = hashlib.sha256()
        for key, tensor in sorted(self.state_dict().items()):
            h.update(key.encode())
            h.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
        return h.hexdigest()

    def fingerprint(self) -> str:
        """Identity of what this provider computes: name, parameters and weights (used as a cache key)."""
        blob = json.dumps({"name": self.name, "params": self.params}, sort_keys=True, default=str)
        return hashlib.sha256((blob + self.weights_digest()).encode()).hexdigest()


def freeze(provider: Provider) -> Provider:
    """Put a provider in the frozen state every consumer relies on."""
    provider.requires_grad_(False)
    provider.eval()
    return provider
