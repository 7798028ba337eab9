"""The augmented view's photometric stage (flip, colour jitter, grayscale, Gaussian blur, solarize) on a whole batch
at once, each image with its own parameters: the ``data.augment_on: device`` path.

torchvision's v2 ops take one factor per call, so per-image factors need this tensor code; it reproduces
torchvision's float kernels (``adjust_*``, ``rgb_to_grayscale``, ``gaussian_blur``) to float tolerance (tested
against ``PaperAugment.photometric``, the per-image path). The blur is separable (two 1-D passes: 2k instead of k²
multiply-adds a pixel, the same kernel as torchvision's outer product). Parameters stay on the CPU, where they are
drawn: which images an op touches is decided there, so the device never syncs with the host.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

GRAY = (0.2989, 0.587, 0.114)  # torchvision's luma weights
JITTER = ("brightness", "contrast", "saturation", "hue")


class Photometric(NamedTuple):
    """Per-image parameters of the photometric stage; each field has a leading batch dimension once collated.
    ``order`` is the jitter order (indices into ``JITTER``), ``factor`` the four jitter factors, ``active`` which
    of them apply; ``sigma`` 0 means no blur."""

    flip: torch.Tensor      # bool
    order: torch.Tensor     # (4,) int64
    factor: torch.Tensor    # (4,) float64 (the drawn values, exactly)
    active: torch.Tensor    # (4,) bool
    gray: torch.Tensor      # bool
    sigma: torch.Tensor     # float64
    solarize: torch.Tensor  # bool


def blur_kernel_size(size: int) -> int:
    """The official MV-MR blur kernel for a view of side ``size``: 2·int(0.05·size) + 1."""
    return 2 * int(0.05 * size) + 1


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of (B, 3, H, W) images."""
    r, g, b = x.unbind(dim=-3)
    return r.mul(GRAY[0]).add_(g, alpha=GRAY[1]).add_(b, alpha=GRAY[2]).unsqueeze(-3)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """f·x + (1 − f)·other, clamped to [0, 1]; f is (B,)."""
    return torch.lerp(other.expand_as(x), x, f.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def _brightness(x, f):
    return (x * f.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def _contrast(x, f):
    return _blend(x, grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), f)


def _saturation(x, f):
    return _blend(x, grayscale(x), f)


_SECTOR_OFFSET = (5.0, 3.0, 1.0)  # r, g, b


def _hue(x, f):
    """Rotate the hue by f (of a full turn), keeping HSV saturation and value: torchvision's RGB → HSV → RGB
    round trip in closed form, with the hue in sixths h6 = 6h and chroma c = max − min (channel n is
    max − c·clamp(min(k, 4 − k), 0, 1), k = (n + h6) mod 6)."""
    r, g, b = x.unbind(dim=-3)
    high, low = torch.maximum(torch.maximum(r, g), b), torch.minimum(torch.minimum(r, g), b)
    c = high - low
    safe = torch.where(c > 0, c, torch.ones_like(c))  # grey pixels: c = 0, any hue, unchanged
    h6 = torch.where(high == r, (g - b) / safe, torch.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h6 += (6.0 * f).view(-1, 1, 1)
    offset = torch.tensor(_SECTOR_OFFSET, device=x.device, dtype=x.dtype).view(3, 1, 1)
    k = (h6.unsqueeze(-3) + offset).remainder_(6.0)
    return high.unsqueeze(-3) - torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0).mul_(c.unsqueeze(-3))


_OPS = (_brightness, _contrast, _saturation, _hue)


def _gaussian_kernels(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size) normalised 1-D Gaussians (torchvision's kernel); a delta where sigma is 0 (no blur)."""
    t = torch.linspace(-(size - 1) / 2, (size - 1) / 2, size, device=sigma.device)
    safe = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
    kernels = torch.softmax(-0.5 * (t / safe[:, None]) ** 2, dim=1)
    delta = (t == 0).to(kernels.dtype).expand_as(kernels)
    return torch.where((sigma > 0)[:, None], kernels, delta)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Blur image b with a size×size Gaussian of σ = sigma[b] (reflect padding, as torchvision), as two 1-D passes."""
    b, c, h, w = x.shape
    half = size // 2
    k = _gaussian_kernels(sigma.to(x.device, x.dtype), size).repeat_interleave(c, dim=0)  # (B·C, size)
    y = F.pad(x.reshape(1, b * c, h, w), [half] * 4, mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, size), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, size, 1), groups=b * c)
    return y.view(b, c, h, w)  # contiguous: channels_last measured 0.75-1.04x here (bench_throughput.py)


def photometric_batch(x: torch.Tensor, p: Photometric, chunk: Optional[int] = None) -> torch.Tensor:
    """The photometric stage of (B, 3, H, W) float images in [0, 1] on their device, image b with the parameters
    row b of ``p`` (CPU tensors): the same ops, in the same order, as ``PaperAugment.photometric``. The images go
    through in chunks of ``chunk`` (default: the whole batch on a GPU; on a CPU about CPU_CHUNK_PIXELS pixels, which
    keeps a chunk's intermediates in cache: a whole 224-px batch is memory-bound there)."""
    if chunk is None:
        chunk = len(x) if x.device.type != "cpu" else max(1, CPU_CHUNK_PIXELS // (x.shape[-2] * x.shape[-1]))
    if chunk >= len(x):
        return _photometric(x, p)
    return torch.cat([_photometric(x[i:i + chunk], Photometric(*(t[i:i + chunk] for t in p)))
                      for i in range(0, len(x), chunk)])


CPU_CHUNK_PIXELS = 2 ** 19  # ~10 images at 224 px, ~56 at 96 px (bench_throughput.py)


def _photometric(x: torch.Tensor, p: Photometric) -> torch.Tensor:
    device = x.device
    x = x.clone()  # updated in place where an op touches only some images (the caller's tensor stays as it was)

    def apply(mask: torch.Tensor, op, factor=None) -> None:
        nonlocal x
        rows = mask.nonzero().flatten()  # decided on the CPU: no device sync
        if len(rows) == len(x):  # contiguous: an op may return a view (grayscale's expand), later steps write in place
            x = (op(x) if factor is None else op(x, factor.to(device, x.dtype, non_blocking=True))).contiguous()
        elif len(rows):
            index = rows.to(device, non_blocking=True)
            part = x.index_select(0, index)
            x.index_copy_(0, index, op(part) if factor is None else
                          op(part, factor[rows].to(device, x.dtype, non_blocking=True)))

    apply(p.flip, lambda t: t.flip(-1))
    for k in range(len(JITTER)):  # jitter position k: each image applies its own k-th op, with its own factor
        for op_index, op in enumerate(_OPS):
            apply((p.order[:, k] == op_index) & p.active[:, op_index], op, p.factor[:, op_index])
    apply(p.gray, lambda t: grayscale(t).expand_as(t))
    size = blur_kernel_size(x.shape[-1])
    if size > 1:
        apply(p.sigma > 0, lambda t, sigma: gaussian_blur(t, sigma, size), p.sigma)
    apply(p.solarize, lambda t: torch.where(t >= 0.5, 1.0 - t, t))
    return x.clamp_(0.0, 1.0)
