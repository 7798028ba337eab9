"""Reading mvmr checkpoints back: the recipe saved inside rebuilds the method, then its weights are loaded."""
from __future__ import annotations

from pathlib import Path

import torch

from .config import Recipe, build_recipe
from .errors import MVMRError


def load_checkpoint(path: str | Path, with_providers: bool = True):
    """(recipe, method) of a checkpoint written by mvmr; ``with_providers=False`` skips building the providers."""
    from .methods import build_method

    path = Path(path).expanduser()
    if not path.is_file():
        raise MVMRError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        recipe: Recipe = build_recipe(state["recipe"], source=str(path))
    except MVMRError:
        raise
    except Exception as exc:
        raise MVMRError(f"'{path}' is not an mvmr checkpoint ({type(exc).__name__}: {exc})") from None
    if not with_providers:
        recipe = recipe.model_copy(update={"providers": {}})
    method = build_method(recipe)
    method.load_trainable_state(state["method"])
    method.eval()
    return recipe, method
