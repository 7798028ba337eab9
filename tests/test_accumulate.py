"""Exact gradient accumulation: 4 micro-batches give the loss and every gradient of the whole batch (BatchNorm in
eval mode, so its statistics do not differ by micro-batch), for MV-MR (dCor, variance, a learned head) and MIRA."""
import pytest
import torch

from mvmr.config import build_recipe
from mvmr.data import Batch
from mvmr.engine.accumulate import cached_step
from mvmr.methods import build_method

TREES = {
    "mvmr": {"method": "mvmr", "student": {"backbone": "resnet18", "projector": "64-32"}, "data": {"image_size": 16},
             "providers": {"pixels": {"weight": 1.0},
                           "lsd": {"weight": 0.5, "objective": "cosine", "view": "augmented",
                                   "representation": "backbone"}},
             "loss": {"dcor_estimator": "unbiased"}},
    "mira": {"method": "mira", "student": {"backbone": "resnet18", "projector": "64-32"}, "data": {"image_size": 16},
             "mira": {"prototypes": 40}, "providers": {"pixels": {"weight": 0.5}}},
}


def _batch(n=64):
    g = torch.Generator().manual_seed(0)
    return Batch(torch.rand(n, 3, 16, 16, generator=g), [torch.rand(n, 3, 16, 16, generator=g) for _ in range(2)],
                 torch.zeros(n, dtype=torch.long), torch.arange(n))


def _grads(method):
    return {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", list(TREES))
def test_four_micro_batches_equal_one_batch(name):
    torch.manual_seed(0)
    method = build_method(build_recipe(TREES[name])).eval()
    loss, _ = method.training_step(_batch(), 0.3)
    loss.backward()
    whole = _grads(method)
    method.zero_grad()
    cached, terms = cached_step(method, _batch(), 4, 0.3)
    parts = _grads(method)
    assert abs(cached.item() - loss.item()) < 1e-5
    assert whole.keys() == parts.keys() and len(whole) > 10
    for k in whole:
        scale = max(1.0, whole[k].abs().max().item())
        assert (whole[k] - parts[k]).abs().max().item() <= 1e-5 * scale, k
    # and naive accumulation (mean of micro-batch losses) is a different objective
    method.zero_grad()
    naive = sum(method.training_step(_batch().slice(i * 16, (i + 1) * 16), 0.3)[0] for i in range(4)) / 4
    assert abs(naive.item() - loss.item()) > 1e-3


def test_graph_free_pass_leaves_batchnorm_statistics_alone():
    torch.manual_seed(0)
    a = build_method(build_recipe(TREES["mvmr"])).train()
    b = build_method(build_recipe(TREES["mvmr"])).train()
    b.load_state_dict(a.state_dict())
    cached_step(a, _batch(), 4, 0.0)
    for i in range(4):  # what the graph pass alone would do: one BatchNorm update per micro-batch
        b.encode(_batch().slice(i * 16, (i + 1) * 16))
    for (k, x), y in zip(a.student.named_buffers(), b.student.buffers()):
        assert torch.allclose(x, y), k
