"""Recipes: pydantic models loaded from YAML, with ``--set section.key=value`` overrides.

A recipe is the whole truth of a run; the fully resolved recipe is saved beside the run's outputs and inside every
checkpoint. Unknown keys and wrong types are errors naming the key and the file.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .errors import ConfigError


# A layer spec such as 8192-8192-8192; a single width written in YAML (512) arrives as an int.
LayerSpec = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AugmentConfig(_Section):
    crop_scale: tuple[float, float] = (0.08, 1.0)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 0.2)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)


class DataConfig(_Section):
    name: str = "digits"
    root: str = "~/data"
    image_size: int = Field(32, ge=8)
    download: bool = False
    limit: Optional[int] = Field(None, ge=1, description="use only the first N training images (smoke runs)")
    augment: AugmentConfig = AugmentConfig()


class StudentConfig(_Section):
    backbone: str = "resnet50"
    small_stem: bool = False
    projector: LayerSpec = "8192-8192-8192"
    channels_last: bool = False


class ProviderConfig(_Section):
    weight: float = 1.0
    params: dict[str, Any] = {}


class LossConfig(_Section):
    mse: float = 1.0
    variance: float = 1.0
    dcor_views: float = 1.0
    std_margin: float = 1.0
    dcor_estimator: Literal["biased", "unbiased"] = "biased"


class OptimConfig(_Section):
    name: Literal["adam", "adamw", "sgd", "lars"] = "adam"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    momentum: float = 0.9
    batch_size: int = Field(256, ge=2)
    epochs: int = Field(100, ge=1)
    warmup_epochs: float = Field(10, ge=0)
    accumulate: int = Field(1, ge=1)


class TrainerConfig(_Section):
    device: str = "auto"
    precision: Literal["fp32", "fp16", "bf16"] = "fp16"
    seed: int = 0
    num_workers: int = Field(8, ge=0)
    max_steps: Optional[int] = Field(None, ge=1)
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(10, ge=1)
    use_cache: bool = True
    cache_dir: str = "~/.cache/mvmr"
    tensorboard: bool = False
    progress: bool = True
    sync_bn: bool = False


class EvalConfig(_Section):
    knn_every: int = Field(1, ge=0, description="epochs between online k-NN evaluations (0: never)")
    knn_k: int = 20
    knn_t: float = 0.07
    limit: Optional[int] = Field(None, ge=1, description="evaluate on at most N train and N test images")


class MiraConfig(_Section):
    assigner: Literal["mira", "sinkhorn"] = "mira"
    prototypes: int = 3000
    projector: LayerSpec = "2048-2048-256"
    tau_student: float = 0.1
    tau_teacher: float = 0.225
    beta: tuple[float, float] = (0.75, 2 / 3)
    iters: int = 30
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 3
    ema: tuple[float, float] = (0.99, 1.0)


class Recipe(_Section):
    method: str = "mvmr"
    data: DataConfig = DataConfig()
    student: StudentConfig = StudentConfig()
    providers: dict[str, ProviderConfig] = {}
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    trainer: TrainerConfig = TrainerConfig()
    eval: EvalConfig = EvalConfig()
    mira: MiraConfig = MiraConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _set(tree: dict, dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: cannot set '{dotted}': '{k}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """'section.key=value' -> (dotted key, YAML-parsed value)."""
    if "=" not in item:
        raise ConfigError(f"--set '{item}': expected section.key=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _format_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{loc}'"
    return f"{source}: '{loc}': {first['msg']} (got {first.get('input')!r})"


def build_recipe(tree: dict, overrides: Optional[list[str]] = None, source: str = "<recipe>") -> Recipe:
    """Validate a recipe tree after applying ``--set`` overrides."""
    tree = copy.deepcopy(tree or {})
    for item in overrides or []:
        key, value = parse_override(item)
        _set(tree, key, value, "--set")
    try:
        return Recipe.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def read_recipe_tree(path: Union[str, Path]) -> dict:
    """The YAML mapping of a recipe file, or one clear error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe file '{path}' does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections, got {type(tree).__name__}")
    return tree


def load_recipe(path: Union[str, Path], overrides: Optional[list[str]] = None) -> Recipe:
    """Read a YAML recipe, apply overrides, validate. Errors name the key and the file."""
    return build_recipe(read_recipe_tree(path), overrides, str(path))


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file through a temporary name and a rename: readers never see half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_recipe(recipe: Recipe, path: Path) -> None:
    atomic_write_text(Path(path), yaml.safe_dump(recipe.to_dict(), sort_keys=False))
