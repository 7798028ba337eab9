"""``FeatureRegularizer``: mvmr's provider terms for any training loop, as one ``nn.Module``.

    loss = Σ_k w_k · objective_k(embeddings, f_k(images))       (objective: 1 − dCor by default)

It takes the same spec as a recipe's ``providers`` section, by name: a weight (``{"hog": 1.0}``), or ``weight``,
``provider``, ``params``, ``objective``, ``objective_params``, ``view``, ``representation`` and ``standardize``
(``{"clip-vit-b16": {"weight": 1, "objective": "cos_smoothl1", "standardize": "layernorm"}}``), or a built
provider. A ``spatial`` term reads the model's feature map: pass ``{"spatial": fmap, ...}`` as embeddings. The frozen providers are never trained nor saved (they run in
float32 outside autocast); learned heads (the predictor of ``mse``/``cosine``, SEED's queue) are this module's
parameters and state: give ``reg.parameters()`` to the optimiser. With dataset indices of deterministic images,
deterministic providers read their features from the on-disk cache. Under DDP, ``gather=True`` computes the terms
on the global batch: after DDP's gradient average, N processes with batch b get the loss and gradient of one
process with batch N·b.

Views: by default a provider sees the ``images`` the embeddings were computed from (``view: augmented``, both on
one view); ``view: cross`` reads the provider on ``original=`` images instead (the MV-MR paper's pairing);
``view: original`` needs an embedding of the original view, which a regulariser does not compute, and is refused.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from .cache import CachedFeatures, open_caches
from .losses import weighted_total
from .provider_terms import ProviderSpec, ProviderTerms

Embeddings = Union[torch.Tensor, Mapping[str, torch.Tensor]]


class FeatureRegularizer(nn.Module):
    """``reg(images, embeddings, index=None, gather=False, original=None) -> (loss, terms)``; images in [0, 1],
    (B, 3, H, W), those the model embedded; ``index``: dataset indices of deterministic images (``original`` when
    given, else ``images``), for the feature cache; embeddings a (B, D) tensor of the user's model, or ``{"projector": z, "backbone": h}`` for terms
    naming a representation; terms are named ``<objective>/<provider>``. ``embedding_dim`` and ``image_size`` are
    needed only by objectives that learn a head (the widths it maps between)."""

    def __init__(self, providers: Mapping[str, ProviderSpec], estimator: str = "biased",
                 embedding_dim: Optional[Union[int, Mapping[str, int]]] = None,
                 image_size: Optional[int] = None) -> None:
        super().__init__()
        dims = embedding_dim if isinstance(embedding_dim, Mapping) or embedding_dim is None else \
            {"projector": int(embedding_dim), "backbone": int(embedding_dim)}
        self.terms = ProviderTerms(providers, dims, image_size, views=("augmented",), estimator=estimator,
                                   default_view="augmented", owner="FeatureRegularizer")
        self.providers = self.terms.providers
        self.weights = self.terms.weights

    @property
    def monitor(self):
        return self.terms.monitor

    def enable_cache(self, root: Union[str, Path], dataset: Union[str, Mapping[str, Any]], n: int,
                     image_size: int) -> "FeatureRegularizer":
        """Cache the deterministic providers' features of ``n`` images identified by ``dataset`` (a name or a
        dict that changes whenever the images do) under ``root``; pass ``index`` to ``forward`` to use it."""
        identity = {"name": dataset} if isinstance(dataset, str) else dict(dataset)
        identity.update(length=n, image_size=image_size, user="FeatureRegularizer")
        cached = {n: p for n, p in self.providers.items() if self.terms.configs[n].representation != "spatial"}
        self.terms.source = CachedFeatures(cached, open_caches(cached, identity, n, image_size, Path(root)))
        return self

    def forward(self, images: torch.Tensor, embeddings: Embeddings, index: Optional[torch.Tensor] = None,
                gather: bool = False, original: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        given = embeddings if isinstance(embeddings, Mapping) else {"projector": embeddings, "backbone": embeddings}
        first = next(iter(given.values()))
        if images.shape[0] != first.shape[0]:
            raise ValueError(f"FeatureRegularizer: {images.shape[0]} images but {first.shape[0]} embeddings")
        views = {"augmented": images} if original is None else {"augmented": images, "original": original}
        rows = {f"augmented/{k}": v for k, v in given.items()}
        # index addresses the deterministic images: original= when given, else images
        rows.update(self.terms.features(views, index, indexed_view="augmented" if original is None else "original"))
        terms = self.terms(rows, gather=gather)
        return weighted_total(terms, self.weights), terms
