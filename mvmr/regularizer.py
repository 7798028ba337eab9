"""``FeatureRegularizer``: MV-MR's dependence terms for any training loop, as one ``nn.Module``.

    loss = Σ_k w_k · (1 − dCor(embeddings, f_k(images)))

``f_k`` are frozen providers (extractors or teachers) built from specs such as ``{"hog": 1.0, "scatnet": {"weight":
0.5, "params": {"J": 2}}}``. They are never trained nor checkpointed (the module's state_dict is empty) and run in
float32 outside autocast; dCor always computes in float32. With dataset indices of deterministic images (the same
image for the same index), deterministic providers read their features from the on-disk cache. Under DDP,
``gather=True`` computes the terms on the global batch (all processes' rows, with gradient): after DDP's gradient
average, N processes with batch b get the loss and gradient of one process with batch N·b.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from .cache import CachedFeatures, open_caches
from .distributed import gather_with_grad
from .guards import FiniteMonitor
from .losses import distance_correlation, weighted_total
from .providers import Provider
from .registry import create_provider

ProviderSpec = Union[float, Mapping[str, Any], Provider]


class FeatureRegularizer(nn.Module):
    """``reg(images, embeddings, index=None, gather=False) -> (loss, terms)``; images in [0, 1], (B, 3, H, W);
    embeddings any (B, D) tensor of the user's model; terms are named ``dcor/<provider>``."""

    def __init__(self, providers: Mapping[str, ProviderSpec], estimator: str = "biased") -> None:
        super().__init__()
        self.estimator = estimator
        self.weights: dict[str, float] = {}
        # A plain dict, not submodules: frozen providers are neither trained nor saved with the user's model.
        self.providers: dict[str, Provider] = {}
        for name, spec in providers.items():
            if isinstance(spec, Provider):
                provider, weight = spec, 1.0
            elif isinstance(spec, Mapping):
                provider, weight = create_provider(name, **dict(spec.get("params", {}))), float(spec.get("weight", 1.0))
            else:
                provider, weight = create_provider(name), float(spec)
            self.providers[name], self.weights[f"dcor/{name}"] = provider, weight
        self.source: Optional[CachedFeatures] = None
        self.monitor = FiniteMonitor()

    def enable_cache(self, root: Union[str, Path], dataset: Union[str, Mapping[str, Any]], n: int,
                     image_size: int) -> "FeatureRegularizer":
        """Cache the deterministic providers' features of ``n`` images identified by ``dataset`` (a name or a
        dict that changes whenever the images do) under ``root``; pass ``index`` to ``forward`` to use it."""
        identity = {"name": dataset} if isinstance(dataset, str) else dict(dataset)
        identity.update(length=n, image_size=image_size, user="FeatureRegularizer")
        self.source = CachedFeatures(self.providers, open_caches(self.providers, identity, n, image_size, Path(root)))
        return self

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for provider in self.providers.values():
            provider._apply(fn, *args, **kwargs)
        return self

    def features(self, images: torch.Tensor, index: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Each provider's features (float32, outside autocast), from the cache where it applies."""
        images = images.detach().float()
        out = {}
        with torch.autocast(device_type=images.device.type, enabled=False):
            for name, provider in self.providers.items():
                if self.source is not None and index is not None and provider.deterministic:
                    out[name] = self.source(name, images, index.cpu())
                else:
                    out[name] = provider(images)
                self.monitor.watch(f"provider '{name}' returned NaN or Inf features", out[name])
        return out

    def forward(self, images: torch.Tensor, embeddings: torch.Tensor, index: Optional[torch.Tensor] = None,
                gather: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if images.shape[0] != embeddings.shape[0]:
            raise ValueError(f"FeatureRegularizer: {images.shape[0]} images but {embeddings.shape[0]} embeddings")
        feats = self.features(images, index)
        z = gather_with_grad(embeddings) if gather else embeddings
        terms = {f"dcor/{name}": 1.0 - distance_correlation(z, gather_with_grad(f) if gather else f, self.estimator)
                 for name, f in feats.items()}
        return weighted_total(terms, self.weights), terms
