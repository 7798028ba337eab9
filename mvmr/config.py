"""Recipes: pydantic models loaded from YAML, with ``--set section.key=value`` overrides.

A recipe is the whole truth of a run; the fully resolved recipe is saved beside the run's outputs and inside every
checkpoint. Unknown keys and wrong types are errors naming the key and the file.
"""
from __future__ import annotations

import copy
import functools
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model, field_validator,
                      model_validator)

from .errors import ConfigError


def _layer_spec(v: Any) -> Any:
    """'8192-8192-8192' (a single width written in YAML, 512, arrives as an int); '' is no projector."""
    v = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
    if isinstance(v, str) and v:
        parts = v.split("-")
        if not all(p.isdigit() and int(p) >= 1 for p in parts):
            raise ValueError("a layer spec is widths ≥ 1 joined by '-', such as 8192-8192-8192")
    return v


LayerSpec = Annotated[str, BeforeValidator(_layer_spec)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
MAX_IMAGE_SIZE = 4096  # a bound on data.image_size: larger sides allocate terabytes per batch


def _ordered_range(v: tuple[float, float], what: str, low: float, high: float, open_low: bool = True):
    lo, hi = v
    if not ((lo > low if open_low else lo >= low) and lo <= hi <= high):
        bound = f"{low} < lo" if open_low else f"{low} ≤ lo"
        raise ValueError(f"{what} must be [lo, hi] with {bound} ≤ hi ≤ {high}")
    return v


class Section(BaseModel):
    """A recipe section: unknown keys are errors, and so are NaN and infinite numbers. A method's own settings
    subclass this."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AugmentConfig(Section):
    """The augmented view's random transforms (the original view is only resized and centre-cropped)."""

    crop: Literal["resized", "pad"] = Field("resized", description="resized: a random resized crop of crop_scale; "
                                            "pad: the CIFAR crop (reflect-pad by pad, random crop)")
    pad: int = Field(4, ge=0, description="reflect padding of the pad crop, in pixels")
    crop_scale: tuple[float, float] = Field((0.08, 1.0), description="area fraction of the resized crop (min, max)")
    flip_p: Probability = Field(0.5, description="probability of a horizontal flip")
    jitter: tuple[float, float, float, float] = Field((0.8, 0.8, 0.8, 0.2), description="colour jitter strengths: "
                                                      "brightness, contrast, saturation, hue")
    jitter_p: Probability = Field(0.8, description="probability of the colour jitter")
    gray_p: Probability = Field(0.2, description="probability of grayscale")
    blur_p: Probability = Field(1.0, description="probability of a Gaussian blur (kernel 2·int(0.05·size)+1); the "
                                "official MV-MR transform always blurs")
    blur_sigma: tuple[float, float] = Field((0.1, 2.0), description="range of the blur's σ (min, max)")

    @field_validator("crop_scale")
    @classmethod
    def _scale(cls, v):
        return _ordered_range(v, "crop_scale", 0.0, 1.0)

    @field_validator("blur_sigma")
    @classmethod
    def _sigma(cls, v):
        return _ordered_range(v, "blur_sigma", 0.0, float("inf"))

    @field_validator("jitter")
    @classmethod
    def _jitter(cls, v):
        if min(v) < 0 or v[3] > 0.5:
            raise ValueError("jitter is (brightness, contrast, saturation, hue), each ≥ 0 and hue ≤ 0.5")
        return v


class DataConfig(Section):
    """The training images, their size, and where and how the views are made."""

    name: str = Field("digits", description="a registered dataset: stl10, cifar10, cifar100, imagefolder, npz, digits, "
                      "or a plug-in's")
    root: str = Field("~/data", description="where the dataset lives (a folder, or the .npz file for npz)")
    image_size: int = Field(32, ge=8, le=MAX_IMAGE_SIZE, description="side of the student's square input, in pixels")
    download: bool = Field(False, description="let torchvision download STL10 / CIFAR into root")
    limit: Optional[int] = Field(None, ge=1, description="use only the first N training images (smoke runs)")
    fingerprint: Literal["stat", "content"] = Field(
        "stat", description="how the feature cache recognises changed files: their paths, sizes and modification "
                            "times (stat, cheap), or also a hash of their bytes (content)")
    augment: AugmentConfig = AugmentConfig()
    augment_on: Literal["auto", "device", "workers"] = Field(
        "auto", description="where the augmented views' photometric ops run: device (batched, after the copy; the "
                            "workers only crop, in uint8), workers (whole views in the data workers); auto: device "
                            "on CUDA, workers on a CPU")
    mixup: float = Field(0.0, ge=0, description="mixup across each batch, λ ~ Beta(mixup, mixup), the same mix for "
                         "every view of an image (function-matching distillation: the teacher sees the student's "
                         "mixed image); 0: off. Mixed images read no feature cache")
    params: dict[str, Any] = Field({}, description="extra settings for a plug-in dataset's builder")

    @model_validator(mode="after")
    def _pad_fits(self):
        if self.augment.crop == "pad" and self.augment.pad >= self.image_size:
            raise ValueError(f"data.augment.pad={self.augment.pad} must be smaller than data.image_size="
                             f"{self.image_size} (reflect padding)")
        return self


class StudentConfig(Section):
    """The network being trained: backbone, stem and projector."""

    backbone: str = Field("resnet50", description="a torchvision ResNet (resnet18, resnet50, ...)")
    stem: Literal["standard", "small_kernel", "cifar"] = Field(
        "standard", description="small_kernel: the official MV-MR 3×3 conv1 with max-pool; cifar: also no max-pool")
    zero_init_residual: bool = Field(True, description="the last BatchNorm of every residual branch starts at 0 "
                                     "(official MV-MR, MIRA, VICReg); false: torchvision's initialisation")
    projector: LayerSpec = Field("8192-8192-8192", description="default: the method's default_projector")
    projector_bias: Literal["none", "last"] = Field(
        "none", description="which projector Linears have a bias: none (official MV-MR, VICReg) or the last one "
                            "(official MIRA); default: the method's default_projector_bias")
    projector_output_bn: bool = Field(False, description="end the projector with a BatchNorm without affine "
                                      "(MoCo v3); centres the embedding (not in the official MV-MR / MIRA)")
    channels_last: Optional[bool] = Field(None, description="channels_last memory format for the student and the "
                                          "images; default: on CUDA (faster convolutions with autocast), off on a CPU")


class ProviderConfig(Section):
    """One representation the student is tied to. ``objective`` (registered in mvmr.registry.objectives: dcor,
    cosine, mse, cos_smoothl1, rkd, sp, seed, crd, kd) compares the student's ``representation`` (projector output,
    backbone features, or the backbone's last feature map: ``spatial``, against the provider's dense features on
    its grid) of ``view`` with the provider's features: ``cross`` = the student's augmented view against the
    provider on the original view (the MV-MR paper), ``original`` = both on the original view, ``augmented`` =
    both on the augmented view. ``standardize`` rescales the provider's features before the objective so every
    dimension weighs alike. ``provider`` names the registered provider when the entry's key is only a label (two
    terms of one teacher, or two teachers of one architecture)."""

    weight: float = Field(1.0, description="the term's weight in the loss (with dcor, a negative weight minimises "
                                           "the dependence)")
    provider: Optional[str] = Field(None, description="the registered provider, when the entry's key is only a label")
    params: dict[str, Any] = Field({}, description="the provider's own settings (a teacher's size, weights, "
                                   "output, ...)")
    objective: str = Field("dcor", description="how the student is tied to it: dcor, cosine, mse, cos_smoothl1, "
                           "rkd, sp, seed, crd, kd, or a registered one (mvmr objectives)")
    objective_params: dict[str, Any] = Field({}, description="the objective's own settings (temperature, adaptor, ...)")
    view: Literal["cross", "original", "augmented"] = Field(
        "cross", description="cross: the student's augmented view against the provider on the original view (the "
                             "paper); original: both on the original; augmented: both on the augmented view")
    representation: Literal["projector", "backbone", "spatial"] = Field(
        "projector", description="the student's side: projector output, backbone features, or the backbone's last "
                                 "feature map against the provider's dense features")
    standardize: Literal["none", "layernorm", "dimension", "phis"] = Field(
        "none", description="layernorm: each feature vector to zero mean, unit variance (FD's non-affine "
                            "LayerNorm); dimension: each dimension to zero mean, unit variance over the data seen "
                            "in training (running statistics, checkpointed); phis: RADIO's PHI-S, the features "
                            "rotated by PCA then a Hadamard matrix and scaled by one number, so every dimension has "
                            "unit variance (running statistics, checkpointed)")
    bank: int = Field(0, ge=0, description="with view: augmented, the teacher's outputs on the views of this many "
                      "epochs are computed once and stored in the feature cache (FKD's idea on mvmr's deterministic "
                      "views); the run's augmentations then cycle with this period: epoch e shows the views of "
                      "epoch e mod bank, and reads their outputs from disk. 0: the teacher runs on every batch")
    bank_dtype: Literal["float32", "float16"] = Field("float32", description="how the bank stores the outputs "
                                                      "(float32: exact; float16: half the disk)")


class OptimConfig(Section):
    """The optimiser and its schedule; the batch is global."""

    name: Literal["adam", "adamw", "sgd", "lars"] = Field("adam", description="the optimiser (torch's fused step "
                                                          "where it has one)")
    lr: float = Field(1e-4, gt=0, description="peak learning rate, after warm-up, before lr_scaling")
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none", description="linear: lr × batch_size / 256 (MIRA, SwAV); sqrt: lr × sqrt(batch_size) / 4")
    weight_decay: float = Field(1e-6, ge=0, description="weight decay (decoupled for adamw)")
    momentum: float = Field(0.9, ge=0, le=1, description="momentum of sgd and lars")
    batch_size: int = Field(256, ge=2, description="the global batch, across every process")
    epochs: int = Field(100, ge=1, description="passes over the training images")
    warmup_epochs: float = Field(10, ge=0, description="linear warm-up, then a cosine decay to the end")
    accumulate: int = Field(1, ge=1, description="micro-batches per step (exact: gradient caching); "
                                                "batch_size stays the batch every statistic is computed on")


class TrainerConfig(Section):
    """Where and how the run executes: device, precision, seed, workers, checkpoints, cache."""

    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="autocast dtype of the student; auto: bf16 on CUDA (fp16 on GPUs without bf16), fp32 "
                            "on a CPU. dCor, the providers and the assigners always run in float32")
    compile: bool = Field(False, description="torch.compile the student (its forward and backward)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seeds the weights, the data order and every view")
    num_workers: int = Field(8, ge=0, description="data-loader worker processes")
    max_steps: Optional[int] = Field(None, ge=1, description="stop after this many steps (a resume may change it)")
    checkpoint_every: int = Field(1000, ge=1, description="steps between checkpoints (and one at every epoch's end)")
    log_every: int = Field(10, ge=1, description="steps between records in metrics.jsonl")
    use_cache: bool = Field(True, description="read deterministic providers' and teachers' features from the "
                            "feature cache")
    cache_dir: str = Field("~/.cache/mvmr", description="where the feature cache and teacher banks live")
    tensorboard: bool = Field(False, description="also write TensorBoard events (pip install 'mvmr[tensorboard]')")
    progress: bool = Field(True, description="a progress bar on the terminal")
    sync_bn: Optional[bool] = Field(None, description="global-batch BatchNorm under torchrun; default: on")


