"""hog_official against an independent float64 NumPy reference of the official HOGLayer's definition (with linear
interpolation between the two nearest bins)."""
import math

import numpy as np
import torch

import mvmr


def reference(images: np.ndarray, nbins: int, pool: int) -> np.ndarray:
    b, c, h, w = images.shape
    out = np.zeros((b, c, nbins, h // pool, w // pool))
    sobel = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    for i in range(b):
        for ch in range(c):
            p = np.pad(images[i, ch], 1)
            gx = np.zeros((h, w))
            gy = np.zeros((h, w))
            for dy in range(3):
                for dx in range(3):
                    window = p[dy:dy + h, dx:dx + w]
                    gx += sobel[dy, dx] * window
                    gy += sobel.T[dy, dx] * window
            mag = np.hypot(gx, gy)
            pos = np.arctan2(gx, gy) / math.pi * nbins
            low = np.floor(pos)
            frac = pos - low
            hist = np.zeros((nbins, h, w))
            yy, xx = np.mgrid[:h, :w]
            np.add.at(hist, (low.astype(int) % nbins, yy, xx), mag * (1 - frac))
            np.add.at(hist, ((low.astype(int) + 1) % nbins, yy, xx), mag * frac)
            hh, ww = h // pool * pool, w // pool * pool
            out[i, ch] = hist[:, :hh, :ww].reshape(nbins, h // pool, pool, w // pool, pool).mean((2, 4))
    return out.reshape(b, -1)


def test_matches_numpy_reference_float64():
    g = np.random.default_rng(0)
    images = g.random((2, 3, 20, 20))
    images[0, :, 5:9, 5:9] = 0.5  # flat regions: zero gradient, angle 0
    hog = mvmr.create_extractor("hog_official", nbins=9, pool=4).double()
    out = hog(torch.from_numpy(images)).numpy()
    assert out.shape == (2, 3 * 9 * 5 * 5) == (2, hog.output_dim(20, 20))
    np.testing.assert_allclose(out, reference(images, 9, 4), rtol=0, atol=1e-12)


def test_official_parameters_shape_and_magnitude_conservation():
    hog = mvmr.create_extractor("hog_official")  # nbins 24, pool 8: the official recipe
    x = torch.rand(2, 3, 96, 96)
    out = hog(x)
    assert out.shape == (2, 3 * 24 * 12 * 12)
    # linear interpolation keeps each pixel's whole magnitude: the bins of a cell sum to its mean magnitude
    import torch.nn.functional as F

    kernels = hog.kernels
    g = F.conv2d(x.reshape(6, 1, 96, 96), kernels, padding=1)
    mean_mag = F.avg_pool2d(g.norm(dim=1, keepdim=True), 8).reshape(2, 3, 12, 12)
    assert torch.allclose(out.reshape(2, 3, 24, 12, 12).sum(2), mean_mag, atol=1e-4)
