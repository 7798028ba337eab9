"""Local-std filter against scipy.ndimage.generic_filter(np.std)."""
import numpy as np
import pytest
import torch
from scipy.ndimage import generic_filter

import mvmr
from mvmr_extractors.lsd import local_std


def _images(seed=0):
    g = np.random.default_rng(seed)
    imgs = g.random((2, 3, 19, 16))
    imgs[:, :, :8, :8] = 0.7  # flat region with an offset
    return imgs


@pytest.mark.parametrize("mode", ["nearest", "mirror", "wrap", "constant"])
@pytest.mark.parametrize("size", [3, 5])
def test_matches_scipy(mode, size):
    imgs = _images()
    ref = np.stack([[generic_filter(c, np.std, size=size, mode=mode) for c in im] for im in imgs])
    got64 = local_std(torch.tensor(imgs), size, mode).numpy()
    got32 = local_std(torch.tensor(imgs, dtype=torch.float32), size, mode).numpy()
    assert np.abs(got64 - ref).max() <= 1e-12
    assert np.abs(got32 - ref).max() <= 1e-6
    r = size // 2
    assert got32[:, :, r : 8 - r, r : 8 - r].max() == 0.0  # flat windows (away from the border) read exactly 0


def test_provider_flattens_and_has_finite_gradient():
    provider = mvmr.create_extractor("lsd", size=3)
    x = torch.rand(2, 3, 12, 12)
    assert provider(x).shape == (2, provider.output_dim(12, 12))
    x = torch.full((1, 1, 6, 6), 0.3, requires_grad=True)
    local_std(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_bad_parameters():
    with pytest.raises(mvmr.MVMRError, match="lsd.*odd"):
        mvmr.create_extractor("lsd", size=4)
    with pytest.raises(mvmr.MVMRError, match="lsd.*mode"):
        mvmr.create_extractor("lsd", mode="reflect101")