class EvalConfig(Section):
    """The online k-NN evaluation on the dataset's train and test splits."""

    knn_every: int = Field(1, ge=0, description="epochs between online k-NN evaluations (0: never)")
    knn_k: int = Field(20, ge=1, description="neighbours of the weighted k-NN")
    knn_t: float = Field(0.07, gt=0, description="temperature of the k-NN's weights")
    limit: Optional[int] = Field(None, ge=1, description="evaluate on at most N train and N test images")
    batch_size: int = Field(256, ge=1, description="feature-extraction batch per process")
    teacher_knn: bool = Field(False, description="also the k-NN of each teacher's own features of the same images "
                              "(original view), once at the start: the level the student is distilled towards")


class Recipe(Section):
    """The sections every method shares. ``build_recipe`` adds the chosen method's own section (``Method.section``,
    validated by its ``Method.Config``); the recipe holds no other method's settings."""

    method: str = Field("mvmr", description="the registered method to train: mvmr, mira, or a plug-in's; its own "
                        "section (loss, mira, ...) is the only method section the recipe may hold")
    data: DataConfig = DataConfig()
    student: StudentConfig = StudentConfig()
    providers: dict[str, ProviderConfig] = {}
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()
    eval: EvalConfig = EvalConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def method_config(self) -> Optional[BaseModel]:
        """The chosen method's own section (None for a method without settings)."""
        section = _method_class(self.method).section
        return getattr(self, section) if section else None


