"""``ProviderTerms``: the one implementation of mvmr's central idea, "compare a student representation with a frozen
provider's features through an objective", used by every method and by ``FeatureRegularizer``.

Each term is one entry of a recipe's ``providers`` section (``ProviderConfig``): a frozen provider (an extractor
or a teacher), a ``weight``, an ``objective`` (1 − dCor, regression through a predictor, RKD, ...), a ``view``
(``cross``: the student's augmented view against the provider on the original view, as the MV-MR paper;
``original``; ``augmented``) and a ``representation`` of the student (``projector`` output or ``backbone``
features). The module

- owns the frozen providers: not in the state_dict, moved with the module, run in float32 outside autocast, read
  from the feature cache (``source``) for deterministic providers on the original view when dataset indices are
  given;
- owns the learned heads (predictors, queues) and the standardisers' running statistics, in the state_dict;
- says which student rows its terms read (``student_keys``), so a step computes only those;
- computes the named terms of the batch in two stages, as exact accumulation needs: ``features`` (per-image rows,
  in ``encode``) and ``forward`` (batch statistics, in ``objective``), gathering the global batch when told to.

Rows are keyed ``"<view>/<representation>"`` for the student and ``"provider/<name>"`` for the features. A
``spatial`` term compares feature maps: the student's last map, resized (bilinear) to the provider's grid, and the
provider's dense features, one row per location, so the objective's head is a per-location adaptor.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from . import profile
from .config import ProviderConfig
from .distributed import gather_with_grad
from .errors import ConfigError
from .guards import FiniteMonitor
from .models import pools_map
from .losses.distill import build_objective
from .providers import Provider
from .registry import build_providers, objectives
from .standardize import Standardize

VIEWS = ("original", "augmented")
ProviderSpec = Union[float, Mapping[str, Any], ProviderConfig, Provider]


def student_view(cfg: ProviderConfig) -> str:
    """The view of the student a term reads: the augmented one unless ``view: original``."""
    return "original" if cfg.view == "original" else "augmented"


def provider_view(cfg: ProviderConfig) -> str:
    """The view the provider sees: the original one unless ``view: augmented``."""
    return "augmented" if cfg.view == "augmented" else "original"


def reads_cache(cfg: ProviderConfig) -> bool:
    """Whether a term's provider features may come from the feature cache (the summary features of the original
    view; a deterministic provider's only, which the cache checks)."""
    return provider_view(cfg) == "original" and cfg.representation != "spatial"


def as_locations(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B·h·w, C): one row per location."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def spatial_dim(provider: Provider, image_size: int) -> int:
    """The channels of a provider's dense features at ``image_size`` (one forward of two blank images)."""
    try:
        return int(provider.spatial(torch.zeros(2, 3, image_size, image_size)).shape[1])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _config(name: str, spec: ProviderSpec, default_view: Optional[str]) -> ProviderConfig:
    """A term's settings from a recipe entry, a dict of the same keys, a bare weight, or a built provider; anything
    else is one line naming the provider."""
    if isinstance(spec, Provider):
        cfg = ProviderConfig()
    elif isinstance(spec, ProviderConfig):
        cfg = spec
    elif isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if spec != spec or spec in (float("inf"), float("-inf")):
            raise ConfigError(f"provider '{name}': weight {spec} is not a finite number")
        cfg = ProviderConfig(weight=float(spec))
    elif not isinstance(spec, Mapping):
        raise ConfigError(f"provider '{name}': got {type(spec).__name__} {spec!r:.40}; give a weight (a number, e.g. "
                          f"0.3), a mapping of its settings ({{'weight': 0.3, 'objective': 'mse'}}) or a built Provider")
    else:
        from pydantic import ValidationError

        from .config import _format_error

        try:
            cfg = ProviderConfig.model_validate(dict(spec))
        except ValidationError as err:
            raise ConfigError(f"provider '{name}': " + _format_error(err, "provider spec")) from None
    if default_view is not None and "view" not in cfg.model_fields_set:
        cfg = cfg.model_copy(update={"view": default_view})
    return cfg


