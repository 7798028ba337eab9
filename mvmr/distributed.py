"""Global-batch helpers: no-ops in one process, collectives under torch.distributed.

Objectives here are batch statistics; these make N processes with batch b compute what 1 process computes with
batch N·b. ``gather_with_grad`` returns the global batch and routes each rank its own slice of the summed gradient.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over processes (no gradient; for marginals of assignments computed under no_grad)."""
    if is_distributed():
        x = x.clone()
        dist.all_reduce(x)
    return x


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x over processes along dim 0, differentiably."""
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every process's rows of x (their counts may differ by any amount), concatenated in rank order; no gradient.
    For evaluation: each process extracts its shard of a dataset, then all see every feature."""
    if not is_distributed():
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(counts, n)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(c.item())] for p, c in zip(parts, counts)])


def global_logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """logsumexp over ``dim`` of the tensor concatenated across processes along ``dim``."""
    local = torch.logsumexp(x, dim=dim, keepdim=True)
    if not is_distributed():
        return local
    parts = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(parts, local)
    return torch.logsumexp(torch.cat(parts, dim=dim), dim=dim, keepdim=True)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def check_device(device: str) -> None:
    """One clear line for a device name torch does not know, or CUDA asked for where there is none."""
    from .errors import ConfigError

    try:
        kind = torch.device(device).type if device != "auto" else "auto"
    except RuntimeError:
        raise ConfigError(f"trainer.device '{device}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device '{device}': no CUDA device is available here; use auto or cpu")
    if kind == "mps" and not (torch.backends.mps.is_available()):
        raise ConfigError(f"trainer.device '{device}': no Apple MPS device is available here; use auto or cpu")
    if kind not in ("auto", "cpu", "cuda", "mps"):
        raise ConfigError(f"trainer.device '{device}' cannot train (mvmr trains on cpu, cuda or mps); use auto, "
                          f"cpu or cuda")


def setup(device: str = "auto") -> torch.device:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA) and pick this process's device."""
    check_device(device)
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if launched_by_torchrun() and not is_distributed():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if device != "auto" and device != "cuda":
        return torch.device(device)
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def is_main() -> bool:
    return rank() == 0
