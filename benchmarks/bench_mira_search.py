"""The MIRA / Sinkhorn lever search of issue #10 on the shared CIFAR-10 sample (equal budget: common.cifar_tree).
One JSON line per variant: k-NN and NMI at init and at the end, the last logged head entropies (nats; uniform =
ln K) and minutes. Usage: python bench_mira_search.py EPOCHS VARIANT [VARIANT ...]
"""
import math
import sys
from pathlib import Path

import yaml
from common import CIFAR_NPZ, HAND, cifar_tree, emit, train_and_measure

K = 300
BASE = {"method": "mira", "mira": {"prototypes": K, "views": "recipe"}, "student": {"projector": "1024-1024-128"}}
PIXELS = {"pixels": {"weight": 1.0}}  # one provider: 1 - dCor(embedding, pixels of the original)
VIEW_TERMS = {"mse": 1.0, "variance": 1.0, "dcor_views": 1.0}  # MV-MR's terms between the two global views
LEVERS = {  # each a dict of section updates; 'a+b' applies a then b on top of BASE
    "base": {},
    "views": {"mira": VIEW_TERMS},
    "k30": {"mira": {"prototypes": 30}},
    "k10": {"mira": {"prototypes": 10}},
    "k100": {"mira": {"prototypes": 100}},
    "d16": {"student": {"projector": "1024-1024-16"}},
    "own": {"mira": {"targets": "all"}},
    "wide": {"student": {"projector": "1024-1024"}},
    "hand": {"providers": HAND},
    "bneck16": {"mira": {"bottleneck": 16}},
    "multicrop": {"mira": {"local_crops": 4, "local_size": 16}},
    "official_views": {"mira": {"views": "official"}},
    "lars": {"optim": {"name": "lars", "lr": 0.3, "lr_scaling": "linear"}},  # MIRA's optimiser (batch 256)
    "fixedproto": {"mira": {"freeze_prototypes_epochs": 10_000}},
    "taut10": {"mira": {"tau_teacher": 0.1}},
    "d32": {"student": {"projector": "1024-1024-32"}},
    "tau05": {"mira": {"tau_student": 0.05}},
    "weak": {"data": {"augment": {"crop": "pad", "pad": 4}}},
    "bn": {"student": {"projector_output_bn": True}},
    "data_init": {"mira": {"prototype_init": "data"}},
    "pixels": {"providers": PIXELS},
    # issue #22: SwAV's queue, softer student temperatures, MIRA's running marginal
    "q1024": {"mira": {"queue": 1024}},
    "q3840": {"mira": {"queue": 3840}},
    "qstart1": {"mira": {"queue_start_epoch": 1}},
    "ts02": {"mira": {"tau_student": 0.2}},
    "ts03": {"mira": {"tau_student": 0.3}},
    "ts05": {"mira": {"tau_student": 0.5}},
    "ema": {"mira": {"marginal": "ema"}},
    "ema99": {"mira": {"marginal": "ema", "marginal_momentum": 0.99}},
    "nozero": {"student": {"zero_init_residual": False}},
    "lr1e4": {"optim": {"lr": 1e-4}},  # the quickstarts' student: k-NN at init 93.6 on digits
    "q256": {"mira": {"queue": 256}},
    "s16": {"data": {"image_size": 16}},  # digits are 8x8: 16 px keeps every pixel (measured 3.0 vs 4.4 min at 32)
    "seed1": {"trainer": {"seed": 1}},
}
ALIASES = {"bn_data": "bn+data_init", "hybrid": "pixels", "bn_data_hybrid": "bn+data_init+pixels"}  # earlier names


def apply_levers(sections: dict, levers: str) -> dict:
    """Update ``sections`` in place with each lever of 'a+b' in turn (an empty string: none); returns it."""
    for lever in filter(None, levers.split("+")):
        for section, value in LEVERS[lever].items():
            sections[section] = {**sections.get(section, {}), **value}
    return sections


def variant_tree(epochs: int, name: str) -> dict:
    """BASE with the named lever(s) ('a+b' stacks levers; 'sinkhorn:' prefix swaps the assigner; 'digits@' trains
    on scikit-learn's digits at batch 128 instead of the CIFAR sample), or a shipped recipe ('cifar10_mira.yaml',
    its own epochs when ``epochs`` is 0; 'cifar10_mira.yaml+q3840' with levers on top) on the shared sample."""
    digits, _, name = name.rpartition("@")
    if digits:
        tree = variant_tree(epochs, name)
        tree["data"] = {**{k: v for k, v in tree["data"].items() if k != "root"}, "name": "digits"}  # levers stay
        tree["optim"]["batch_size"] = 128
        return tree
    assigner, _, levers = name.rpartition(":")
    recipe, _, on_top = levers.partition("+")
    if recipe.endswith(".yaml"):
        tree = yaml.safe_load((Path(__file__).resolve().parent.parent / "recipes" / recipe).read_text())
        apply_levers(tree, on_top)
        tree["data"]["root"] = str(CIFAR_NPZ)
        tree["trainer"].update(progress=False)
        if epochs:
            tree["optim"]["epochs"] = tree["eval"]["knn_every"] = epochs
        if assigner:
            tree["mira"]["assigner"] = assigner
        return tree
    sections = apply_levers({k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()},
                            ALIASES.get(levers, levers))
    if assigner:
        sections["mira"] = {**sections["mira"], "assigner": assigner}
    return cifar_tree(epochs, **sections)


if __name__ == "__main__":
    epochs = int(sys.argv[1])
    for name in sys.argv[2:]:
        tree = variant_tree(epochs, name)
        emit(bench="mira_search", variant=name, epochs=tree["optim"]["epochs"], prototypes=tree["mira"]["prototypes"],
             ln_k=round(math.log(tree["mira"]["prototypes"]), 3), **train_and_measure(tree, clusters=True))