def _check_reads_logits(name: str, cfg: ProviderConfig) -> None:
    """``objective: kd`` compares class posteriors: a classifier teacher read as features (its head dropped) is
    refused, naming the setting that reads its logits."""
    if cfg.objective != "kd" or cfg.params.get("output", "features") == "logits":
        return
    from .registry import teachers

    kind = cfg.provider or name
    if kind in teachers and "output" in inspect.signature(teachers.lookup(kind)[0].factory).parameters:
        raise ConfigError(f"providers.{name}: objective kd compares class posteriors, but this teacher is read as "
                          f"features (its classifier dropped); set providers.{name}.params.output: logits, or use "
                          f"a feature objective (cos_smoothl1)")


class StudentRows:
    """The student's outputs of each view, computed on first use and kept: ``rows("augmented", "backbone")``.
    A step that needs only some of them (no view terms, a teacher on one view) runs only those forwards."""

    def __init__(self, student: nn.Module, views: Mapping[str, torch.Tensor]) -> None:
        self.student, self.views = student, views
        self.done: dict[str, torch.Tensor] = {}

    def __call__(self, view: str, representation: str) -> torch.Tensor:
        key = f"{view}/{representation}"
        if key not in self.done:
            if representation == "spatial":
                self.done[key] = self.student.feature_map(self.views[view])
            elif representation == "backbone" and f"{view}/spatial" in self.done and pools_map(self.student.backbone):
                self.done[key] = self.done[f"{view}/spatial"].mean((2, 3))  # = the ResNet's average pool
            elif representation == "backbone":
                self.done[key] = self.student.embed(self.views[view])
            else:
                self.done[key] = self.student.projector(self(view, "backbone"))
        return self.done[key]

    def rows(self, keys: Iterable[str]) -> dict[str, torch.Tensor]:
        """The rows ``keys``, computed in a fixed order (original view first, backbone before projector): every
        BatchNorm sees its batches in the same order in every process and run, which a resume that must repeat
        the run exactly, and a global-batch BatchNorm, rely on."""
        order = {"original": 0, "augmented": 1, "spatial": 0, "backbone": 1, "projector": 2}
        ordered = sorted(keys, key=lambda k: tuple(order.get(part, 3) for part in k.split("/")) + (k,))
        return {k: self(*k.split("/")) for k in ordered}


