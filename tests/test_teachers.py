"""Teachers: open_clip, timm, torchvision and mvmr checkpoints; local weight files; the missing-weights error."""
import pytest
import torch

import mvmr
from mvmr.errors import WeightsError


def test_registered_teachers():
    assert {"clip-vit-b16", "clip", "timm", "torchvision", "mvmr", "ensemble"} <= set(mvmr.list_teachers())


def test_clip_vit_b16_random_is_frozen_512d_with_clip_preprocessing():
    teacher = mvmr.create_teacher("clip-vit-b16", pretrained="none")
    x = torch.rand(2, 3, 96, 96, requires_grad=True)
    out = teacher(x)
    assert out.shape == (2, 512) == (2, teacher.output_dim(96, 96)) and not out.requires_grad
    assert teacher.size == 224 and torch.allclose(teacher.mean.flatten(), torch.tensor([0.48145466, 0.4578275, 0.40821073]))
    assert not any(p.requires_grad for p in teacher.parameters())


def test_missing_pretrained_weights_fail_at_once_naming_tag_and_option():
    with pytest.raises(WeightsError, match=r"laion400m_e32.*--teacher-weights"):
        mvmr.create_teacher("clip-vit-b16")


def test_clip_weights_file_round_trip(tmp_path):
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-S-32", pretrained=None)
    path = tmp_path / "vit_s32.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    teacher = mvmr.create_teacher("clip:ViT-S-32", weights=str(path))
    x = torch.rand(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        expected = model.encode_image(teacher.preprocess(x))
    assert torch.allclose(teacher(x), expected, atol=1e-5)
    assert teacher.weights_digest().startswith("file:")
    torch.save({"wrong": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="does not fit"):
        mvmr.create_teacher("clip:ViT-S-32", weights=str(tmp_path / "bad.pt"))
    with pytest.raises(WeightsError, match="does not exist"):
        mvmr.create_teacher("clip:ViT-S-32", weights=str(tmp_path / "nope.pt"))


def test_timm_teacher_random_and_from_file(tmp_path):
    import timm

    teacher = mvmr.create_teacher("timm:resnet10t", pretrained="none")
    assert teacher(torch.rand(2, 3, 64, 64)).shape == (2, teacher.out_dim)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    torch.save(model.state_dict(), tmp_path / "r10.pt")
    loaded = mvmr.create_teacher("timm:resnet10t", weights=str(tmp_path / "r10.pt"))
    model.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(loaded.preprocess(x)), atol=1e-5)


def test_torchvision_teacher_random():
    teacher = mvmr.create_teacher("torchvision:resnet18", pretrained="none")
    assert teacher(torch.rand(1, 3, 32, 32)).shape == (1, 512)


def test_unknown_models_are_clear_errors():
    with pytest.raises(mvmr.MVMRError, match="open_clip has no model"):
        mvmr.create_teacher("clip:NoSuchModel:none")
    with pytest.raises(mvmr.MVMRError, match="timm has no model"):
        mvmr.create_teacher("timm:no_such_net", pretrained="none")
