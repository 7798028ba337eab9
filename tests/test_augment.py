"""The augmented view in two stages: the batched photometric path (data.augment_on: device) against the per-image
torchvision path with the same parameters, the parameters' marginal distributions, and the device path through
Views and Batch against the worker path."""
import itertools

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from scipy import stats
from torch.utils.data import default_collate

from mvmr.config import DataConfig
from mvmr.data import AugmentSpec, Batch, PaperAugment, Photometric, Views, augment_spec, build_dataset, collate
from mvmr.data.photometric import JITTER, gaussian_blur, photometric_batch

STRONG = AugmentSpec(jitter_p=1.0, gray_p=0.3, solarize_p=0.3)  # every op drawn often
ALL_GRAY = AugmentSpec(gray_p=1.0, blur_p=0.5, solarize_p=0.5)  # an op on every image, then ops on some


def _drawn(aug: PaperAugment, n: int, seed: int = 0) -> list[Photometric]:
    g = torch.Generator().manual_seed(seed)
    return [aug.sample(aug.size, aug.size, g)[1] for _ in range(n)]


def _awkward_images(n: int, size: int) -> torch.Tensor:
    """Random images with the cases HSV code gets wrong: grey pixels, ties for the maximum, black and white."""
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))
    x[:, :, 0] = 0.5
    x[:, 1, 1] = x[:, 0, 1]
    x[:, 2, 2] = x[:, 1, 2]
    x[:, :, 3] = 0.0
    x[:, :, 4] = 1.0
    return x


@pytest.mark.parametrize("size,spec", [(32, STRONG), (96, STRONG), (64, AugmentSpec()), (32, ALL_GRAY),
                                       (32, AugmentSpec(gray_p=1.0, blur_p=0.0, jitter_p=0.0))])
@pytest.mark.parametrize("chunk", [None, 5])
def test_batched_equals_per_image_path(size, spec, chunk):
    """Same parameters, same images: the device path equals torchvision's per-image ops to float tolerance
    (whole batch and in chunks)."""
    aug = PaperAugment(size, spec)
    params = _drawn(aug, 24)
    x = _awkward_images(24, size)
    expected = torch.stack([aug.photometric(img, p) for img, p in zip(x, params)])
    got = photometric_batch(x.clone(), default_collate(params), chunk)
    assert (got - expected).abs().max().item() < 1e-5
    assert not torch.equal(got, x)  # the ops did something


@pytest.mark.parametrize("op", range(4))
def test_each_jitter_op_alone_matches_torchvision(op):
    """One jitter op at a time, each image with its own factor (the grey, tied, black and white pixels included)."""
    n, size = 8, 16
    x = _awkward_images(n, size)
    factors = torch.linspace(-0.45, 0.45, n) if JITTER[op] == "hue" else torch.linspace(0.1, 1.9, n)
    tv = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)[op]
    expected = torch.stack([tv(img, float(f)) for img, f in zip(x, factors)])
    active = torch.zeros(n, 4, dtype=torch.bool)
    active[:, op] = True
    factor = torch.tensor([1.0, 1.0, 1.0, 0.0]).repeat(n, 1).double()
    factor[:, op] = factors.double()
    p = Photometric(torch.zeros(n, dtype=torch.bool), torch.arange(4).repeat(n, 1), factor, active,
                    torch.zeros(n, dtype=torch.bool), torch.zeros(n).double(), torch.zeros(n, dtype=torch.bool))
    assert (photometric_batch(x, p) - expected).abs().max().item() < 1e-5


def test_separable_blur_is_torchvisions_blur():
    x = torch.rand(4, 3, 40, 40)
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0]).double()
    expected = torch.stack([TF.gaussian_blur(img, [9, 9], [float(s)] * 2) for img, s in zip(x, sigma)])
    assert (gaussian_blur(x, sigma, 9) - expected).abs().max().item() < 1e-6
    assert torch.equal(gaussian_blur(x, torch.zeros(4).double(), 9), x)  # σ = 0: no blur, exactly


