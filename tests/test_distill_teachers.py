"""Distillation beyond one summary vector: cosine + smooth-L1 through RADIO's adaptor, teacher standardisation,
several teachers (one term each, `mvmr distill --teacher A --teacher B`), and dense (`representation: spatial`)
terms, each against a hand-written reference or an invariant."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from typer.testing import CliRunner

import mvmr
from mvmr.cli import app
from mvmr.distill import with_teachers
from mvmr.errors import ConfigError
from mvmr.losses.distill import CosineSmoothL1, predictor
from mvmr.models import Student
from mvmr.provider_terms import ProviderTerms, Standardize, StudentRows
from mvmr.providers import Provider
from mvmr.standardize import hadamard
from test_distill import RECIPES, distill_args  # the two-step CLI run of test_distill.py


class _Grid(Provider):
    """Dense features on a 2×2 grid: the images average-pooled, RGB and their mean (4 channels)."""

    def output_dim(self, height: int, width: int) -> int:
        return 16

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        return self.spatial(images).flatten(1)

    def spatial(self, images: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(images.float(), 2)
        return torch.cat([x, x.mean(1, keepdim=True)], 1)


mvmr.register_extractor("test_grid", _Grid)


def _pair(n=10, ds=6, dt=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, ds, generator=g), torch.randn(n, dt, generator=g)


# the objective ------------------------------------------------------------------------------------------------
def test_cos_smoothl1_matches_a_numpy_reference_and_uses_radios_adaptor():
    s, t = _pair()
    obj = CosineSmoothL1(6, 4, hidden=8, cosine=0.7, smooth_l1=2.0, beta=0.5)
    kinds = [type(m) for m in obj.predictor]
    assert kinds == [nn.Linear, nn.LayerNorm, nn.GELU, nn.Linear]
    p = obj.predictor(s).detach().numpy().astype(np.float64)
    T = t.numpy().astype(np.float64)
    cos = (p * T).sum(1) / np.linalg.norm(p, axis=1) / np.linalg.norm(T, axis=1)
    d = np.abs(p - T)
    huber = np.where(d < 0.5, 0.5 * d ** 2 / 0.5, d - 0.25).mean()
    assert abs(obj(s, t).item() - (0.7 * (1 - cos.mean()) + 2.0 * huber)) < 1e-5


def test_cos_smoothl1_is_zero_at_a_perfect_adaptor_and_refuses_bad_weights():
    s, _ = _pair(ds=5, dt=5)
    obj = CosineSmoothL1(5, 5, hidden=0)
    with torch.no_grad():
        obj.predictor.weight.copy_(torch.eye(5)), obj.predictor.bias.zero_()
    assert obj(s, s).item() < 1e-6
    for bad in ({"cosine": 0.0, "smooth_l1": 0.0}, {"cosine": -1.0}, {"beta": 0.0}):
        with pytest.raises(ValueError):
            CosineSmoothL1(5, 5, **bad)
    with pytest.raises(ValueError, match="adaptor must be one of bn, radio"):
        predictor(5, 5, 8, "mlp")


def test_identity_adaptor_ties_the_features_themselves_and_needs_equal_widths():
    """adaptor: identity has no parameters: the loss is the objective on (s, t) as given, 0 at s = t and > 0 off."""
    s, t = _pair(ds=5, dt=5)
    obj = CosineSmoothL1(5, 5, adaptor="identity")
    assert list(obj.parameters()) == []
    assert obj(s, s).item() < 1e-6
    cos = F.cosine_similarity(s, t, dim=1).mean()
    assert abs(obj(s, t).item() - ((1 - cos) + F.smooth_l1_loss(s, t)).item()) < 1e-6
    with pytest.raises(ValueError, match="adaptor 'identity' needs the student's width to equal the teacher's"):
        CosineSmoothL1(6, 5, adaptor="identity")


# standardisation ----------------------------------------------------------------------------------------------
def test_layernorm_standardisation_is_a_per_row_z_score():
    t = torch.randn(7, 9) * 5 + 3
    out = Standardize("layernorm", 9)(t)
    ref = (t - t.mean(1, keepdim=True)) / t.var(1, unbiased=False, keepdim=True).add(1e-6).sqrt()
    assert torch.allclose(out, ref, atol=1e-5)


def test_dimension_standardisation_is_the_running_z_score_of_all_rows_seen_and_is_checkpointed():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=g) * 3 + 1, torch.randn(5, 4, generator=g) * 3 + 1
    std = Standardize("dimension", 4).train()
    std(a)
    out = std(b)
    seen = torch.cat([a, b]).double()
    ref = (b.double() - seen.mean(0)) / seen.var(0, unbiased=False).add(1e-6).sqrt()
    assert torch.allclose(out.double(), ref, atol=1e-5)
    restored = Standardize("dimension", 4)
    restored.load_state_dict(std.state_dict())
    restored.eval()
    assert torch.allclose(restored(b), out) and restored.moments[0, 0] == 11  # eval: statistics stay as they are
    first = Standardize("dimension", 4).train()(a)  # the first batch is standardised by its own statistics
    assert torch.allclose(first.mean(0), torch.zeros(4), atol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 12, 20, 40, 512, 1280])
def test_hadamard_is_orthonormal_with_equal_magnitude_entries(n):
    h = hadamard(n)
    assert torch.allclose(h @ h.T, torch.eye(n, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(h.abs(), torch.full_like(h, n ** -0.5))  # spreads any one axis's variance evenly


def test_hadamard_of_a_width_it_cannot_build_is_one_line_naming_the_fix():
    with pytest.raises(ConfigError, match="gives 10; use standardize: dimension"):
        hadamard(10)


def test_phis_gives_every_dimension_unit_variance_keeps_geometry_and_is_checkpointed():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(20, 20, generator=g) * torch.logspace(-1, 1, 20)  # very unequal variances
    x = (torch.randn(3000, 20, generator=g) @ mix + 5).double()
    std = Standardize("phis", 20).train()
    out = std(x.float()).double()
    assert torch.allclose(out.mean(0), torch.zeros(20, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(out.var(0, unbiased=False), torch.ones(20, dtype=torch.float64), atol=1e-3)
    centred = x - x.mean(0)  # a rotation and one scale: pairwise distances keep their ratios
    ratio = torch.cdist(out[:50], out[:50]) / torch.cdist(centred[:50], centred[:50]).clamp_min(1e-12)
    off_diagonal = ratio[~torch.eye(50, dtype=torch.bool)]
    assert torch.allclose(off_diagonal, off_diagonal.mean().expand_as(off_diagonal), rtol=1e-3)
    assert torch.isclose(off_diagonal.mean() ** 2, 20 / centred.pow(2).sum(1).mean(), rtol=1e-3)
    restored = Standardize("phis", 20)
    restored.load_state_dict(std.state_dict())
    restored.eval()
    assert torch.allclose(restored(x[:7].float()), std.eval()(x[:7].float()))


def test_phis_rederives_its_rotation_only_when_the_rows_seen_double():
    std = Standardize("phis", 4).train()
    derived = []
    for _ in range(9):
        std(torch.randn(10, 4))
        derived.append(int(std.derived_at))
    assert derived == [10, 20, 20, 40, 40, 40, 40, 80, 80]


def test_phis_on_a_provider_of_an_unsupported_width_names_the_provider():
    with pytest.raises(ConfigError, match="providers.pixels: standardize: phis .* gives 300; use standardize"):
        ProviderTerms({"pixels": {"objective": "cos_smoothl1", "standardize": "phis"}}, {"projector": 8}, 10)
    terms = ProviderTerms({"pixels": {"objective": "cos_smoothl1", "standardize": "phis"}}, {"projector": 8}, 8)
    assert terms.standardizers[0].hadamard.shape == (192, 192)  # 3 x 8 x 8 = 12 * 16


# several teachers ---------------------------------------------------------------------------------------------
def test_weight_files_by_key_leave_the_other_teachers_their_own_weights(tmp_path):
    providers = {"efficientnet-lite0": {"weight": 1.0, "objective": "cos_smoothl1", "params": {"size": 128}}}
    out = with_teachers(providers, ["efficientnet-lite0", "torchvision:resnet18"],
                        [f"torchvision:resnet18={tmp_path / 'e.pt'}"])
    assert "weights" not in out["efficientnet-lite0"]["params"]  # its weights ship in its package
    assert out["torchvision:resnet18"]["params"]["weights"] == str((tmp_path / "e.pt").resolve())
    with pytest.raises(ConfigError, match="or KEY=FILE for some of them \\(keys: efficientnet-lite0, torch"):
        with_teachers(providers, ["efficientnet-lite0", "torchvision:resnet18"], [f"resnet18={tmp_path / 'e.pt'}"])


def test_with_teachers_one_term_each_with_the_template_and_per_teacher_weight_files(tmp_path):
    providers = {"pixels": {"weight": 0.5},
                 "clip-vit-b16": {"weight": 2.0, "objective": "cos_smoothl1", "standardize": "layernorm",
                                  "view": "augmented", "params": {"pretrained": "none"}}}
    out = with_teachers(providers, ["timm:resnet10t", "torchvision:resnet18", "torchvision:resnet18"],
                        [tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"])
    assert list(out) == ["pixels", "timm:resnet10t", "torchvision:resnet18", "torchvision:resnet18#2"]
    second = out["torchvision:resnet18#2"]
    assert second["provider"] == "torchvision:resnet18" and second["params"]["weights"].endswith("c.pt")
    assert all(out[k]["objective"] == "cos_smoothl1" and out[k]["standardize"] == "layernorm" for k in list(out)[1:])
    assert with_teachers(providers) == providers  # None keeps the recipe's teachers
    with pytest.raises(ConfigError, match="given 1 time"):
        with_teachers(providers, ["timm:resnet10t", "clip-vit-b16"], [tmp_path / "a.pt"])


def test_distill_two_teachers_of_one_architecture_from_two_files(tmp_path):
    """--teacher repeated: one term (own adaptor, standardisation) per teacher; the same architecture twice is
    keyed NAME#2 and reads its own weight file (the two terms differ)."""
    import torchvision

    for i in range(2):
        torch.manual_seed(i)
        torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / f"t{i}.pt")
    args = distill_args(tmp_path, "--teacher", "torchvision:resnet18", "--teacher-weights", str(tmp_path / "t0.pt"),
                 "--teacher", "torchvision:resnet18", "--teacher-weights", str(tmp_path / "t1.pt"),
                 "--objective", "cos_smoothl1", "cifar10_distill")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    last = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "loss" in r][-1]
    a, b = last["cos_smoothl1/torchvision:resnet18"], last["cos_smoothl1/torchvision:resnet18#2"]
    assert np.isfinite(a) and np.isfinite(b) and a != b
    recipe = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert recipe["providers"]["torchvision:resnet18#2"]["provider"] == "torchvision:resnet18"


