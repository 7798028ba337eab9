"""The student: a torchvision or timm backbone without its classifier, and a projector from a spec string."""
from __future__ import annotations

import contextlib
import io
import socket
import sys
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import torch
from torch import nn

from .errors import ConfigError, WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def apply_stem(model: nn.Module, stem: str) -> nn.Module:
    """The first layers of a torchvision ResNet for small images (``student.stem``). ``small_kernel``: the official
    MV-MR code's 3×3 stride-1 conv1, max-pool kept (STL10 at 96 px: 24×24 after the stem); ``cifar``: 3×3 stride-1
    conv1 and no max-pool (CIFAR-style, 4× the FLOPs of small_kernel); ``standard``: torchvision's 7×7 stride-2
    conv1 and max-pool."""
    if stem == "standard":
        return model
    if not hasattr(model, "conv1") or not hasattr(model, "maxpool"):
        raise ConfigError(f"student.stem '{stem}' applies to torchvision ResNets (conv1 + maxpool)")
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    if stem == "cifar":
        model.maxpool = nn.Identity()
    return model


def _check_downloadable(url: str, timeout: float = 2.0) -> None:
    """Before torch.hub creates its cache folder and tries to download ``url``: the file is in the hub cache
    already, or its host answers within ``timeout`` seconds; else an OSError at once, with nothing written."""
    if (Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name).is_file():
        return
    try:
        socket.create_connection((urlparse(url).hostname, 443), timeout=timeout).close()
    except OSError as exc:
        raise OSError(f"no network: {urlparse(url).hostname} cannot be reached, and the file is not in "
                      f"{Path(torch.hub.get_dir()) / 'checkpoints'}") from exc


def build_backbone(name: str, stem: str = "standard", weights: Optional[str] = None,
                   zero_init_residual: bool = True, what: Optional[str] = None,
                   keep_head: bool = False, num_classes: Optional[int] = None) -> tuple[nn.Module, int]:
    """Backbone by name (torchvision ``resnet50`` or ``timm:<name>``), classifier removed; returns (model, dim).
    ``keep_head`` (torchvision) keeps the classifier (``num_classes`` wide): the model returns logits and dim is
    the number of classes.

    ``weights``: a torchvision weights tag (e.g. ``DEFAULT``, ``IMAGENET1K_V2``) for torchvision models; None is
    random initialisation. ``zero_init_residual`` zeroes the last BN of each residual branch (torchvision ResNets;
    the official MV-MR, MIRA and VICReg code do so). ``what`` names the model in errors (a student or a teacher).
    """
    what = what or f"student.backbone '{name}'"
    if name.startswith("timm:"):
        import timm

        try:
            model = timm.create_model(name[5:], pretrained=False, num_classes=0)
        except RuntimeError as exc:
            raise ConfigError(f"{what}: {exc}") from None
        if stem != "standard":
            raise ConfigError("student.stem is for torchvision ResNets; pick a timm model made for small images")
        return model, model.num_features
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        raise ConfigError(f"{what} is not a torchvision classification model "
                          f"(e.g. resnet18, resnet50; or timm:<name>)")
    kwargs = {"zero_init_residual": True} if zero_init_residual and "resne" in name and weights is None else {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    try:
        if weights is not None:
            _check_downloadable(tvm.get_model_weights(name)[weights].url)
        with contextlib.redirect_stderr(io.StringIO()) as said:  # torch.hub's "Downloading: ..." line
            model = tvm.get_model(name, weights=weights, **kwargs)
        sys.stderr.write(said.getvalue())
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{what}: torchvision weights '{weights}': {exc}") from None
    except (OSError, RuntimeError) as exc:  # URLError is an OSError: no network
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0][:100]
        raise WeightsError(f"{what}: torchvision weights '{weights}' could not be downloaded ({reason}); "
                           f"pass a local file with --teacher-weights PATH (params.weights), or params.pretrained: "
                           f"none for a random network") from None
    apply_stem(model, stem)
    head = "fc" if hasattr(model, "fc") else "classifier" if hasattr(model, "classifier") else "heads"
    old = getattr(model, head, None)
    linears = [m for m in old.modules() if isinstance(m, nn.Linear)] if isinstance(old, nn.Module) else []
    if not linears:
        raise ConfigError(f"{what}: its classifier has no Linear layer to take the features from; "
                          f"choose a model with a Linear head (resnet50, convnext_tiny, vit_b_16, ...) or timm:<name>")
    if keep_head:
        return model, linears[-1].out_features
    setattr(model, head, nn.Identity())
    return model, linears[0].in_features