def _method_class(name: str):
    from .registry import methods

    return methods.get(name)


@functools.lru_cache(maxsize=None)
def _recipe_model(method_cls: type) -> type[Recipe]:
    """Recipe + the method's section, as one pydantic model (made once per method class)."""
    if not method_cls.section:
        return Recipe
    return create_model(f"Recipe_{method_cls.__name__}", __base__=Recipe,
                        **{method_cls.section: (method_cls.Config, Field(default_factory=method_cls.Config))})


def split_key(dotted: str) -> list[str]:
    """'providers."mvmr:/runs/a.pt".weight' -> ['providers', 'mvmr:/runs/a.pt', 'weight']: double quotes keep a
    name holding '.' or ':' whole."""
    keys, current, quoted = [], "", False
    for ch in dotted:
        if ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            keys.append(current)
            current = ""
        else:
            current += ch
    if quoted:
        raise ConfigError(f"--set '{dotted}': unbalanced double quote")
    return keys + [current]


PROVIDER_KEYS = ("weight", "provider", "params", "objective", "objective_params", "view", "representation",
                 "standardize", "bank", "bank_dtype")


def _unquoted_provider(dotted: str) -> Optional[str]:
    """The quoted form of ``providers.NAME.key`` when NAME holds '.' and was not quoted (e.g. a checkpoint path)."""
    if not dotted.startswith("providers.") or '"' in dotted:
        return None
    rest = dotted[len("providers."):]
    for key in PROVIDER_KEYS:
        name, sep, tail = rest.partition(f".{key}")
        if sep and "." in name and (tail == "" or tail.startswith(".")):
            return f'providers."{name}".{key}{tail}'
    return None