def test_distill_rejects_a_weight_file_count_that_does_not_match(tmp_path):
    result = CliRunner().invoke(app, distill_args(tmp_path, "--teacher", "timm:resnet10t", "--teacher", "clip-vit-b16",
                                           "--teacher-weights", str(tmp_path / "a.pt")))
    assert result.exit_code != 0 and "one per teacher" in str(result.exception) + result.output
    assert not (tmp_path / "run").exists()


# dense features -----------------------------------------------------------------------------------------------
def _spatial_terms(spec, size, student_dim=512):
    return ProviderTerms({"t": {"objective": "cos_smoothl1", "representation": "spatial", "view": "augmented",
                                "objective_params": {"hidden": 16}, **spec}},
                         {"projector": 32, "backbone": student_dim, "spatial": student_dim}, size, seed=0)


def test_spatial_shapes_for_a_cnn_and_a_vit_teacher():
    cnn = _spatial_terms({"provider": "torchvision:resnet18",
                          "params": {"pretrained": "none", "size": 64, "crop_pct": 1.0}}, 64)
    x = torch.rand(2, 3, 64, 64)
    assert tuple(cnn.features({"augmented": x})["provider/t"].shape) == (2, 512, 2, 2)  # layer4 of a 64-px ResNet
    assert cnn.heads[0].predictor[0].in_features == 512 and cnn.heads[0].predictor[-1].out_features == 512
    vit = _spatial_terms({"provider": "timm:vit_tiny_patch16_224", "params": {"pretrained": "none"}}, 64)
    feats = vit.features({"augmented": x})["provider/t"]
    assert tuple(feats.shape) == (2, 192, 14, 14)  # 196 patch tokens (class token dropped) at 224 px, on a grid
    clip = _spatial_terms({"provider": "clip-vit-b16", "params": {"pretrained": "none"}}, 64)
    assert tuple(clip.features({"augmented": x})["provider/t"].shape) == (2, 768, 14, 14)  # open_clip's patch tokens
    student = Student("resnet18", projector="32", zero_init_residual=False)
    rows = StudentRows(student, {"augmented": x}).rows(vit.student_keys())
    assert tuple(rows["augmented/spatial"].shape) == (2, 512, 2, 2)
    assert torch.isfinite(vit({**rows, "provider/t": feats})["cos_smoothl1/t"])


