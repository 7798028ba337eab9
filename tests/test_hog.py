"""Batched torch HOG against skimage.feature.hog."""
import numpy as np
import pytest
import torch
from skimage.color import rgb2gray
from skimage.feature import hog as skimage_hog

import mvmr

SETTINGS = [
    dict(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3), block_norm="L2-Hys"),
    dict(orientations=24, pixels_per_cell=(6, 5), cells_per_block=(2, 3), block_norm="L1"),
    dict(orientations=12, pixels_per_cell=(7, 7), cells_per_block=(1, 1), block_norm="L2"),
    dict(orientations=8, pixels_per_cell=(4, 6), cells_per_block=(2, 2), block_norm="L1-sqrt"),
]


def _images(n=3, h=50, w=45, seed=0):
    g = np.random.default_rng(seed)
    imgs = g.random((n, 3, h, w))
    imgs[0, :, 10:30, 10:30] = 0.5  # flat patch: zero gradients, bin-0 angles
    imgs[1] = np.round(imgs[1] * 4) / 4  # quantised: many exact-boundary angles (0, 45, 90, 135 degrees)
    return imgs


def _skimage(imgs, channels, dtype, **kw):
    out = []
    for im in imgs.astype(dtype):
        hwc = im.transpose(1, 2, 0)
        if channels == "max":
            out.append(skimage_hog(hwc, channel_axis=-1, **kw))
        elif channels == "gray":
            out.append(skimage_hog(rgb2gray(hwc).astype(dtype), **kw))
        else:
            out.append(np.concatenate([skimage_hog(c, **kw) for c in im]))
    return np.stack(out)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s["block_norm"])
@pytest.mark.parametrize("channels", ["max", "gray", "each"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_skimage(setting, channels, dtype):
    imgs = _images()
    ref = _skimage(imgs, channels, dtype, **setting)
    provider = mvmr.create_extractor("hog", channels=channels, **setting)
    got = provider(torch.tensor(imgs.astype(dtype))).numpy()
    assert got.shape == ref.shape == (len(imgs), provider.output_dim(50, 45))
    assert np.abs(got - ref).max() <= 1e-6


def test_unnormalised_cells_are_mean_magnitudes():
    """block_norm="none": each cell holds the summed gradient magnitude of its bin over the cell area."""
    from mvmr_extractors.hog import hog

    img = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    img[..., :, 4:] = 1.0  # one vertical edge: gradient along columns only, angle 0 -> bin 0
    cells = hog(img, orientations=4, pixels_per_cell=4, cells_per_block=1, block_norm="none")
    # columns 3 and 4 carry a column difference of 1 on every row (only g_row is zeroed on border rows); each
    # 4x4 cell holds one of those columns: 4 pixels of magnitude 1 over an area of 16
    assert torch.allclose(cells[0, :, :, 0], torch.full((2, 2), 4 / 16, dtype=torch.float64))
    assert cells[0, :, :, 1:].abs().max() == 0


def test_bad_parameters_name_the_provider():
    with pytest.raises(mvmr.MVMRError, match="hog.*block_norm"):
        mvmr.create_extractor("hog", block_norm="L3")
    with pytest.raises(mvmr.MVMRError, match="hog.*orientation"):
        mvmr.create_extractor("hog", orientation=9)
    with pytest.raises(ValueError, match="fewer than"):
        mvmr.create_extractor("hog", pixels_per_cell=16)(torch.rand(1, 3, 32, 32))
