"""Label-free KD objectives against independent references and their invariants; a teacher at its own
resolution and statistics; a full classifier checkpoint as a teacher; objectives chosen per provider."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mvmr
from mvmr.config import build_recipe
from mvmr.data import Batch
from mvmr.losses import (RKD, SEED, ContrastiveKD, CosineRegression, DCorObjective, SimilarityPreserving, SoftTargetKD,
                         distance_correlation)
from mvmr.losses.distill import rkd_angle, rkd_distance
from mvmr.methods import build_method
from mvmr.registry import objectives


def _pair(n=12, ds=6, dt=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, ds, generator=g, dtype=torch.float64), torch.randn(n, dt, generator=g, dtype=torch.float64)


def _huber(a, b):
    d = np.abs(a - b)
    return np.where(d < 1, 0.5 * d ** 2, d - 0.5).mean()


def test_rkd_matches_a_numpy_reference():
    s, t = _pair()
    S, T = s.numpy(), t.numpy()

    def dist(x):
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        return d / d[~np.eye(len(x), dtype=bool)].mean()

    def angle(x):
        e = x[None, :, :] - x[:, None, :]  # e[i, j] = x_j - x_i
        n = np.linalg.norm(e, axis=-1, keepdims=True)
        e = np.divide(e, n, out=np.zeros_like(e), where=n > 0)
        return np.einsum("ijd,ikd->ijk", e, e).ravel()

    assert abs(rkd_distance(s, t).item() - _huber(dist(S), dist(T))) < 1e-5
    assert abs(rkd_angle(s, t).item() - _huber(angle(S), angle(T))) < 1e-5
    # invariants: zero against itself, distance term blind to scale and translation of the teacher
    assert RKD(6, 6)(s, s).item() < 1e-10
    assert abs(rkd_distance(s, 3 * t + 1).item() - rkd_distance(s, t).item()) < 1e-8


def test_similarity_preserving_reference_and_scale_invariance():
    s, t = _pair()
    gs, gt = s @ s.T, t @ t.T
    ref = ((gs / gs.norm(dim=1, keepdim=True) - gt / gt.norm(dim=1, keepdim=True)) ** 2).sum() / 144
    sp = SimilarityPreserving(6, 4)
    assert torch.allclose(sp(s, t).double(), ref, atol=1e-6)
    assert sp(s, 5 * s).item() < 1e-10


def test_cosine_regression_is_zero_at_a_perfect_predictor():
    s, t = _pair(dt=6)
    obj = CosineRegression(6, 6, hidden=0)
    with torch.no_grad():
        obj.predictor.weight.copy_(torch.eye(6)), obj.predictor.bias.zero_()
    assert obj(s.float(), 2 * s.float()).item() < 1e-6
    assert torch.allclose(obj(s.float(), t.float()), 1 - F.cosine_similarity(s.float(), t.float()).mean(), atol=1e-6)


def test_seed_is_the_cross_entropy_of_teacher_and_student_similarities():
    s, t = _pair(dt=6)
    obj = SEED(6, 6, queue=8, tau_student=0.2, tau_teacher=0.07).eval()
    with torch.no_grad():
        obj.predictor.weight.copy_(torch.eye(6)), obj.predictor.bias.zero_()
    sn, tn = F.normalize(s.float(), dim=1), F.normalize(t.float(), dim=1)
    p = F.softmax(tn @ tn.T / 0.07, dim=1)
    ref = -(p * F.log_softmax(sn @ tn.T / 0.2, dim=1)).sum(1).mean()
    assert torch.allclose(obj(s.float(), t.float()), ref, atol=1e-5)
    # cross-entropy ≥ the target's entropy, with equality when the student's distribution is the teacher's
    same = SEED(6, 6, queue=8, tau_student=0.07, tau_teacher=0.07).eval()
    with torch.no_grad():
        same.predictor.weight.copy_(torch.eye(6)), same.predictor.bias.zero_()
    entropy = -(p * p.clamp_min(1e-30).log()).sum(1).mean()
    assert torch.allclose(same(t.float(), t.float()), entropy, atol=1e-4)
    assert obj(s.float(), t.float()) >= entropy
    obj.train()(s.float(), t.float())
    assert int(obj.filled) == 8 and torch.allclose(obj.queue, tn[:8])  # the queue holds the newest teacher rows


def test_dcor_objective_is_one_minus_dcor_for_both_estimators():
    s, t = _pair()
    for est in ("biased", "unbiased"):
        assert torch.allclose(DCorObjective(6, 4, est)(s, t), 1 - distance_correlation(s, t, est))


def test_every_registered_objective_trains_in_the_method_per_provider():
    tree = {"student": {"backbone": "resnet18", "projector": "32-16"}, "data": {"image_size": 16},
            "loss": {"mse": 0.0, "variance": 0.0, "dcor_views": 0.0}}
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.rand(8, 3, 16, 16, generator=g), [torch.rand(8, 3, 16, 16, generator=g)], None,
                  torch.arange(8))
    for name in objectives.names():
        for view, on in [("cross", "projector"), ("original", "backbone"), ("augmented", "backbone")]:
            tree["providers"] = {"pixels": {"weight": 1.0, "objective": name, "view": view, "representation": on}}
            method = build_method(build_recipe(tree))
            loss, terms = method.training_step(batch, 0.0)
            assert set(terms) == {f"{name}/pixels"} and torch.isfinite(loss)
            loss.backward()
            assert method.student.backbone.conv1.weight.grad is not None


def test_unknown_objective_suggests_the_closest():
    tree = {"providers": {"pixels": {"objective": "cosin"}}, "student": {"backbone": "resnet18"}}
    with pytest.raises(mvmr.MVMRError, match=r"unknown objective 'cosin'; did you mean 'cosine'\?"):
        build_method(build_recipe(tree))


def test_torchvision_teacher_at_its_own_resolution_from_a_classifier_checkpoint(tmp_path, capsys):
    import torchvision

    net = torchvision.models.resnet18(num_classes=10)
    torch.save(net.state_dict(), tmp_path / "classifier.pt")
    teacher = mvmr.create_teacher("torchvision:resnet18", weights=str(tmp_path / "classifier.pt"), size=32,
                                  crop_pct=1.0, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    notice = capsys.readouterr().err
    assert "dropped the classifier head" in notice and "(fc.bias, fc.weight)" in notice
    x = torch.rand(4, 3, 32, 32)
    net.fc = torch.nn.Identity()
    net.eval()
    assert torch.allclose(teacher(x), net((x - 0.5) / 0.25), atol=1e-5)  # no resize at its own 32 px
    small = mvmr.create_teacher("torchvision:resnet18", pretrained="none", stem="cifar", size=32, crop_pct=1.0)
    assert small.model.conv1.kernel_size == (3, 3) and small(x).shape == (4, 512)


def test_soft_target_kd_matches_a_numpy_reference_and_vanishes_at_the_teachers_logits():
    s, t = _pair(dt=5)
    kd = SoftTargetKD(6, 5, temperature=3.0)
    S = (s.float() @ kd.head.weight.detach().T + kd.head.bias.detach()).double().numpy() / 3.0
    T = t.numpy() / 3.0

    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))
    p = np.exp(log_softmax(T))
    ref = (p * (log_softmax(T) - log_softmax(S))).sum(1).mean() * 9.0  # KL(p_t || p_s) · T²
    assert abs(kd(s.float(), t.float()).item() - ref) < 1e-5
    mlp = SoftTargetKD(6, 5, temperature=3.0, hidden=8).eval()  # an MLP head: Linear → BN → ReLU → Linear
    assert [type(m).__name__ for m in mlp.head] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    S = mlp.head(s.float()).detach().double().numpy() / 3.0
    ref = (p * (log_softmax(T) - log_softmax(S))).sum(1).mean() * 9.0
    assert abs(mlp(s.float(), t.float()).item() - ref) < 1e-5
    exact = SoftTargetKD(5, 5, temperature=2.0)
    with torch.no_grad():
        exact.head.weight.copy_(torch.eye(5)), exact.head.bias.fill_(0.7)  # a shift leaves the softmax alone
    assert abs(exact(t.float(), t.float()).item()) < 1e-6 and exact(s.float()[:, :5], t.float()).item() > 0.01
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SoftTargetKD(6, 5, temperature=0.0)


def test_crd_is_the_symmetric_infonce_of_a_numpy_reference_and_ranks_a_matching_student_first():
    s, t = _pair(n=10, dt=5)
    crd = ContrastiveKD(6, 5, dim=4, temperature=0.1)
    zs = (s.float() @ crd.student_embed.weight.detach().T + crd.student_embed.bias.detach()).double().numpy()
    zt = (t.float() @ crd.teacher_embed.weight.detach().T + crd.teacher_embed.bias.detach()).double().numpy()
    zs, zt = zs / np.linalg.norm(zs, axis=1, keepdims=True), zt / np.linalg.norm(zt, axis=1, keepdims=True)
    logits = zs @ zt.T / 0.1

    def nll_of_diagonal(z):  # −log softmax(z)_ii, averaged over rows
        z = z - z.max(1, keepdims=True)
        return -(np.diag(z) - np.log(np.exp(z).sum(1))).mean()
    ref = 0.5 * (nll_of_diagonal(logits) + nll_of_diagonal(logits.T))
    assert abs(crd(s.float(), t.float()).item() - ref) < 1e-5
    # a student whose embedding is the teacher's scores below one paired with the wrong images, and near 0 at a
    # low temperature
    same = ContrastiveKD(5, 5, dim=5, temperature=0.05)
    with torch.no_grad():
        for embed in (same.student_embed, same.teacher_embed):
            embed.weight.copy_(torch.eye(5)), embed.bias.zero_()
    matched, shuffled = same(t.float(), t.float()), same(t.float().roll(1, 0), t.float())
    assert matched < shuffled and matched.item() < 0.2
    with pytest.raises(ValueError, match="dim and temperature must be > 0"):
        ContrastiveKD(6, 5, temperature=0.0)


def test_classifier_teachers_read_their_logits(tmp_path):
    import torchvision

    net = torchvision.models.resnet18(num_classes=7).eval()
    torch.save(net.state_dict(), tmp_path / "classifier.pt")
    teacher = mvmr.create_teacher("torchvision:resnet18", weights=str(tmp_path / "classifier.pt"), size=32,
                                  crop_pct=1.0, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], output="logits")
    x = torch.rand(4, 3, 32, 32)
    assert teacher.output_dim(32, 32) == 7 and not teacher.summary_pools_map  # the summary is not the map's pool
    assert torch.allclose(teacher(x), net((x - 0.5) / 0.25), atol=1e-5)
    features = mvmr.create_teacher("torchvision:resnet18", weights=str(tmp_path / "classifier.pt"), size=32)
    assert features.weights_digest() != teacher.weights_digest()  # cached features of the two never mix
    net.fc = torch.nn.Identity()
    torch.save(net.state_dict(), tmp_path / "headless.pt")
    with pytest.raises(mvmr.MVMRError, match="output: logits needs a classifier checkpoint"):
        mvmr.create_teacher("torchvision:resnet18", weights=str(tmp_path / "headless.pt"), output="logits")
    import timm

    small = timm.create_model("resnet10t", num_classes=7).eval()
    torch.save(small.state_dict(), tmp_path / "timm.pt")
    read = mvmr.create_teacher("timm:resnet10t", weights=str(tmp_path / "timm.pt"), output="logits", size=32,
                               crop_pct=1.0, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    assert read.output_dim(32, 32) == 7 and torch.allclose(read(x), small((x - 0.5) / 0.25), atol=1e-5)