def test_spatial_tokens_reach_their_grid_in_order():
    """Patch token k of a ViT lands at grid row k // side, column k % side."""
    from mvmr.models import tokens_to_grid

    tokens = torch.arange(2 * 9 * 3, dtype=torch.float32).view(2, 9, 3)
    grid = tokens_to_grid(tokens)
    assert grid.shape == (2, 3, 3, 3) and torch.equal(grid[1, :, 2, 0], tokens[1, 6])


def test_spatial_loss_against_a_hand_written_per_location_reference():
    """Equal grids: the term is the objective's formula averaged over every (image, location), with the adaptor
    applied to each location's vector on its own; a 1×1 student map on a 2×2 teacher grid is broadcast."""
    terms = ProviderTerms({"t": {"provider": "test_grid", "objective": "cos_smoothl1", "representation": "spatial",
                                 "view": "augmented", "objective_params": {"hidden": 8}}}, {"spatial": 6}, 8, seed=0)
    assert terms.heads[0].predictor[-1].out_features == 4  # the provider's channels, from its map at 8 px
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 6, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    got = terms({"augmented/spatial": s, "provider/t": t})["cos_smoothl1/t"]
    head = terms.heads[0]
    cos, huber = [], []
    for b in range(3):
        for i in range(2):
            for j in range(2):
                p = head.predictor(s[b, :, i, j].unsqueeze(0))[0]
                cos.append(F.cosine_similarity(p, t[b, :, i, j], dim=0))
                d = (p - t[b, :, i, j]).abs()
                huber.append(torch.where(d < 1, 0.5 * d ** 2, d - 0.5).mean())
    ref = (1 - torch.stack(cos).mean()) + torch.stack(huber).mean()
    assert torch.allclose(got, ref, atol=1e-5)
    one = s[:, :, :1, :1]
    broadcast = terms({"augmented/spatial": one, "provider/t": t})["cos_smoothl1/t"]
    assert torch.allclose(broadcast, terms({"augmented/spatial": one.expand(-1, -1, 2, 2), "provider/t": t})[
        "cos_smoothl1/t"], atol=1e-6)