def test_parameters_have_the_specified_marginals():
    """Over 4,000 draws of the default spec: coin rates (within 4 standard errors), uniform factor and σ ranges
    (Kolmogorov-Smirnov against the specified uniform), every jitter order equally likely (χ²)."""
    spec = AugmentSpec(solarize_p=0.2)
    params = default_collate(_drawn(PaperAugment(32, spec), 4000))
    n = len(params.flip)

    def rate_ok(mask, p):
        return abs(mask.double().mean().item() - p) < 4 * (p * (1 - p) / len(mask)) ** 0.5

    jittered = params.active[:, 0]
    assert rate_ok(params.flip, spec.flip_p) and rate_ok(jittered, spec.jitter_p)
    assert rate_ok(params.gray, spec.gray_p) and rate_ok(params.solarize, spec.solarize_p)
    assert bool((params.sigma >= spec.blur_sigma[0]).all())  # blur_p = 1: always blurred
    sigma_range = (spec.blur_sigma[0], spec.blur_sigma[1] - spec.blur_sigma[0])
    assert stats.kstest(params.sigma.numpy(), "uniform", args=sigma_range).pvalue > 1e-3
    for i, strength in enumerate(spec.jitter):
        lo, hi = (-strength, strength) if JITTER[i] == "hue" else (max(0.0, 1 - strength), 1 + strength)
        values = params.factor[jittered, i].numpy()
        assert stats.kstest(values, "uniform", args=(lo, hi - lo)).pvalue > 1e-3, JITTER[i]
    orders = [tuple(o) for o in params.order[jittered].tolist()]
    counts = [orders.count(perm) for perm in itertools.permutations(range(4))]
    assert stats.chisquare(counts).pvalue > 1e-3
    assert params.order[~jittered].tolist() == [[0, 1, 2, 3]] * int((~jittered).sum())
    assert n == 4000


def test_call_is_crop_then_photometric_with_the_same_draws():
    aug = PaperAugment(32, STRONG)
    img = torch.rand(3, 40, 48)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    box, p = aug.sample(40, 48, g2)
    assert torch.equal(aug(img, g1), aug.photometric(aug.crop(img, box), p))


@pytest.mark.parametrize("crop", ["resized", "pad"])
def test_device_path_through_views_and_batch(crop):
    """Views(augment_on=device) hands out uint8 crops and parameters; Batch.to applies them. The result equals the
    worker path for the same (seed, epoch, index) up to the uint8 rounding of the crop, and the original view is
    the same tensor."""
    cfg = DataConfig(name="digits", image_size=24, augment={"crop": crop, "pad": 2})
    base = build_dataset(cfg, "ssl")
    kwargs = dict(seed=3, specs=[(24, augment_spec(cfg)), (16, augment_spec(cfg))])
    workers, device = Views(base, 24, augment_spec(cfg), **kwargs), Views(base, 24, augment_spec(cfg), augment_on="device", **kwargs)
    items = [device[i] for i in range(16)]
    assert items[0][1][0].dtype == torch.uint8 and isinstance(items[0][2][0], Photometric)
    raw = collate(items)
    assert raw.params is not None and len(raw.slice(0, 4).params[1].flip) == 4
    got = raw.to(torch.device("cpu"))
    expected = collate([workers[i] for i in range(16)])
    assert got.params is None and [v.shape for v in got.views] == [v.shape for v in expected.views]
    assert torch.equal(got.original, expected.original)
    for a, b in zip(got.views, expected.views):
        assert a.dtype == torch.float32
        diff = (a - b).abs()
        assert diff.max().item() < 0.05 and diff.mean().item() < 2e-3  # uint8 rounding of the crop, then the ops
    again = collate([device[i] for i in range(16)]).to(torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(again.views, got.views))  # reproducible per (seed, epoch, index)


def test_views_refuses_an_unknown_place():
    with pytest.raises(ValueError, match="augment_on"):
        Views(build_dataset(DataConfig(), "ssl"), 32, AugmentSpec(), augment_on="gpu")


def test_batch_pins_its_tensors(monkeypatch):
    """DataLoader(pin_memory=True) pins a Batch through its pin_memory method (without one, it silently pins
    nothing); Tensor.pin_memory is stubbed: this machine has no CUDA."""
    from torch.utils.data._utils.pin_memory import pin_memory

    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: pinned.append(self.shape) or self.clone())
    batch = Batch(torch.rand(2, 3, 4, 4), [torch.rand(2, 3, 4, 4)], torch.zeros(2), torch.arange(2))
    out = pin_memory(batch)
    assert isinstance(out, Batch) and len(pinned) == 3 and torch.equal(out.index, batch.index)


def test_marginal_pixel_statistics_agree_between_paths():
    """On real images (digits) the two paths' augmented views have the same per-channel mean and spread."""
    cfg = DataConfig(name="digits", image_size=32)
    base = build_dataset(cfg, "ssl")
    views = {on: Views(base, 32, augment_spec(cfg), seed=0, augment_on=on) for on in ("workers", "device")}
    got = {on: collate([v[i] for i in range(256)]).to(torch.device("cpu")).views[0] for on, v in views.items()}
    for stat in (lambda t: t.mean(dim=(0, 2, 3)), lambda t: t.std(dim=(0, 2, 3))):
        assert np.allclose(stat(got["workers"]).numpy(), stat(got["device"]).numpy(), atol=2e-3)
