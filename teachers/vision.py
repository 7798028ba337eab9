"""Image classifiers as teachers (penultimate features): ``timm:<name>``, ``torchvision:<name>``, and ``mvmr:<ckpt>``
(a student trained by mvmr)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import mvmr
from mvmr.encoders import FrozenEncoder, file_digest, load_strict, offline_unless_reachable
from mvmr.errors import WeightsError

from mvmr.models import IMAGENET_MEAN, IMAGENET_STD


def _preprocess(defaults: dict, size, crop_pct, mean, std, interpolation) -> dict:
    """The model's own preprocessing, with each given value taking its place (e.g. size 32 for a CIFAR teacher)."""
    given = {"size": size, "crop_pct": crop_pct, "mean": mean, "std": std, "interpolation": interpolation}
    return {**defaults, **{k: v for k, v in given.items() if v is not None}}


@mvmr.register_teacher("timm", family=True)
def timm_teacher(spec: str, pretrained: str = "default", weights: Optional[str] = None, half: bool = False,
                 size: Optional[int] = None, crop_pct: Optional[float] = None, mean: Optional[list] = None,
                 std: Optional[list] = None, interpolation: Optional[str] = None,
                 output: str = "features") -> FrozenEncoder:
    """timm:<model>: pooled features; pretrained: default | <tag> | none; or weights: PATH; size, crop_pct, mean,
    std, interpolation override the model's own preprocessing; output: logits reads its classifier's class logits
    (the head of the pretrained model or of the weight file; for ``objective: kd``)."""
    import timm

    if output not in ("features", "logits"):
        raise ValueError(f"output must be features or logits, got {output!r}")
    if not timm.list_models(spec) and spec.split(".")[0] not in timm.list_models():
        raise ValueError(f"timm has no model '{spec}'")
    name = spec if pretrained in ("default", "none") else f"{spec}.{pretrained}"
    use_hub = weights is None and pretrained != "none"
    head = {"num_classes": 0}  # features: no classifier; logits: the model's own, or as wide as the file's
    if output == "logits":
        head = {"num_classes": _classes_in(weights, f"timm:{spec}")} if weights else {}
    online = True
    try:
        with offline_unless_reachable() as online:
            model = timm.create_model(name, pretrained=use_hub, **head)
    except Exception as exc:
        if not use_hub:
            raise
        why = "offline and not in the local cache" if not online else str(exc).splitlines()[0][:120]
        raise WeightsError(f"teacher 'timm:{spec}': pretrained weights ({pretrained}) cannot be had "
                           f"({why}); pass --teacher-weights PATH or params.pretrained: none") from None
    weights_id = f"timm:{name}" if use_hub else None
    if weights is not None:
        load_strict(model, weights, f"teacher 'timm:{spec}'")
        weights_id = "file:" + file_digest(Path(weights).expanduser())
    cfg = timm.data.resolve_data_config({}, model=model)
    own = {"size": cfg["input_size"][-1], "crop_pct": cfg.get("crop_pct", 1.0), "mean": cfg["mean"], "std": cfg["std"],
           "interpolation": cfg.get("interpolation") if cfg.get("interpolation") in ("bicubic", "bilinear") else "bilinear"}
    p = _preprocess(own, size, crop_pct, mean, std, interpolation)
    logits = output == "logits"
    return FrozenEncoder(model, model.num_classes if logits else model.num_features, p["size"], p["mean"], p["std"],
                         p["interpolation"], p["crop_pct"], half, **_read(model, logits, weights_id))


@mvmr.register_teacher("torchvision", family=True)
def torchvision_teacher(spec: str, pretrained: str = "DEFAULT", weights: Optional[str] = None, half: bool = False,
                        size: int = 224, crop_pct: float = 224 / 256, mean: list = IMAGENET_MEAN,
                        std: list = IMAGENET_STD, interpolation: str = "bilinear",
                        stem: str = "standard", output: str = "features") -> FrozenEncoder:
    """torchvision:<model>: penultimate features; pretrained: DEFAULT | <weights tag> | none; or weights: PATH (a
    full classifier checkpoint loads with its head dropped); size/crop_pct/mean/std/interpolation of its training
    (ImageNet's by default); stem as the student's (small_kernel, cifar) for a network trained on small images;
    output: logits reads the classifier's class logits instead (its head kept; for ``objective: kd``)."""
    from mvmr.models import build_backbone

    if output not in ("features", "logits"):
        raise ValueError(f"output must be features or logits, got {output!r}")
    tag = None if (pretrained.lower() == "none" or weights is not None) else pretrained
    logits = output == "logits"
    num_classes = {} if not (logits and weights) else {"num_classes": _classes_in(weights, f"torchvision:{spec}")}
    model, dim = build_backbone(spec, stem, weights=tag, zero_init_residual=False, what=f"teacher 'torchvision:{spec}'",
                                keep_head=logits, **num_classes)
    weights_id = f"torchvision:{spec}:{tag}" if tag else None
    if weights is not None:
        load_strict(model, weights, f"teacher 'torchvision:{spec}'")
        weights_id = "file:" + file_digest(Path(weights).expanduser())
    return FrozenEncoder(model, dim, size, mean, std, interpolation, crop_pct, half, **_read(model, logits, weights_id))


def _read(model, logits: bool, weights_id: Optional[str]) -> dict:
    """FrozenEncoder's keywords for a classifier read as features or as logits: for logits the summary is the head's
    output (``encode``, so it is never taken as the map's pool) and the weights' id says so (its own cache)."""
    if not logits:
        return {"weights_id": weights_id}
    return {"encode": model, "weights_id": weights_id and weights_id + ":logits"}


def _classes_in(weights: str, spec: str) -> int:
    """The number of classes of a classifier checkpoint: the rows of its last head weight (fc, classifier, heads)."""
    from mvmr.encoders import HEAD_PREFIXES, load_state_file

    heads = [v for k, v in load_state_file(weights).items() if k.startswith(HEAD_PREFIXES) and k.endswith("weight")
             and v.ndim == 2]
    if not heads:
        raise WeightsError(f"teacher '{spec}': output: logits needs a classifier checkpoint, and "
                           f"'{weights}' holds no head (fc/classifier/heads) weights; use output: features")
    return int(heads[-1].shape[0])


@mvmr.register_teacher("mvmr", family=True)
def mvmr_teacher(spec: str, half: bool = False) -> FrozenEncoder:
    """mvmr:<checkpoint>: the backbone of a student trained by mvmr, at its training image size."""
    from mvmr.checkpoint import load_student

    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsError(f"teacher 'mvmr:{spec}': checkpoint '{path}' "
                           + ("is a folder; name the file, e.g. RUN/checkpoints/last.pt" if path.is_dir() else "does not exist"))
    recipe, student = load_student(path)
    # The student normalises inside embed(); the encoder only resizes.
    return FrozenEncoder(student, student.feature_dim, recipe.data.image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
                         "bilinear", 1.0, half, encode=student.embed, weights_id="file:" + file_digest(path),
                         dense=student.feature_map)
