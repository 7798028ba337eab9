"""The feature cache: hit, miss, partial, stale and corrupt cases, and equality of the loss with and without it."""
import json

import numpy as np
import pytest
import torch

import mvmr
from mvmr.cache import CachedFeatures, describe, open_caches
from mvmr.provider_terms import ProviderTerms


@pytest.fixture
def setup(tmp_path):
    providers = {"hog": mvmr.create_extractor("hog", orientations=9, cells_per_block=2),
                 "pixels": mvmr.create_extractor("pixels"), "augmented_pixels": mvmr.create_extractor("augmented_pixels")}
    identity = {"name": "test", "split": "ssl", "length": 12}
    images = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return tmp_path / "cache", providers, identity, images


def _open(root, providers, identity):
    return open_caches(providers, identity, 12, 32, root)


def test_only_deterministic_providers_are_cached(setup):
    root, providers, identity, _ = setup
    assert set(_open(root, providers, identity)) == {"hog", "pixels"}


def test_miss_then_hit_and_loss_equality(setup):
    root, providers, identity, images = setup
    caches = _open(root, providers, identity)
    source = CachedFeatures(providers, caches)
    index = torch.tensor([3, 7, 1, 0])
    online = {n: providers[n](images[index]) for n in ("hog", "pixels")}
    first = {n: source(n, images[index], index) for n in ("hog", "pixels")}  # miss: computed and stored
    assert not caches["hog"].missing(index.numpy()).any()
    fake = torch.zeros_like(images)  # a hit must not look at the images at all
    second = {n: source(n, fake[index], index) for n in ("hog", "pixels")}
    for n in online:
        assert torch.equal(online[n], first[n]) and torch.equal(online[n], second[n])
    z_aug = torch.randn(4, 8)
    terms = ProviderTerms({"hog": 1.0, "pixels": -1.0})

    def loss(feats):
        return sum(terms({"augmented/projector": z_aug, **{f"provider/{n}": f for n, f in feats.items()}}).values())
    assert torch.equal(loss(online), loss(second))


def test_complete_cache_is_sealed_and_reused_across_runs(setup):
    root, providers, identity, images = setup
    caches = _open(root, providers, identity)
    source = CachedFeatures(providers, caches)
    for start in range(0, 12, 5):
        index = torch.arange(start, min(start + 5, 12))
        source("hog", images[index], index)
    assert caches["hog"].complete and not caches["pixels"].complete  # pixels stays partial: never asked
    reopened = _open(root, providers, identity)
    assert reopened["hog"].complete
    assert np.array_equal(reopened["hog"].read(np.arange(12)), providers["hog"](images).numpy())
    assert reopened["pixels"].missing(np.arange(12)).all()


def test_a_mixed_batch_computes_only_its_missing_rows(setup):
    """Random access (a regulariser's draws): the hits come from disk, the provider sees only the misses, and the
    batch equals the provider's output on all of it."""
    root, providers, identity, images = setup
    source = CachedFeatures(providers, _open(root, providers, identity))
    source("hog", images[:6], torch.arange(6))  # rows 0-5 cached
    seen = []
    hog = providers["hog"]
    source.providers = {**providers, "hog": lambda x: seen.append(len(x)) or hog(x)}
    index = torch.tensor([8, 2, 11, 5, 0])
    got = source("hog", images[index], index)
    assert seen == [2]  # rows 8 and 11 only
    assert torch.allclose(got, hog(images[index]), atol=1e-6)
    assert not source.caches["hog"].missing(np.array([8, 11])).any()


def test_partial_cache_continues(setup):
    root, providers, identity, images = setup
    source = CachedFeatures(providers, _open(root, providers, identity))
    source("pixels", images[:4], torch.arange(4))
    reopened = _open(root, providers, identity)["pixels"]
    assert reopened.missing(np.arange(12)).tolist() == [False] * 4 + [True] * 8


def test_stale_cache_is_rebuilt(setup):
    root, providers, identity, images = setup
    cache = _open(root, providers, identity)["hog"]
    cache.write(np.arange(12), providers["hog"](images).numpy())
    meta = json.loads((cache.folder / "meta.json").read_text())
    meta["description"]["params"] = {"orientations": 12}  # as if made with other settings
    (cache.folder / "meta.json").write_text(json.dumps(meta))
    rebuilt = _open(root, providers, identity)["hog"]
    assert not rebuilt.complete and rebuilt.missing(np.arange(12)).all()


@pytest.mark.parametrize("damage", ["flip_bytes", "truncate", "garbage_meta"])
def test_corrupt_cache_is_rebuilt(setup, damage):
    root, providers, identity, images = setup
    cache = _open(root, providers, identity)["hog"]
    cache.write(np.arange(12), providers["hog"](images).numpy())
    assert cache.complete
    folder = cache.folder
    del cache
    feats = folder / "features.npy"
    if damage == "flip_bytes":
        data = bytearray(feats.read_bytes())
        data[-10] ^= 0xFF
        feats.write_bytes(bytes(data))
    elif damage == "truncate":
        feats.write_bytes(feats.read_bytes()[:-100])
    else:
        (folder / "meta.json").write_text("{not json")
    rebuilt = _open(root, providers, identity)["hog"]
    assert not rebuilt.complete and rebuilt.missing(np.arange(12)).all()


def test_key_depends_on_provider_params_and_data(setup):
    _, providers, identity, _ = setup
    a = describe(providers["hog"], identity)
    b = describe(mvmr.create_extractor("hog", orientations=12, cells_per_block=2), identity)
    c = describe(providers["hog"], {**identity, "length": 13})
    assert len({json.dumps(d, sort_keys=True) for d in (a, b, c)}) == 3


def test_random_teacher_is_the_same_network_in_every_build():
    """Providers are built under the recipe's seed, so a `pretrained: none` teacher has one fingerprint (the cache
    stays valid)."""
    from mvmr.config import build_recipe
    from mvmr.models import Student

    recipe = build_recipe({"providers": {"timm:resnet10t": {"params": {"pretrained": "none"}}}})

    def build_providers(recipe):
        return ProviderTerms.from_recipe(recipe, Student("resnet18", projector="8")).providers
    a = build_providers(recipe)["timm:resnet10t"].fingerprint()
    torch.randn(100)  # whatever happened to the global generator in between
    assert build_providers(recipe)["timm:resnet10t"].fingerprint() == a
