"""CLIP image towers from open_clip: ``clip-vit-b16`` (the MV-MR distillation teacher) and ``clip:<model>[:<tag>]``."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import mvmr
from mvmr.encoders import FrozenEncoder, file_digest, load_strict, offline_unless_reachable
from mvmr.errors import WeightsError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def open_clip_teacher(model_name: str, pretrained: str, weights: Optional[str], half: bool, who: str,
                      **preprocess) -> FrozenEncoder:
    """open_clip model ``model_name``'s visual tower; weights from a tag, a local file, or ``none`` (random).
    ``preprocess`` (size, crop_pct, mean, std, interpolation; None keeps CLIP's own) overrides the preprocessing;
    a ViT's size is fixed by its position embeddings."""
    import open_clip

    if model_name not in open_clip.list_models():
        raise ValueError(f"open_clip has no model '{model_name}'")
    logging.disable(logging.WARNING)  # open_clip warns "initialized randomly": the weights are loaded below
    try:
        model = open_clip.create_model(model_name, pretrained=None)
    finally:
        logging.disable(logging.NOTSET)
    if weights is not None:
        load_strict(model, weights, who)
        weights_id = "file:" + file_digest(Path(weights).expanduser())
    elif pretrained.lower() != "none":
        online = True
        try:
            with offline_unless_reachable() as online:
                open_clip.load_checkpoint(model, open_clip.download_pretrained(
                    open_clip.get_pretrained_cfg(model_name, pretrained)))
        except Exception as exc:
            why = "offline and not in the local cache" if not online else str(exc).splitlines()[0][:120]
            raise WeightsError(
                f"{who}: pretrained weights '{pretrained}' for {model_name} cannot be had ({why}); "
                f"pass --teacher-weights PATH (a local open_clip checkpoint) or params.weights, "
                f"or params.pretrained: none for a random teacher") from None
        weights_id = f"open_clip:{model_name}:{pretrained}"
    else:
        weights_id = None  # random: identified by a hash of its parameters
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", model.visual.image_size)
    size = size[0] if isinstance(size, (tuple, list)) else size
    own = {"size": int(size), "mean": cfg.get("mean", CLIP_MEAN), "std": cfg.get("std", CLIP_STD),
           "interpolation": cfg.get("interpolation", "bicubic"), "crop_pct": 1.0}
    p = {**own, **{k: v for k, v in preprocess.items() if v is not None}}
    if p["size"] != own["size"] and "vit" in model_name.lower():
        raise ValueError(f"{model_name} takes {own['size']} px images (its position embeddings are fixed), not {p['size']}")
    encoder = FrozenEncoder(model.visual, out_dim=model.visual.output_dim, size=p["size"], mean=p["mean"],
                            std=p["std"], interpolation=p["interpolation"], crop_pct=p["crop_pct"], half=half,
                            weights_id=weights_id)
    encoder.description = f"open_clip {model_name} image tower ({model.visual.output_dim}-d)"
    return encoder


@mvmr.register_teacher("clip-vit-b16")
def clip_vit_b16(pretrained: str = "laion400m_e32", weights: Optional[str] = None, half: bool = False,
                 crop_pct: Optional[float] = None, mean: Optional[list] = None, std: Optional[list] = None,
                 interpolation: Optional[str] = None) -> FrozenEncoder:
    """open_clip ViT-B-16 visual tower (512-d, 224 px, CLIP normalisation); the official MV-MR teacher."""
    return open_clip_teacher("ViT-B-16", pretrained, weights, half, "teacher 'clip-vit-b16'", crop_pct=crop_pct,
                             mean=mean, std=std, interpolation=interpolation)


@mvmr.register_teacher("clip", family=True)
def clip(spec: str, weights: Optional[str] = None, half: bool = False, size: Optional[int] = None,
         crop_pct: Optional[float] = None, mean: Optional[list] = None, std: Optional[list] = None,
         interpolation: Optional[str] = None) -> FrozenEncoder:
    """clip:<open_clip model>[:<pretrained tag>|none], e.g. clip:ViT-B-16-quickgelu:openai."""
    model_name, _, tag = spec.partition(":")
    if not tag and weights is None:
        raise ValueError("clip:<model> needs a pretrained tag (clip:<model>:<tag>), 'none', or params.weights")
    return open_clip_teacher(model_name, tag or "none", weights, half, f"teacher 'clip:{spec}'", size=size,
                             crop_pct=crop_pct, mean=mean, std=std, interpolation=interpolation)
