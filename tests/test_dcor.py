"""distance_correlation against the reference library `dcor`, and its behaviour on degenerate batches."""
import dcor
import numpy as np
import pytest
import torch

from mvmr.losses import distance_correlation

REFERENCES = {"biased": dcor.distance_correlation, "unbiased": dcor.u_distance_correlation_sqr}


def _pair(n=48, dx=20, dy=7, seed=0):
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, dx))
    y = np.tanh(x[:, :dy]) ** 2 + 0.5 * g.normal(size=(n, dy))
    return x, y


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_matches_dcor(estimator, offset):
    x, y = _pair()
    x = x + offset
    ref = REFERENCES[estimator](x, y)
    got64 = distance_correlation(torch.tensor(x), torch.tensor(y), estimator).item()
    got32 = distance_correlation(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32),
                                 estimator).item()
    assert abs(got64 - ref) <= 1e-10
    assert abs(got32 - ref) <= 1e-5


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_independent_high_dimensional_bias(estimator):
    """The biased estimator is inflated for independent high-dimensional data; the unbiased one is not."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 512, generator=g, dtype=torch.float64), torch.randn(256, 512, generator=g, dtype=torch.float64)
    value = distance_correlation(x, y, estimator).item()
    assert abs(value - REFERENCES[estimator](x.numpy(), y.numpy())) < 1e-10
    assert (value > 0.8) if estimator == "biased" else (abs(value) < 0.02)


def test_fp16_inputs_and_autocast_compute_in_float32():
    x, y = _pair(n=32)
    ref = dcor.distance_correlation(x.astype(np.float16).astype(np.float64), y.astype(np.float16).astype(np.float64))
    xt, yt = torch.tensor(x).half(), torch.tensor(y).half()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = distance_correlation(xt, yt)
    assert got.dtype == torch.float32
    assert abs(got.item() - ref) < 1e-5


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_collapsed_batch_is_zero_with_zero_gradient(estimator):
    x = torch.ones(8, 5, requires_grad=True)
    y = torch.randn(8, 3)
    value = distance_correlation(x, y, estimator)
    value.backward()
    assert value.item() == 0.0 == REFERENCES[estimator](x.detach().numpy().astype(float), y.numpy().astype(float))
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() == 0


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_duplicate_rows_finite_value_and_gradient(estimator):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 4, generator=g, dtype=torch.float64)
    x[1] = x[0]
    x[5] = x[4]
    x.requires_grad_(True)
    y = torch.randn(10, 6, generator=g, dtype=torch.float64)
    value = distance_correlation(x, y, estimator)
    value.backward()
    assert abs(value.item() - REFERENCES[estimator](x.detach().numpy(), y.numpy())) < 1e-10
    assert torch.isfinite(x.grad).all()


def test_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(12, 3, generator=g, dtype=torch.float64)
    for est in ("biased", "unbiased"):
        assert torch.autograd.gradcheck(lambda t: distance_correlation(t, y, est), (x,))


@pytest.mark.parametrize("estimator,n", [("biased", 2), ("unbiased", 4)])
def test_smallest_batches(estimator, n):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(n, 2, generator=g, dtype=torch.float64)
    value = distance_correlation(x, y, estimator)
    value.backward()
    assert abs(value.item() - REFERENCES[estimator](x.detach().numpy(), y.numpy())) < 1e-10
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("estimator,n", [("biased", 1), ("unbiased", 3)])
def test_too_small_batch_raises(estimator, n):
    with pytest.raises(ValueError, match="at least"):
        distance_correlation(torch.randn(n, 3), torch.randn(n, 2), estimator)


def test_mismatched_batches_and_unknown_estimator_raise():
    with pytest.raises(ValueError, match="same batch size"):
        distance_correlation(torch.randn(5, 3), torch.randn(6, 3))
    with pytest.raises(ValueError, match="unknown"):
        distance_correlation(torch.randn(5, 3), torch.randn(5, 3), "fast")


def test_images_are_flattened():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(6, 3, 4, 4, generator=g), torch.randn(6, 10, generator=g)
    assert torch.allclose(distance_correlation(x, y), distance_correlation(x.flatten(1), y))