class ProviderTerms(nn.Module):
    """The provider terms of a ``providers`` spec; see the module docstring.

    ``student_dims``: the width of each student representation (``{"projector": 8192, "backbone": 2048}``), needed
    by objectives with a learned head; ``image_size``: the side of the images the providers see (their output
    width may depend on it); ``views``: the views the caller can embed with the student (a term whose student view
    is another is refused, never ignored); ``estimator``: the dCor estimator for ``objective: dcor`` terms that name none."""

    def __init__(self, specs: Mapping[str, ProviderSpec], student_dims: Optional[Mapping[str, int]] = None,
                 image_size: Optional[int] = None, views: Iterable[str] = VIEWS, estimator: str = "biased",
                 default_view: Optional[str] = None, seed: Optional[int] = None, owner: str = "this method",
                 local_views: Iterable[str] = ()) -> None:
        super().__init__()
        self.configs = {name: _config(name, spec, default_view) for name, spec in specs.items()}
        self.local_views = tuple(local_views)  # multi-crop: more student views of each summary term, see forward
        # A plain dict, not a ModuleDict: names may hold '.' and ':' (timm:vit_small.augreg, mvmr:PATH), and frozen
        # providers are rebuilt from the spec, never checkpointed. _apply moves them with the module.
        built = build_providers({n: c.params for n, c in self.configs.items() if not isinstance(specs[n], Provider)},
                                seed, {n: c.provider for n, c in self.configs.items()})
        self.providers: dict[str, Provider] = {n: built.get(n, specs[n]) for n in self.configs}
        for name, cfg in self.configs.items():
            if student_view(cfg) not in tuple(views):
                others = " or ".join(v for v in ("cross", "original", "augmented") if v != cfg.view)
                raise ConfigError(f"providers.{name}.view={cfg.view} needs the student's embedding of the "
                                  f"{student_view(cfg)} view, which {owner} does not compute; use view: {others}")
        heads, standardizers = [], []
        for name, cfg in self.configs.items():
            provider = self.providers[name]
            if image_size is not None:
                try:
                    provider.check_input_size(image_size, image_size)
                except ValueError as exc:
                    raise ConfigError(f"provider '{name}' at data.image_size={image_size}: {exc}") from None
            _check_reads_logits(name, cfg)
            params = dict(cfg.objective_params)
            objective = objectives.get(cfg.objective)
            if "estimator" in inspect.signature(objective).parameters:
                params.setdefault("estimator", estimator)
            if cfg.representation == "spatial" and not getattr(objective, "per_location", False):
                per_location = [n for n in objectives.names() if getattr(objectives.get(n), "per_location", False)]
                raise ConfigError(f"providers.{name}: representation: spatial compares feature maps location by "
                                  f"location, which objective '{cfg.objective}' does not; use one of "
                                  f"{', '.join(per_location)}")
            student_dim = (student_dims or {}).get(cfg.representation, 0)
            teacher_dim = 0
            if image_size is not None:
                teacher_dim = (spatial_dim(provider, image_size) if cfg.representation == "spatial"
                               else provider.output_dim(image_size, image_size))
            head = build_objective(name, cfg.objective, student_dim or 1, teacher_dim or 1, params)  # 1: unknown
            if any(True for _ in head.parameters()) and not (student_dim and teacher_dim):
                raise ConfigError(f"providers.{name}: objective '{cfg.objective}' learns a head from the student's "
                                  f"{cfg.representation} to the provider's features, so it needs both widths: pass "
                                  f"embedding_dim= and image_size=")
            if cfg.standardize in ("dimension", "phis") and not teacher_dim:
                raise ConfigError(f"providers.{name}: standardize: {cfg.standardize} keeps statistics of each of the "
                                  f"provider's dimensions, so it needs their number: pass image_size=")
            if len(self.student_views(cfg)) > 1 and any(True for _ in head.buffers()):
                raise ConfigError(f"providers.{name}: objective '{cfg.objective}' keeps a queue of past features, "
                                  f"which the local crops would fill once per crop; use loss.local_crops: 0 or "
                                  f"another objective")
            heads.append(head)
            try:
                standardizers.append(Standardize(cfg.standardize, teacher_dim))
            except ConfigError as exc:
                raise ConfigError(f"providers.{name}: {exc}") from None
        self.heads = nn.ModuleList(heads)  # in spec order; learned parts (predictors, queues) are checkpointed
        self.standardizers = nn.ModuleList(standardizers)  # running statistics (standardize: dimension, phis)
        self.names = {name: f"{cfg.objective}/{name}" for name, cfg in self.configs.items()}
        self.weights = {self.names[n]: cfg.weight for n, cfg in self.configs.items()}
        self.source: Optional[Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]] = None  # the feature cache
        self.monitor = FiniteMonitor()  # the engine swaps in one that knows the step (and defers on GPUs)

    @classmethod
    def from_recipe(cls, recipe, student: nn.Module, views: Iterable[str] = VIEWS,
                    estimator: str = "biased", local_views: Iterable[str] = ()) -> "ProviderTerms":
        """The terms of a recipe's ``providers`` section for ``student`` (a ``Student``)."""
        dims = {"projector": student.out_dim, "backbone": student.feature_dim, "spatial": student.feature_dim}
        return cls(recipe.providers, dims, recipe.data.image_size, views, estimator, seed=recipe.trainer.seed,
                   local_views=local_views)

    # what a step needs ---------------------------------------------------------------------------------------------
    def active(self) -> dict[str, ProviderConfig]:
        """The terms with a non-zero weight (the others are not computed at all)."""
        return {n: c for n, c in self.configs.items() if c.weight != 0}

    def student_views(self, cfg: ProviderConfig) -> list[str]:
        """The student views a term compares with its provider's features: its own, and with ``local_views``
        (multi-crop) those too for a summary term on the augmented view."""
        own = student_view(cfg)
        return [own, *(self.local_views if own == "augmented" and cfg.representation != "spatial" else ())]

    def student_keys(self) -> set[str]:
        """The student rows (``"<view>/<representation>"``) the active terms read."""
        return {f"{v}/{c.representation}" for c in self.active().values() for v in self.student_views(c)}

    def row_keys(self) -> set[str]:
        """Every row the active terms read: student rows and ``provider/<name>`` features."""
        return self.student_keys() | {f"provider/{n}" for n in self.active()}

    # stage 1: per-image rows ----------------------------------------------------------------------------------
    def features(self, images: Mapping[str, torch.Tensor], index: Optional[torch.Tensor] = None,
                 indexed_view: str = "original") -> dict[str, torch.Tensor]:
        """``provider/<name>`` rows of the active terms, each provider on its view of ``images`` (``{"original":
        ..., "augmented": ...}``), in float32 outside autocast. ``index`` (dataset indices) addresses the images of
        ``indexed_view`` (deterministic ones: the original view); deterministic providers on that view read the
        cache (``source``)."""
        with profile.section("providers"):
            return self._features(images, index, indexed_view)

    def _features(self, images, index, indexed_view) -> dict[str, torch.Tensor]:
        out, maps = {}, {}  # (provider, view) -> its feature map, computed once for every term that reads it
        dense = {(id(self.providers[n]), provider_view(c)) for n, c in self.active().items() if c.representation == "spatial"}

        def map_of(provider: Provider, view: str, x: torch.Tensor) -> torch.Tensor:
            if (id(provider), view) not in maps:
                maps[id(provider), view] = provider.spatial(x)
            return maps[id(provider), view]

        for name, cfg in self.active().items():
            provider, view = self.providers[name], provider_view(cfg)
            if view not in images:
                raise ValueError(f"providers.{name}.view={cfg.view} reads the provider on the {view} view; pass "
                                 f"those images too")
            x = images[view].detach().float()
            with torch.autocast(device_type=x.device.type, enabled=False):
                if cfg.representation == "spatial":
                    feats = map_of(provider, view, x)
                elif cfg.bank and view == "augmented" and index is not None and self._banked(name):
                    feats = self.source(name, x, index.cpu(), view="augmented")  # the bank of its views
                elif self.source is not None and provider.deterministic and index is not None and view == indexed_view:
                    feats = self.source(name, x, index.cpu())
                elif (id(provider), view) in dense and provider.summary_pools_map:  # summary + dense: one forward
                    feats = map_of(provider, view, x).mean((2, 3))
                else:
                    feats = provider(x)
            self.monitor.watch(f"provider '{name}' returned NaN or Inf features at step {{step}}; fix the provider "
                               f"(its features must be finite)", feats)
            out[f"provider/{name}"] = feats
        return out

    def _banked(self, name: str) -> bool:
        """Whether the attached feature source holds a bank of ``name``'s outputs on the augmented views."""
        reads = getattr(self.source, "reads", None)
        return reads is not None and reads(name, "augmented")

    # stage 2: batch statistics ------------------------------------------------------------------------------------
    def forward(self, rows: Mapping[str, torch.Tensor], gather: bool = False) -> dict[str, torch.Tensor]:
        """The unweighted terms (``<objective>/<name>``) from the rows of stage 1 and the student's; with
        ``gather`` the rows are first concatenated over processes (with gradient): the terms of the global batch.
        With ``local_views`` a summary term on the augmented view is the mean of its objective over that view and
        each local crop, all against the same provider features (DINO's multi-crop, one teacher view)."""
        def take(key: str) -> torch.Tensor:
            if key not in rows:
                raise ValueError(f"the provider terms read the row '{key}', which was not given; rows: "
                                 f"{', '.join(sorted(rows))}")
            return gather_with_grad(rows[key]) if gather else rows[key]
        terms = {}
        for head, standardize, (name, cfg) in zip(self.heads, self.standardizers, self.configs.items()):
            if cfg.weight != 0:
                student, feats = take(f"{student_view(cfg)}/{cfg.representation}"), take(f"provider/{name}")
                if cfg.representation == "spatial":  # the student's map on the provider's grid, a row per location
                    size = feats.shape[-2:]
                    if student.shape[-2:] != size:
                        student = F.interpolate(student, size=size, mode="bilinear", align_corners=False)
                    student, feats = as_locations(student), as_locations(feats)
                feats = standardize(feats)
                views = [student] + [take(f"{v}/{cfg.representation}") for v in self.student_views(cfg)[1:]]
                terms[self.names[name]] = sum(head(s, feats) for s in views) / len(views)
        return terms

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for provider in self.providers.values():
            provider._apply(fn, *args, **kwargs)
        return self
