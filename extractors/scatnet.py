"""Scattering network features (kymatio Scattering2D), built for whatever image size arrives.

kymatio 0.3 cannot import ``kymatio.torch`` with SciPy ≥ 1.15 (its 3-D module wants ``scipy.special.sph_harm``), so
the 2-D torch frontend is imported directly. FFTs run in float32 (no fp16/bf16). For J = 2, L = 8 on 96×96 RGB the
output is 3 × 81 × 24 × 24.
"""
from __future__ import annotations

import torch
from torch import nn

import mvmr


def scattering_class() -> type:
    """kymatio's 2-D torch scattering module, imported past the broken ``kymatio.torch`` package."""
    from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

    return ScatteringTorch2D


def n_coefficients(J: int, L: int) -> int:
    """Scattering channels per input channel for max_order 2: 1 + J·L + L²·J·(J−1)/2."""
    return 1 + J * L + L * L * J * (J - 1) // 2


@mvmr.register_extractor("scatnet")
class ScatNet(mvmr.Provider):
    """Flattened scattering coefficients (B, 3 · n_coefficients(J, L) · H/2^J · W/2^J)."""

    description = "wavelet scattering transform (kymatio Scattering2D)"

    def __init__(self, J: int = 2, L: int = 8) -> None:
        super().__init__()
        if int(J) < 1 or int(L) < 1:
            raise ValueError(f"J and L must be ≥ 1, got J={J}, L={L}")
        self.J, self.L = int(J), int(L)
        self._transforms = nn.ModuleDict()  # one kymatio module per input size, built on first use

    def output_dim(self, height: int, width: int) -> int:
        return 3 * n_coefficients(self.J, self.L) * (height // 2**self.J) * (width // 2**self.J)

    def check_input_size(self, height: int, width: int) -> None:
        if min(height, width) < 2**self.J:
            raise ValueError(f"scatnet with J={self.J} needs images of at least {2**self.J} px, got {height}x{width}; "
                             f"lower params.J or use larger images")

    def weights_digest(self) -> str:
        return ""  # the filters are a function of (J, L, size): nothing learned to identify

    def _transform(self, height: int, width: int, device: torch.device) -> nn.Module:
        key = f"{height}x{width}"
        if key not in self._transforms:
            self.check_input_size(height, width)
            self._transforms[key] = scattering_class()(J=self.J, shape=(height, width), L=self.L)
        return self._transforms[key].to(device)

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        transform = self._transform(images.shape[-2], images.shape[-1], images.device)
        with torch.autocast(device_type=images.device.type, enabled=False):
            return transform(images.float().contiguous())