def test_spatial_refuses_a_batch_objective_and_a_provider_without_a_map():
    with pytest.raises(ConfigError, match="representation: spatial .* objective 'dcor'.*cos_smoothl1"):
        ProviderTerms({"t": {"provider": "torchvision:resnet18", "representation": "spatial",
                             "params": {"pretrained": "none", "size": 64}}}, {"spatial": 512}, 64, seed=0)
    with pytest.raises(ConfigError, match="provider 'pixels' has no spatial features"):
        _spatial_terms({"provider": "pixels"}, 32)


def test_backbone_rows_pooled_from_the_map_equal_the_student_embedding():
    """A term on the map and one on the pooled features share one forward; the pooled row is the ResNet's own."""
    student = Student("resnet18", projector="32", zero_init_residual=False).eval()
    x = torch.rand(2, 3, 64, 64)
    rows = StudentRows(student, {"augmented": x}).rows({"augmented/spatial", "augmented/backbone"})
    assert torch.allclose(rows["augmented/backbone"], student.embed(x), atol=1e-5)


def test_the_multi_teacher_recipe_keeps_its_teachers_and_takes_one_weight_file_each(tmp_path):
    """`mvmr distill cifar10_distill_multi --teacher-weights a --teacher-weights b`: no --teacher keeps the recipe's
    two teacher entries (a kd term and head each, on the class logits), the files in the recipe's order."""
    import torchvision

    for i in range(2):
        torch.manual_seed(i)
        torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / f"t{i}.pt")
    result = CliRunner().invoke(app, distill_args(tmp_path, "cifar10_distill_multi", "--teacher-weights",
                                           str(tmp_path / "t0.pt"), "--teacher-weights", str(tmp_path / "t1.pt")))
    assert result.exit_code == 0, result.output + repr(result.exception)
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["providers"]
    assert [p["params"]["weights"][-5:] for p in saved.values()] == ["t0.pt", "t1.pt"]
    assert all(p["objective"] == "kd" and p["params"]["output"] == "logits" for p in saved.values())
    last = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "loss" in r][-1]
    assert {"kd/torchvision:resnet18", "kd/torchvision:resnet18#2"} <= set(last)


