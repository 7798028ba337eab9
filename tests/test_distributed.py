"""Global-batch correctness under DistributedDataParallel (2 gloo processes on CPU), and torchrun end to end."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mvmr.config import build_recipe
from mvmr.data import Batch
from mvmr.engine import EpochSampler
from mvmr.syncbn import convert_batchnorm
from mvmr.methods import build_method

RECIPES = Path(__file__).parent.parent / "recipes"
RECIPE_TREES = {
    "mvmr": {"method": "mvmr", "student": {"backbone": "resnet18", "projector": "64-32"},
             "providers": {"pixels": {"weight": 1.0}, "hog": {"weight": -0.5, "params": {"cells_per_block": 2}}},
             "loss": {"dcor_estimator": "unbiased"}},
    "mira": {"method": "mira", "student": {"backbone": "resnet18", "projector": "64-32"},
             "mira": {"prototypes": 40, "assigner": "mira"},
             "providers": {"lsd": {"weight": 0.5}}},
    "sinkhorn": {"method": "mira", "student": {"backbone": "resnet18", "projector": "64-32"},
                 "mira": {"prototypes": 40, "assigner": "sinkhorn"}},
}


def _batch(n=16):
    g = torch.Generator().manual_seed(0)
    original, view1 = torch.rand(n, 3, 32, 32, generator=g), torch.rand(n, 3, 32, 32, generator=g)
    label, index, view2 = torch.zeros(n, dtype=torch.long), torch.arange(n), torch.rand(n, 3, 32, 32, generator=g)
    return Batch(original, [view1, view2], label, index)


def _method(name, train=False):
    """eval: BatchNorm uses running statistics; train: batch statistics (global-batch BN under DDP)."""
    torch.manual_seed(0)
    return build_method(build_recipe(RECIPE_TREES[name])).train(train)


def _loss_and_grads(model, method, batch):
    loss, _ = model(batch, 0.3)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}


CASES = [(n, False) for n in RECIPE_TREES] + [(n, True) for n in RECIPE_TREES]


def _worker(rank, init_file, out_dir):
    """Every case in one process group (one spawn: starting two Pythons with torch costs seconds per case)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    for name, train in CASES:
        method = _method(name, train)
        if train:
            method = convert_batchnorm(method, "cpu")
        ddp = torch.nn.parallel.DistributedDataParallel(method)
        half = _batch().slice(rank * 8, (rank + 1) * 8)
        torch.save(_loss_and_grads(ddp, method, half), Path(out_dir) / f"{name}-{train}-{rank}.pt")
    dist.barrier()  # no process tears gloo down while the other still has collectives in flight
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out / "init"), str(out)), nprocs=2, join=True)
    return out


@pytest.mark.parametrize("name,train", CASES)
def test_two_processes_equal_one_process_on_the_concatenated_batch(two_processes, name, train):
    """In eval mode, and in train mode with global-batch BatchNorm (on by default under torchrun)."""
    method = _method(name, train)
    loss, grads = _loss_and_grads(method, method, _batch())
    (loss0, grads0), (loss1, grads1) = (torch.load(two_processes / f"{name}-{train}-{r}.pt") for r in (0, 1))
    assert abs((loss0 + loss1).item() / 2 - loss.item()) < 1e-5  # MV-MR: each rank holds the global loss itself
    if name == "mvmr":
        assert abs(loss0.item() - loss.item()) < 1e-5 and abs(loss1.item() - loss.item()) < 1e-5
    assert grads.keys() == grads0.keys() == grads1.keys()
    for k in grads:
        assert torch.allclose(grads0[k], grads1[k], atol=1e-6)  # DDP averaged
        scale = grads[k].abs().max().item() + 1e-12
        assert (grads0[k] - grads[k]).abs().max().item() <= 1e-5 * max(1.0, scale), k


def test_sampler_shards_concatenate_to_the_single_process_batches():
    one = list(EpochSampler(40, seed=1, epoch=2, start=8, local_batch=8))
    shards = [list(EpochSampler(40, seed=1, epoch=2, start=8, rank=r, world=2, local_batch=4)) for r in range(2)]
    merged = [i for t in range(len(one) // 8) for r in range(2) for i in shards[r][t * 4:(t + 1) * 4]]
    assert merged == one and len(shards[0]) == len(shards[1]) == 16


def test_torchrun_two_processes_then_resume_on_one(tmp_path):
    out = tmp_path / "run"
    sets = ["trainer.num_workers=0", "trainer.progress=false", "optim.batch_size=16", "data.limit=64",
            "eval.limit=32", "student.projector=64-32", f"trainer.cache_dir={tmp_path / 'cache'}",
            "trainer.checkpoint_every=1"]
    args = [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mvmr",
           "pretrain", str(RECIPES / "quickstart.yaml"), "--out", str(out), *args, "--set", "trainer.max_steps=2"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert state["step"] == 2
    cmd = [sys.executable, "-m", "mvmr", "pretrain", str(RECIPES / "quickstart.yaml"), "--out", str(out), "--resume",
           "--set", "trainer.max_steps=4"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["step"] == 4


QUEUE_TREE = {"method": "mira", "student": {"backbone": "resnet18", "projector": "64-32"},
              "mira": {"prototypes": 40, "assigner": "sinkhorn", "queue": 24}}


def _queue_steps(model, method, batches):
    """Two forwards: the first fills the queue, the second assigns over batch + queue."""
    losses = [model(b, 0.3)[0].detach() for b in batches]
    return losses[-1], method.queue.clone(), int(method.queue_filled)


def _queue_worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    method = convert_batchnorm(build_method(build_recipe(QUEUE_TREE)).train(), "cpu")
    ddp = torch.nn.parallel.DistributedDataParallel(method)
    batches = [b.slice(rank * 8, (rank + 1) * 8) for b in (_batch(), _batch().slice(0, 16))]
    torch.save(_queue_steps(ddp, method, batches), Path(out_dir) / f"{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def test_two_processes_hold_the_single_process_queue_and_assign_over_it(tmp_path):
    mp.spawn(_queue_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    method = build_method(build_recipe(QUEUE_TREE)).train()
    loss, queue, filled = _queue_steps(method, method, [_batch(), _batch().slice(0, 16)])
    (loss0, queue0, filled0), (loss1, queue1, filled1) = torch.load(tmp_path / "0.pt"), torch.load(tmp_path / "1.pt")
    assert filled == filled0 == filled1 == 24  # two global batches of 16, capped at the queue's 24 rows
    assert torch.allclose(queue0, queue, atol=1e-5) and torch.allclose(queue1, queue, atol=1e-5)
    assert abs((loss0 + loss1).item() / 2 - loss.item()) < 1e-5
