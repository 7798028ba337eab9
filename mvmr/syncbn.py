"""BatchNorm over the global batch on any device: ``GlobalBatchNorm`` and ``convert_batchnorm``.

torch's SyncBatchNorm runs only on accelerators; under torchrun on CPUs (gloo) mvmr uses this module instead, so N
processes normalise with the statistics of the whole global batch, as one process would. Batch sums are
all-reduced with gradient (torch.distributed.nn.functional.all_reduce): every process computes the global loss, and
DDP's gradient average makes the gradient exactly the one-process gradient.
"""
from __future__ import annotations

import torch
from torch import nn

from .distributed import is_distributed


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm1d/2d whose training statistics come from every process's rows."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"GlobalBatchNorm expects 2-D, 3-D or 4-D input, got {input.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        xf = x.float()
        count = torch.full((1,), xf.numel() / c, device=x.device, dtype=torch.float32)
        stats = torch.cat([xf.sum(dims), (xf * xf).sum(dims), count])
        if torch.is_grad_enabled():
            from torch.distributed.nn.functional import all_reduce

            stats = all_reduce(stats)
        else:  # e.g. an EMA teacher under no_grad: a plain collective
            torch.distributed.all_reduce(stats)
        total = stats[2 * c]
        mean = stats[:c] / total
        var = (stats[c:2 * c] / total - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * total / max(float(total) - 1, 1.0), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Every BatchNorm of ``module`` normalised over the global batch: torch's SyncBatchNorm on CUDA, else
    GlobalBatchNorm (same parameters and running statistics)."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:  # the same Parameter objects: a frozen BN (an EMA teacher's) stays frozen
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child, device_type))
    return module
