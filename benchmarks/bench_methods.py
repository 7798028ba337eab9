"""One results table at equal budget on the shared CIFAR-10 sample (common.cifar_tree: ResNet-18, 32 px, batch 256,
Adam 1e-3, seed 0): random init, MV-MR (hand-crafted providers), MV-MR without dCor, VICReg (lightly's VICRegLoss,
registered from outside by examples/vicreg_plugin), MIRA, Sinkhorn, and the best MIRA hybrid of the search
(bench_mira_search.py). One JSON line each with k-NN top-1, linear-probe top-1 and minutes.
Usage: python bench_methods.py [epochs] [zero_init|torchvision_init] [variants...]  (default 4 zero_init: the
mvmr default, zero_init_residual true; torchvision_init: false, the setting of the issue's 43.2 vs 36.4)
"""
import sys
from pathlib import Path

from bench_mira_search import variant_tree
from common import HAND, cifar_tree, emit, train_and_measure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "vicreg_plugin"))  # as if installed
import mvmr_example.vicreg  # noqa: E402,F401  -- registers the vicreg method

VARIANTS = {
    "mvmr": lambda e: cifar_tree(e, method="mvmr", providers=HAND),
    "mvmr_no_dcor": lambda e: cifar_tree(e, method="mvmr", loss={"dcor_views": 0.0}),
    "vicreg": lambda e: cifar_tree(e, method="vicreg"),
    "mira": lambda e: variant_tree(e, "base"),
    "sinkhorn": lambda e: variant_tree(e, "sinkhorn:base"),
    "mira_hybrid": lambda e: variant_tree(e, "wide+views+hand"),  # recipes/cifar10_mira.yaml at this budget
}

if __name__ == "__main__":
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    init = sys.argv[2] if len(sys.argv) > 2 else "zero_init"
    for i, name in enumerate(sys.argv[3:] or list(VARIANTS)):
        tree = VARIANTS[name](epochs)
        tree["student"] = {**tree["student"], "zero_init_residual": init == "zero_init"}
        result = train_and_measure(tree, linear=True)
        if i == 0:
            emit(bench="methods", variant="random_init", init=init, knn_top1=result["knn_top1_at_init"],
                 linear_top1=result["linear_top1_at_init"])
        emit(bench="methods", variant=name, init=init, epochs=epochs, knn_top1=result["knn_top1"],
             linear_top1=result["linear_top1"], minutes=round(result["minutes"], 1))