def test_the_foreign_plus_in_domain_recipe_takes_the_in_domain_file_by_key(tmp_path):
    """The documented path: `mvmr distill cifar10_distill_multi_lite --teacher efficientnet-lite0 --teacher
    torchvision:resnet18 --teacher-weights torchvision:resnet18=FILE`: Lite0 keeps its packaged ImageNet weights,
    the in-domain ResNet-18 reads the file at 32 px with CIFAR statistics, one cos + smooth-L1 term each."""
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "e.pt")
    result = CliRunner().invoke(app, distill_args(
        tmp_path, "cifar10_distill_multi_lite", "--teacher", "efficientnet-lite0", "--teacher",
        "torchvision:resnet18", "--teacher-weights", f"torchvision:resnet18={tmp_path / 'e.pt'}",
        "--set", "providers.efficientnet-lite0.params.size=64"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["providers"]
    assert "weights" not in saved["efficientnet-lite0"]["params"]
    assert saved["torchvision:resnet18"]["params"]["weights"] == str(tmp_path / "e.pt")
    assert saved["torchvision:resnet18"]["params"]["size"] == 32
    last = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "loss" in r][-1]
    assert {"cos_smoothl1/efficientnet-lite0", "cos_smoothl1/torchvision:resnet18"} <= set(last)


# function matching: mixup, the teacher on the student's mixed image -----------------------------------------------
def test_mix_batch_is_one_permutation_and_lambda_for_every_view():
    from mvmr.data import Batch, mix_batch

    g = torch.Generator().manual_seed(0)
    original, view = torch.rand(6, 3, 4, 4, generator=g), torch.rand(6, 3, 4, 4, generator=g)
    batch = Batch(original, [view, original.clone()], torch.arange(6), torch.arange(6))
    mixed = mix_batch(batch, 0.4, seed=(3, 7, 0))
    rng = np.random.default_rng((3, 7, 0))  # the documented draw: a permutation, then λ_i ~ Beta(α, α)
    perm, lam = rng.permutation(6), rng.beta(0.4, 0.4, 6)
    for x, out in [(original, mixed.original), (view, mixed.views[0])]:
        ref = lam[:, None, None, None] * x.double().numpy() + (1 - lam[:, None, None, None]) * x.double().numpy()[perm]
        assert np.allclose(out.numpy(), ref, atol=1e-6)
    assert torch.equal(mixed.views[1], mixed.original)  # the same mix for every view of an image
    assert mixed.index is None and torch.equal(mixed.label, batch.label)  # no cached feature for a mixed image
    assert torch.equal(mix_batch(batch, 0.4, seed=(3, 7, 0)).original, mixed.original)  # resume draws the same
    assert not torch.equal(mix_batch(batch, 0.4, seed=(3, 8, 0)).original, mixed.original)


class _Seen(Provider):
    """Records the images it is given (the teacher's input)."""
    seen: list = []

    def output_dim(self, height: int, width: int) -> int:
        return 3

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        _Seen.seen.append(images.detach().clone())
        return images.float().mean((2, 3))


mvmr.register_extractor("test_seen", _Seen)


def test_mixup_feeds_the_teacher_the_students_mixed_image_and_reads_no_cache(tmp_path, monkeypatch):
    """data.mixup > 0: the provider on the augmented view gets exactly the images the student embeds (mixed:
    none is a dataset view), and no feature cache is opened."""
    from mvmr.models import Student as S

    embedded = []
    real = S.embed
    monkeypatch.setattr(S, "embed", lambda self, x: (embedded.append(x.detach().clone()), real(self, x))[1])
    seen = {}
    for mixup in (0.0, 1.0):
        _Seen.seen.clear(), embedded.clear()
        args = distill_args(tmp_path / str(mixup), "--teacher", "timm:resnet10t", "--set", "providers.timm:resnet10t.weight=0",
                     "--set", "providers.test_seen.weight=1", "--set", "providers.test_seen.view=augmented",
                     "--set", "providers.test_seen.objective=cosine", "--set", f"data.mixup={mixup}",
                     "--set", "providers.timm:resnet10t.params.pretrained=none", "cifar10_distill")
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output + repr(result.exception)
        assert len(_Seen.seen) == 2 and all(any(torch.equal(s, e) for e in embedded) for s in _Seen.seen)
        seen[mixup] = _Seen.seen[0]
    assert not torch.allclose(seen[0.0], seen[1.0])  # the same augmented batch, mixed
    assert not (tmp_path / "1.0" / "cache").exists() or not any((tmp_path / "1.0" / "cache").iterdir())


# multi-crop for the student: several student views against one teacher view ------------------------------------------
def test_local_crops_average_the_term_over_the_augmented_view_and_each_crop():
    terms = ProviderTerms({"test_grid": {"objective": "cos_smoothl1", "view": "augmented", "representation": "backbone",
                                         "standardize": "layernorm"}}, {"backbone": 6}, 8, local_views=["local0", "local1"])
    assert terms.student_keys() == {"augmented/backbone", "local0/backbone", "local1/backbone"}
    g = torch.Generator().manual_seed(0)
    rows = {k: torch.randn(5, 6, generator=g) for k in terms.student_keys()}
    rows["provider/test_grid"] = torch.randn(5, 16, generator=g)
    head = terms.heads[0]
    t = F.layer_norm(rows["provider/test_grid"], (16,))
    ref = sum(head(rows[f"{v}/backbone"], t) for v in ("augmented", "local0", "local1")) / 3
    assert torch.allclose(terms(rows)["cos_smoothl1/test_grid"], ref)
    original = ProviderTerms({"test_grid": {"view": "original", "representation": "backbone"}}, {"backbone": 6}, 8,
                             local_views=["local0"])
    assert original.student_keys() == {"original/backbone"}  # crops join terms on the augmented view only
    with pytest.raises(ConfigError, match="local_crops"):
        ProviderTerms({"test_grid": {"objective": "seed", "view": "augmented", "representation": "backbone"}},
                      {"backbone": 6}, 8, local_views=["local0"])


def test_distill_with_local_crops_trains_on_small_crops(tmp_path, monkeypatch):
    from mvmr.models import Student as S

    sizes = []
    real = S.embed
    monkeypatch.setattr(S, "embed", lambda self, x: (sizes.append(tuple(x.shape[-2:])), real(self, x))[1])
    result = CliRunner().invoke(app, distill_args(tmp_path, "--teacher", "timm:resnet10t", "--set",
                                           "providers.timm:resnet10t.params.pretrained=none", "--set",
                                           "loss.local_crops=2", "--set", "loss.local_size=16", "cifar10_distill"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert sizes.count((32, 32)) == 2 and sizes.count((16, 16)) == 4  # per step: the view and two crops
    last = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "loss" in r][-1]
    assert [k for k in last if k.endswith("/timm:resnet10t")] and all(np.isfinite(v) for v in last.values())


def test_a_teachers_summary_and_spatial_terms_share_one_network():
    """Two entries that build the same provider with the same params hold one instance (one network in memory, the
    same random weights); other params build another."""
    params = {"pretrained": "none", "size": 32, "crop_pct": 1.0}
    terms = ProviderTerms({"t": {"provider": "torchvision:resnet18", "params": params, "representation": "backbone"},
                           "t_dense": {"provider": "torchvision:resnet18", "params": params, "objective": "cos_smoothl1",
                                       "representation": "spatial", "view": "augmented"},
                           "t64": {"provider": "torchvision:resnet18", "params": {**params, "size": 64}}},
                          {"projector": 32, "backbone": 512, "spatial": 512}, 32, seed=0)
    assert terms.providers["t"] is terms.providers["t_dense"]
    assert terms.providers["t64"] is not terms.providers["t"]


def test_a_summary_and_a_dense_term_on_one_view_run_the_teacher_once():
    """A ResNet teacher's summary is its map's average pool: with both terms on one view the step makes one teacher
    forward and pools its map, equal to the teacher's own features; a teacher whose summary is not its pooled map
    (here: another view) still runs its own forward."""
    params = {"pretrained": "none", "size": 32, "crop_pct": 1.0}
    spec = lambda representation, view="augmented": {"provider": "torchvision:resnet18", "params": params,  # noqa: E731
                                                     "objective": "cos_smoothl1", "representation": representation,
                                                     "view": view}
    torch.manual_seed(0)
    terms = ProviderTerms({"t": spec("backbone"), "t_dense": spec("spatial"), "t_original": spec("backbone", "original")},
                          {"projector": 32, "backbone": 512, "spatial": 512}, 32, seed=0)
    teacher = terms.providers["t"]
    assert teacher.summary_pools_map
    calls = []
    teacher.model.conv1.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    images = {"augmented": torch.rand(3, 3, 32, 32), "original": torch.rand(3, 3, 32, 32)}
    rows = terms.features(images)
    assert len(calls) == 2  # one forward for the augmented view's two terms, one for the original view
    assert torch.allclose(rows["provider/t"], teacher(images["augmented"]), atol=1e-5)
    assert torch.allclose(rows["provider/t_dense"].mean((2, 3)), rows["provider/t"])
    assert torch.allclose(rows["provider/t_original"], teacher(images["original"]), atol=1e-5)


# an ensemble of teachers --------------------------------------------------------------------------------------
def _classifier(tmp_path, seed: int):
    """A random-init 10-class torchvision ResNet-18 saved to a file: (path, the model)."""
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=10).eval()
    torch.save(model.state_dict(), tmp_path / f"c{seed}.pt")
    return tmp_path / f"c{seed}.pt", model


def _member(path, output="logits"):
    return {"teacher": "torchvision:resnet18",
            "params": {"weights": str(path), "size": 32, "crop_pct": 1.0, "mean": [0.5] * 3, "std": [0.25] * 3,
                       "output": output}}


def test_ensemble_teacher_is_the_mean_of_its_members_logits(tmp_path):
    (p0, m0), (p1, m1) = _classifier(tmp_path, 0), _classifier(tmp_path, 1)
    ensemble = mvmr.create_teacher("ensemble", members=[_member(p0), _member(p1)])
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected = (m0((x - 0.5) / 0.25) + m1((x - 0.5) / 0.25)) / 2  # the networks themselves, by hand
    assert ensemble.output_dim(32, 32) == 10
    assert torch.allclose(ensemble(x), expected, atol=1e-5)
    other = mvmr.create_teacher("ensemble", members=[_member(p0), _member(p0)])
    assert other.fingerprint() != ensemble.fingerprint()  # a member's weights are part of the cache key
    assert mvmr.create_teacher("ensemble", members=[_member(p0), _member(p1)]).fingerprint() == ensemble.fingerprint()


def test_ensemble_teacher_refuses_one_member_a_malformed_one_and_unequal_widths(tmp_path):
    from mvmr.errors import ProviderParamError

    p0, _ = _classifier(tmp_path, 0)
    with pytest.raises(ProviderParamError, match="two or more"):
        mvmr.create_teacher("ensemble", members=[_member(p0)])
    with pytest.raises(ProviderParamError, match=r"members\[1\]"):
        mvmr.create_teacher("ensemble", members=[_member(p0), {"name": "torchvision:resnet18"}])
    mixed = mvmr.create_teacher("ensemble", members=[_member(p0), _member(p0, output="features")])
    with pytest.raises(ValueError, match="one width"):
        mixed.check_input_size(32, 32)


def test_distill_ensemble_is_one_kd_term_on_the_teachers_averaged_logits(tmp_path):
    """`mvmr distill --teacher A --teacher B --ensemble cifar10_distill_kd`: one kd term (one head) on the ensemble
    of the two classifiers, each read from its own file as the recipe reads its teacher (class logits)."""
    (p0, _), (p1, _) = _classifier(tmp_path, 0), _classifier(tmp_path, 1)
    args = distill_args(tmp_path, "--teacher", "torchvision:resnet18", "--teacher-weights", str(p0),
                        "--teacher", "torchvision:resnet18", "--teacher-weights", str(p1), "--ensemble",
                        "cifar10_distill_kd")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    last = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "loss" in r][-1]
    assert np.isfinite(last["kd/ensemble"]) and not any(k.startswith("kd/torchvision") for k in last)
    term = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["providers"]["ensemble"]
    assert term["objective"] == "kd" and [m["params"]["weights"] for m in term["params"]["members"]] == [str(p0), str(p1)]
    for m in term["params"]["members"]:  # the second ResNet-18 is read as the recipe reads the first: logits, 32 px
        assert {k: m["params"][k] for k in ("output", "size", "crop_pct")} == {"output": "logits", "size": 32,
                                                                             "crop_pct": 1.0}
    one = CliRunner().invoke(app, distill_args(tmp_path, "--teacher", "torchvision:resnet18", "--ensemble",
                                               "cifar10_distill_kd", out="one"))
    assert one.exit_code != 0 and "two or more" in str(one.exception) + one.output
    assert not (tmp_path / "one").exists()
