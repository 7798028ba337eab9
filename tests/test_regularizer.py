"""mvmr.FeatureRegularizer: the same terms as distance_correlation by hand, frozen and never checkpointed providers,
AMP safety, the feature cache with dataset indices, the global batch under DDP, and the README's supervised loop."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import mvmr
from mvmr.losses import distance_correlation


def _data(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), torch.randn(n, 24, generator=g)


def test_terms_equal_weighted_one_minus_dcor():
    reg = mvmr.FeatureRegularizer({"pixels": 1.0, "lsd": {"weight": 0.5, "params": {"size": 3}},
                                   "hog": {"weight": 0.0, "params": {"pixels_per_cell": 4}}})
    images, z = _data()
    loss, terms = reg(images, z)
    pixels = 1 - distance_correlation(z, images.flatten(1))
    lsd = 1 - distance_correlation(z, mvmr.create_extractor("lsd", size=3)(images))
    assert torch.allclose(terms["dcor/pixels"], pixels) and torch.allclose(terms["dcor/lsd"], lsd)
    assert torch.allclose(loss, pixels + 0.5 * lsd)  # a zero weight adds nothing


def test_providers_are_frozen_and_not_checkpointed():
    reg = mvmr.FeatureRegularizer({"clip:ViT-B-16:none": 1.0, "pixels": 1.0})
    assert reg.state_dict() == {} and list(reg.parameters()) == []
    clip = reg.providers["clip:ViT-B-16:none"]
    assert not any(p.requires_grad for p in clip.parameters()) and not clip.training
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 8))
    images, _ = _data(4)
    loss, _ = reg(images, model(images))
    loss.backward()
    assert model[1].weight.grad is not None and all(p.grad is None for p in clip.parameters())


def test_amp_safe_same_loss_under_bf16_autocast():
    reg = mvmr.FeatureRegularizer({"pixels": 1.0, "lsd": 1.0}, estimator="unbiased")
    images, z = _data()
    plain, _ = reg(images, z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, _ = reg(images.bfloat16(), z.bfloat16())
    assert mixed.dtype == torch.float32
    assert torch.allclose(plain, mixed, atol=2e-2)  # the inputs were rounded to bf16; the maths ran in float32


def test_cache_with_dataset_indices(tmp_path):
    calls = []

    class Counting(mvmr.Provider):
        def output_dim(self, h, w):
            return 3

        def extract(self, images):
            calls.append(len(images))
            return images.mean((2, 3))

    reg = mvmr.FeatureRegularizer({"counting": Counting()}).enable_cache(tmp_path, "toy-set", n=32, image_size=16)
    images, z = _data(32)
    first, _ = reg(images[:16], z[:16], index=torch.arange(16))
    again, _ = reg(images[:16], z[:16], index=torch.arange(16))
    assert calls == [16] and torch.equal(first, again)  # the second call read the cache
    assert len(list(Path(tmp_path).glob("*/features.npy"))) == 1


def _worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    images, z = _data()
    z = z.clone().requires_grad_(True)
    reg = mvmr.FeatureRegularizer({"pixels": 1.0, "lsd": 0.5})
    loss, _ = reg(images[rank * 8:(rank + 1) * 8], z[rank * 8:(rank + 1) * 8], gather=True)
    loss.backward()
    torch.save((loss.detach(), z.grad), Path(out_dir) / f"{rank}.pt")
    dist.barrier()  # no process tears gloo down while the other still has collectives in flight
    dist.destroy_process_group()


def test_gather_gives_the_global_batch_loss_and_gradient(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    images, z = _data()
    z = z.clone().requires_grad_(True)
    loss, _ = mvmr.FeatureRegularizer({"pixels": 1.0, "lsd": 0.5})(images, z)
    loss.backward()
    results = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    # each process holds the gradient of its own rows, from both processes' copies of the global loss: DDP's
    # gradient average (÷ world) makes it the one-process gradient
    grad = (results[0][1] + results[1][1]) / 2
    for r_loss, _ in results:
        assert torch.allclose(r_loss, loss.detach(), atol=1e-6)
    assert torch.allclose(grad, z.grad, atol=1e-6)


def test_readme_supervised_loop():
    """The README's ten lines: a classifier trained with labels, its features kept dependent on hand-crafted ones."""
    import torchvision

    model = torchvision.models.resnet18(num_classes=10)
    backbone = torch.nn.Sequential(*list(model.children())[:-1], torch.nn.Flatten())
    reg = mvmr.FeatureRegularizer({"hog": 0.3, "lsd": 0.3})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = torch.rand(8, 3, 32, 32), torch.arange(8) % 10
    for _ in range(2):
        features = backbone(images)
        reg_loss, terms = reg(images, features)
        loss = torch.nn.functional.cross_entropy(model.fc(features), labels) + reg_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(terms) == {"dcor/hog", "dcor/lsd"} and torch.isfinite(loss)


@pytest.mark.parametrize("spec,named", [({"hog": "0.3"}, "got str '0.3'"), ({"hog": None}, "got NoneType"),
                                        ({"lsd": True}, "got bool True"), ({"pixels": [1.0, "mse"]}, "got list"),
                                        ({"pixels": {"weight": "x"}}, "weight")])
def test_a_bad_spec_in_python_is_one_line_naming_the_provider(spec, named):
    from mvmr.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        mvmr.FeatureRegularizer(spec, embedding_dim=16, image_size=16)
    message = str(err.value)
    assert "\n" not in message and f"provider '{next(iter(spec))}'" in message and named in message
