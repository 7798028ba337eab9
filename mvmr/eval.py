"""Evaluation of frozen features: weighted k-NN (InstDisc/DINO protocol) and a linear probe (scikit-learn)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .config import DataConfig
from .data import OneView, build_dataset


@torch.no_grad()
def extract_features(encoder, dataset: Dataset, batch_size: int = 256, device: str = "cpu",
                     num_workers: int = 0, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features (``encoder.embed`` for a Student, else ``encoder``) and labels of a dataset. With
    ``world`` > 1 each process extracts every world-th image from ``rank`` and all gather the rows (any order:
    k-NN and probes do not care), so no process waits idle on another's share."""
    from .distributed import gather_rows

    if world > 1:
        dataset = Subset(dataset, list(range(rank, len(dataset), world)))
    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    for images, y in DataLoader(dataset, batch_size=batch_size, num_workers=num_workers):
        feats.append(getattr(encoder, "embed", encoder)(images.to(device)).float())
        labels.append(torch.as_tensor(y, device=feats[-1].device))
    encoder.train(was_training)
    x, y = torch.cat(feats), torch.cat(labels)
    if world > 1:
        x, y = gather_rows(x), gather_rows(y)
    return x.cpu(), y.cpu()


def knn_classify(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20, t: float = 0.07, chunk: int = 1024) -> dict[str, float]:
    """Weighted k-NN on cosine similarity, votes exp(sim / t); returns top-1 and top-5 accuracy in percent."""
    train_x = torch.nn.functional.normalize(train_x.float(), dim=1)
    test_x = torch.nn.functional.normalize(test_x.float(), dim=1)
    classes = int(max(train_y.max(), test_y.max())) + 1
    k = min(k, len(train_x))
    top1 = top5 = 0
    for start in range(0, len(test_x), chunk):
        sim = test_x[start:start + chunk] @ train_x.T
        values, idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(sim), classes).scatter_add_(1, train_y[idx], (values / t).exp())
        pred = votes.topk(min(5, classes), dim=1).indices
        truth = test_y[start:start + chunk, None]
        top1 += (pred[:, :1] == truth).any(1).sum().item()
        top5 += (pred == truth).any(1).sum().item()
    return {"top1": 100.0 * top1 / len(test_x), "top5": 100.0 * top5 / len(test_x)}


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 max_iter: int = 1000, C: float = 1.0) -> dict[str, float]:
    """Multinomial logistic regression on standardised frozen features; top-1 and top-5 accuracy in percent."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import top_k_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(torch.unique(train_y)) < 2:
        from .errors import MVMRError

        raise MVMRError(f"linear probe: the {len(train_y)} training images hold a single class; it needs at least "
                        f"two (raise --limit, or evaluate on labelled data with several classes)")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, C=C))
    clf.fit(train_x.numpy(), train_y.numpy())
    proba = clf.predict_proba(test_x.numpy())
    labels = clf.classes_
    y = test_y.numpy()
    top5 = top_k_accuracy_score(y, proba, k=min(5, len(labels)), labels=labels) if len(labels) > 2 else float("nan")
    return {"top1": 100.0 * float((labels[proba.argmax(1)] == y).mean()), "top5": 100.0 * top5}


def labelled_splits(cfg: DataConfig, limit: Optional[int] = None) -> tuple[Dataset, Dataset]:
    """Original-view train and test datasets for evaluation, optionally cut to ``limit`` images each."""
    train, test = (OneView(build_dataset(cfg, s), cfg.image_size) for s in ("train", "test"))
    if limit is not None:
        train = Subset(train, np.linspace(0, len(train) - 1, min(limit, len(train))).astype(int).tolist())
        test = Subset(test, np.linspace(0, len(test) - 1, min(limit, len(test))).astype(int).tolist())
    return train, test


# Protocols on frozen features: (train_x, train_y, test_x, test_y, k, t) -> {"top1", "top5"}; k and t are k-NN's.
PROTOCOLS = {"knn": knn_classify, "linear": lambda tx, ty, vx, vy, k, t: linear_probe(tx, ty, vx, vy)}


def evaluate(encoder, cfg: DataConfig, protocol: str = "knn", k: int = 20, t: float = 0.07,
             limit: Optional[int] = None, device: str = "cpu", batch_size: int = 256) -> dict[str, float]:
    """Extract features of the labelled splits and run a protocol of ``PROTOCOLS`` (``knn`` or ``linear``)."""
    train, test = labelled_splits(cfg, limit)
    tx, ty = extract_features(encoder, train, batch_size, device)
    vx, vy = extract_features(encoder, test, batch_size, device)
    return PROTOCOLS[protocol](tx, ty, vx, vy, k, t)


def cluster_metrics(pred: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """NMI, adjusted NMI, adjusted Rand index and Hungarian-matched accuracy (percent), as SeLa reports."""
    from scipy.optimize import linear_sum_assignment
    from sklearn import metrics

    y, p = labels.numpy(), pred.numpy()
    clusters, classes = np.unique(p, return_inverse=True), np.unique(y, return_inverse=True)
    table = np.zeros((len(clusters[0]), len(classes[0])))
    np.add.at(table, (clusters[1], classes[1]), 1)
    rows, cols = linear_sum_assignment(-table)
    return {"nmi": 100 * metrics.normalized_mutual_info_score(y, p),
            "ami": 100 * metrics.adjusted_mutual_info_score(y, p),
            "ari": 100 * metrics.adjusted_rand_score(y, p),
            "accuracy": 100 * table[rows, cols].sum() / len(y), "clusters_used": int(len(clusters[0]))}


@torch.no_grad()
def evaluate_clusters(method, cfg: DataConfig, limit: Optional[int] = None, device="cpu",
                      batch_size: int = 256) -> dict[str, float]:
    """``cluster_metrics`` of a clustering method's assignments (``method.predict_clusters``) of the test split."""
    _, test = labelled_splits(cfg, limit)
    method.to(device).eval()
    preds, labels = [], []
    for images, y in torch.utils.data.DataLoader(test, batch_size=batch_size):
        preds.append(method.predict_clusters(images.to(device)).cpu())
        labels.append(torch.as_tensor(y))
    return cluster_metrics(torch.cat(preds), torch.cat(labels))
