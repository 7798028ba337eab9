"""Parity with the official code's definitions, reimplemented here independently (not copied): MV-MR's
``DistanceCorrelation`` (vkinakh/mv-mr, src/loss) and MIRA's ``mira()`` fixed point (movinghoon/mira, train.py)."""
import torch
import torch.nn.functional as F

from mvmr.losses import distance_correlation, mira_assign


def official_dcor(x: torch.Tensor, z: torch.Tensor, clamp: float = 1e-4) -> torch.Tensor:
    """The official definition: squared distances from the Gram matrix clamped at ``clamp`` (so the diagonal
    reads sqrt(clamp), not 0), row/column/grand-mean centring, dCov = sqrt(mean(A∘B) / n²), dCor = dCov /
    sqrt(dVar_x · dVar_z)."""
    def dist(a):
        r = (a * a).sum(1, keepdim=True)
        return (r - 2 * a @ a.T + r.T).clamp(min=clamp).sqrt()

    n = x.shape[0]
    a, b = dist(x), dist(z)
    A = a - a.mean(1) - a.mean(0)[:, None] + a.mean()
    B = b - b.mean(1) - b.mean(0)[:, None] + b.mean()
    cov = ((A * B).mean() / n ** 2).sqrt()
    return cov / (((A * A).mean() / n ** 2).sqrt() * ((B * B).mean() / n ** 2).sqrt()).sqrt()


def official_mira(k: torch.Tensor, tau: float, beta: float, iters: int) -> torch.Tensor:
    """MIRA's fixed point in the linear domain, one process (the official code all-reduces the column sums)."""
    bs = k.shape[0]
    k = F.softmax(k / tau / (1 - beta), dim=1)
    v = (k.sum(0) / bs).pow(1 - beta)
    for _ in range(iters):
        temp = k / (v.pow(-beta / (1 - beta)) * k).sum(1, keepdim=True)
        v = (temp.sum(0) / bs).pow(1 - beta)
    temp = v.pow(-beta / (1 - beta)) * k
    return temp / temp.sum(1, keepdim=True)


def test_dcor_equals_the_official_definition_without_its_clamp():
    g = torch.Generator().manual_seed(0)
    x, z = torch.randn(64, 32, generator=g, dtype=torch.float64), torch.randn(64, 7, generator=g, dtype=torch.float64)
    z[:, 0] += x[:, 0]
    assert torch.allclose(distance_correlation(x, z), official_dcor(x, z, clamp=0.0), atol=1e-12)


def test_official_clamp_is_a_small_bias_at_unit_scale_and_a_large_one_at_small_scale():
    g = torch.Generator().manual_seed(1)
    x, z = torch.randn(64, 32, generator=g, dtype=torch.float64), torch.randn(64, 7, generator=g, dtype=torch.float64)
    z[:, 0] += x[:, 0]
    ours, theirs = distance_correlation(x, z), official_dcor(x, z)
    assert abs(ours - theirs) < 1e-3  # unit-scale features: the diagonal's sqrt(1e-4) barely matters
    small = distance_correlation(x * 1e-3, z * 1e-3)
    assert torch.allclose(small, ours, atol=1e-12)  # dCor is scale-free ...
    clamped = official_dcor(x * 1e-3, z * 1e-3)
    assert not torch.isfinite(clamped) or abs(clamped - ours) > 0.05  # ... the clamped form is not (here: NaN)


def test_mira_assign_equals_the_official_fixed_point():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(256, 300, generator=g, dtype=torch.float64) * 0.3
    for beta in (0.75, 2 / 3, 0.5):
        for iters in (1, 3, 30):
            ours = mira_assign(logits, tau=0.225, beta=beta, iters=iters)
            assert torch.allclose(ours, official_mira(logits, 0.225, beta, iters), atol=1e-12, rtol=0)