def build_projector(in_dim: int, spec: str, bias: str = "none", output_bn: bool = False) -> nn.Module:
    """'8192-8192-8192' -> Linear-BN-ReLU blocks and a last Linear. ``bias``: ``none`` (official MV-MR / VICReg: no
    Linear has one) or ``last`` (official MIRA: only the last; a hidden Linear's bias the following BatchNorm
    cancels anyway). ``output_bn`` ends with a BatchNorm without affine (as MoCo v3): the embedding is centred, so
    cosines between different images spread from the first step."""
    try:
        dims = [in_dim] + [int(d) for d in spec.split("-")] if spec else [in_dim]
    except ValueError:
        raise ConfigError(f"projector spec '{spec}' must look like 8192-8192-8192") from None
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-2], dims[1:-1]):
        layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    if len(dims) > 1:
        layers.append(nn.Linear(dims[-2], dims[-1], bias=bias == "last"))
    if output_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=False))
    return nn.Sequential(*layers)


def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
    """(B, N, D) patch tokens of a square grid -> (B, D, √N, √N)."""
    b, n, d = tokens.shape
    side = int(round(n ** 0.5))
    if side * side != n:
        raise ValueError(f"{n} patch tokens do not form a square grid")
    return tokens.transpose(1, 2).reshape(b, d, side, side)


def feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map (B, C, h, w) of a backbone: a torchvision ResNet's layer4 output (what its average pool
    reads), a timm model's ``forward_features`` (a ViT's patch tokens, prefix tokens dropped, on their grid), or an
    open_clip ViT's patch tokens."""
    if all(hasattr(model, a) for a in ("conv1", "bn1", "maxpool", "layer4", "avgpool")):  # torchvision ResNet
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        return model.layer4(model.layer3(model.layer2(model.layer1(x))))
    if hasattr(model, "forward_features") and hasattr(model, "num_features"):  # timm
        out = model.forward_features(x)
        if out.ndim == 3:
            return tokens_to_grid(out[:, getattr(model, "num_prefix_tokens", 0):])
        if out.shape[1] != model.num_features and out.shape[-1] == model.num_features:  # NHWC models
            out = out.permute(0, 3, 1, 2)
        return out
    if hasattr(model, "output_tokens") and hasattr(model, "transformer"):  # open_clip VisionTransformer
        previous, model.output_tokens = model.output_tokens, True
        try:
            _, tokens = model(x)
        finally:
            model.output_tokens = previous
        return tokens_to_grid(tokens)
    raise ConfigError(f"{type(model).__name__} gives no feature map mvmr knows how to read (torchvision ResNets, "
                      f"timm models, open_clip ViTs); use representation: backbone")


def pools_map(model: nn.Module) -> bool:
    """Whether the backbone's pooled features are the mean of its feature map over locations (torchvision ResNets)."""
    return isinstance(getattr(model, "avgpool", None), nn.AdaptiveAvgPool2d) and hasattr(model, "layer4")


class Student(nn.Module):
    """images in [0, 1] -> normalised -> backbone features (``embed``) -> projector (``forward``)."""

    def __init__(self, backbone: str = "resnet50", stem: str = "standard", projector: str = "8192-8192-8192",
                 zero_init_residual: bool = True, projector_bias: str = "none", projector_output_bn: bool = False,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__()
        self.backbone, self.feature_dim = build_backbone(backbone, stem, zero_init_residual=zero_init_residual)
        self.projector = build_projector(self.feature_dim, projector, projector_bias, projector_output_bn)
        self.out_dim = int(projector.split("-")[-1]) if projector else self.feature_dim
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, cfg) -> "Student":
        """The student a recipe's ``student`` section describes."""
        return cls(cfg.backbone, cfg.stem, cfg.projector, cfg.zero_init_residual, cfg.projector_bias,
                   cfg.projector_output_bn)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone((images - self.mean) / self.std)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's last feature map (B, feature_dim, h, w); ``representation: spatial`` reads it."""
        return feature_map(self.backbone, (images - self.mean) / self.std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projector(self.embed(images))