def _set(tree: dict, dotted: str, value: Any, source: str) -> None:
    keys = split_key(dotted)
    if any(k == "" for k in keys):
        raise ConfigError(f"{source} '{dotted}={value}': the key has an empty part; write section.key=value")
    quoted = _unquoted_provider(dotted)
    if quoted is not None:
        raise ConfigError(f"{source} '{dotted}': a provider name holding '.' must be quoted: --set '{quoted}=...'")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: cannot set '{dotted}': '{k}' is not a section")
        node = child
    if isinstance(value, dict) and value and isinstance(node.get(keys[-1]), dict) and keys != ["providers"]:
        # a mapping sets the keys it names and keeps the others: --set 'optim={lr: 0.1}' changes lr only; the
        # providers section, a set of named terms, is given whole: --set 'providers={hog: {weight: 1}}' is the only term
        for key, item in value.items():
            _set(tree, f"{dotted}.{_quoted(key)}", item, source)
        return
    node[keys[-1]] = value


def _quoted(key: Any) -> str:
    """A key as one part of a dotted --set path (quoted when it holds '.')."""
    return f'"{key}"' if "." in str(key) else str(key)


def parse_override(item: str) -> tuple[str, Any]:
    """'section.key=value' -> (dotted key, YAML-parsed value)."""
    if "=" not in item:
        raise ConfigError(f"--set '{item}': expected section.key=value")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set '{item}': nothing before '='; write section.key=value")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _refuse_other_sections(tree: dict, method: str) -> None:
    """A section of another method (``mira:`` in a ``method: mvmr`` recipe) is named as such, not as unknown."""
    from .registry import methods

    known = set(Recipe.model_fields) | {_method_class(method).section}
    for key in tree:
        if key in known:
            continue
        owners = [n for n in methods.names() if methods.get(n).section == key]
        if owners:
            raise ConfigError(f"section '{key}' belongs to method '{owners[0]}', but this recipe's method is "
                              f"'{method}'; remove it (a recipe holds only its own method's settings)")


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{loc}'"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "finite_number":
        message = "must be a finite number (NaN and infinity are refused)"
    shown = repr(first.get("input"))
    if len(shown) > 80 or isinstance(first.get("input"), dict):
        return f"{source}: '{loc}': {message}"
    return f"{source}: '{loc}': {message} (got {shown})"


def build_recipe(tree: dict, overrides: Optional[list[str]] = None, source: str = "<recipe>") -> Recipe:
    """Validate a recipe tree after applying ``--set`` overrides: the common sections and the chosen method's."""
    from .errors import RegistryError

    tree = copy.deepcopy(tree or {})
    for item in overrides or []:
        key, value = parse_override(item)
        _set(tree, key, value, "--set")
    name = tree.get("method", "mvmr")
    try:
        method_cls = _method_class(name) if isinstance(name, str) else None
    except RegistryError as exc:
        raise ConfigError(f"{source}: {exc} (key 'method')") from None
    if method_cls is None:
        raise ConfigError(f"{source}: 'method' must be a method name, got {name!r}")
    _refuse_other_sections(tree, name)
    student = tree.get("student")
    if student is None or isinstance(student, dict):
        defaults = {"projector": method_cls.default_projector, "projector_bias": method_cls.default_projector_bias}
        tree["student"] = {**defaults, **(student or {})}
    try:
        return _recipe_model(method_cls).model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None
