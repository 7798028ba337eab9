"""Pixels and augmented-pixels providers."""
import torch

import mvmr


def test_pixels_is_the_flattened_image():
    x = torch.rand(3, 3, 8, 8)
    assert torch.equal(mvmr.create_extractor("pixels")(x), x.flatten(1))


def test_augmented_pixels_per_image_random_and_seedable():
    x = torch.rand(1, 3, 32, 32).repeat(4, 1, 1, 1)  # four copies of one image
    a = mvmr.create_extractor("augmented_pixels", seed=0)(x)
    b = mvmr.create_extractor("augmented_pixels", seed=0)(x)
    c = mvmr.create_extractor("augmented_pixels", seed=1)(x)
    assert a.shape == (4, 3 * 32 * 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(row[:50].tolist()) for row in a}) == 4  # each copy got its own parameters
    assert a.min() >= 0 and a.max() <= 1
    assert not mvmr.create_extractor("augmented_pixels").deterministic
