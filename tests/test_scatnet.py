"""ScatNet provider against kymatio's numpy frontend."""
import numpy as np
import pytest
import torch

import mvmr


def test_kymatio_2d_torch_frontend_imports():
    """kymatio.torch is broken on SciPy >= 1.15; the direct 2-D frontend import must keep working."""
    from mvmr_extractors.scatnet import scattering_class

    assert scattering_class().__name__ == "ScatteringTorch2D"


def test_shape_on_96px_and_numpy_frontend_agreement():
    from kymatio.scattering2d.frontend.numpy_frontend import ScatteringNumPy2D

    provider = mvmr.create_extractor("scatnet", J=2, L=8)
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    raw = provider.extract(x)
    assert raw.shape == (2, 3, 81, 24, 24)
    ref = ScatteringNumPy2D(J=2, shape=(96, 96), L=8)(x.numpy())
    assert np.abs(raw.numpy() - ref).max() <= 1e-6
    assert provider(x).shape == (2, provider.output_dim(96, 96)) == (2, 139_968)


@pytest.mark.parametrize("size", [(32, 32), (40, 28)])
def test_any_input_size(size):
    provider = mvmr.create_extractor("scatnet", J=2, L=4)
    out = provider(torch.rand(1, 3, *size))
    assert out.shape == (1, provider.output_dim(*size))


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 8 px"):
        mvmr.create_extractor("scatnet", J=3, L=4)(torch.rand(1, 3, 4, 4))
