"""Training-step time and peak memory: a minimal reimplementation of the official MV-MR step (vkinakh/mv-mr,
self_supervised_module.py: same backbone, projector, batch and representations — pixels, batch-augmented pixels,
ScatNet, the official HOG, the std filter — with its clamped dCor and +dCor signs) beside mvmr's MV-MR step at the
same maths (provider weights −1), online and with a warm feature cache. Times are interleaved in one process; peak
RSS comes from one fresh process per implementation.
Usage: python bench_official_step.py [backbone] [image_size] [batch] [projector]
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from common import best_times, emit

BACKBONE = sys.argv[1] if len(sys.argv) > 1 else "resnet18"
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 96
BATCH = int(sys.argv[3]) if len(sys.argv) > 3 else 32
PROJECTOR = sys.argv[4] if len(sys.argv) > 4 else "2048-2048-2048"


def official_dcor(x, z):
    def dist(a):
        r = (a * a).sum(1, keepdim=True)
        return (r - 2 * a @ a.T + r.T).clamp(min=1e-4).sqrt()
    n = x.shape[0]
    a, b = dist(x), dist(z)
    A = a - a.mean(1) - a.mean(0)[:, None] + a.mean()
    B = b - b.mean(1) - b.mean(0)[:, None] + b.mean()
    return ((A * B).mean() / n ** 2).sqrt() / (((A * A).mean() / n ** 2).sqrt() * ((B * B).mean() / n ** 2).sqrt()).sqrt()


class OfficialStep:
    """The official step, reimplemented from its definition (per-channel Sobel HOG with its binning, kornia-style
    box-blur std filter, one torchvision transform for the whole batch as 'augmented pixels')."""

    def __init__(self) -> None:
        from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

        net = getattr(torchvision.models, BACKBONE)(zero_init_residual=True)
        net.conv1 = torch.nn.Conv2d(3, net.conv1.out_channels, 3, 1, 1, bias=False)
        dim = net.fc.in_features
        net.fc = torch.nn.Identity()
        sizes = [dim] + [int(s) for s in PROJECTOR.split("-")]
        layers = []
        for a, b in zip(sizes[:-2], sizes[1:-1]):
            layers += [torch.nn.Linear(a, b, bias=False), torch.nn.BatchNorm1d(b), torch.nn.ReLU(inplace=True)]
        self.encoder = torch.nn.Sequential(net, *layers, torch.nn.Linear(sizes[-2], sizes[-1], bias=False))
        self.scat = ScatteringTorch2D(J=2, shape=(SIZE, SIZE), L=8)
        sobel = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
        self.sobel = torch.stack([sobel, sobel.T])[:, None]
        k = 2 * int(0.05 * SIZE) + 1
        self.transform = torchvision.transforms.Compose([
            torchvision.transforms.RandomResizedCrop(SIZE), torchvision.transforms.RandomHorizontalFlip(),
            torchvision.transforms.RandomApply([torchvision.transforms.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
            torchvision.transforms.RandomGrayscale(p=0.2), torchvision.transforms.GaussianBlur(k)])
        self.opt = torch.optim.Adam(self.encoder.parameters(), lr=1e-4, weight_decay=1e-6)

    def hog(self, x, nbins=24, pool=8):
        b = x.shape[0]
        g = F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), self.sobel, padding=1)
        mag = g.norm(dim=1, keepdim=True)
        pos = (torch.atan2(g[:, 0], g[:, 1]) / torch.pi * nbins)[:, None]
        out = torch.zeros(g.shape[0], nbins, *g.shape[-2:])
        out.scatter_(1, pos.floor().long() % nbins, mag)
        out.scatter_add_(1, pos.ceil().long() % nbins, 1 - mag)
        return F.avg_pool2d(out, pool).reshape(b, -1)

    @staticmethod
    def std_filter(x):
        blur = lambda t: F.avg_pool2d(F.pad(t, (1, 1, 1, 1), mode="reflect"), 3, stride=1)  # noqa: E731
        return torch.sqrt(blur(x * x) - blur(x) ** 2 + 1e-8).nan_to_num(0.0)

    def step(self, orig, aug):
        z, z_orig = self.encoder(aug), self.encoder(orig)
        zs, zos = z / 32, z_orig / 32
        loss = F.mse_loss(z_orig, z) + F.relu(1 - z.std(0)).mean() + F.relu(1 - z_orig.std(0)).mean()
        loss = loss + 1 - official_dcor(zos, zs)
        with torch.no_grad():
            feats = [orig.flatten(1) / 32, self.transform(orig).flatten(1) / 32,
                     self.scat(orig).flatten(1) / 32, self.hog(orig), self.std_filter(orig).flatten(1)]
        for f in feats:
            loss = loss + official_dcor(f, zs)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def mvmr_step(cached: bool, tmp: Path):
    from mvmr.cache import CachedFeatures, open_caches
    from mvmr.config import build_recipe
    from mvmr.data import Batch
    from mvmr.methods import build_method

    providers = {n: {"weight": -1.0} for n in ("pixels", "augmented_pixels", "scatnet", "lsd")}
    providers["hog_official"] = {"weight": -1.0, "params": {"nbins": 24, "pool": 8}}
    method = build_method(build_recipe({"student": {"backbone": BACKBONE, "stem": "small_kernel",
                                                    "projector": PROJECTOR}, "data": {"image_size": SIZE},
                                        "providers": providers})).train()
    opt = torch.optim.Adam(method.parameters(), lr=1e-4, weight_decay=1e-6)
    if cached:
        method.feature_source = CachedFeatures(method.providers, open_caches(
            method.providers, {"name": "bench", "length": BATCH}, BATCH, SIZE, tmp))

    def step(orig, aug):
        loss, _ = method.training_step(Batch(orig, [aug], None, torch.arange(BATCH)), 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def build(name: str, tmp: Path):
    return OfficialStep().step if name == "official" else mvmr_step(name == "mvmr_cached", tmp)


if __name__ == "__main__":
    g = torch.Generator().manual_seed(0)
    orig, aug = torch.rand(BATCH, 3, SIZE, SIZE, generator=g), torch.rand(BATCH, 3, SIZE, SIZE, generator=g)
    if len(sys.argv) > 5:  # child: peak memory of one implementation
        import resource

        with tempfile.TemporaryDirectory() as tmp:
            step = build(sys.argv[5], Path(tmp))
            for _ in range(2):
                step(orig, aug)
        print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        sys.exit()
    names = ("official", "mvmr", "mvmr_cached")
    with tempfile.TemporaryDirectory() as tmp:
        steps = {n: build(n, Path(tmp)) for n in names}
        times = best_times({n: (lambda s=s: s(orig, aug)) for n, s in steps.items()}, repeats=3)
    args = [BACKBONE, str(SIZE), str(BATCH), PROJECTOR]
    peaks = {n: json.loads(subprocess.run([sys.executable, __file__, *args, n], capture_output=True, text=True,
                                          check=True).stdout.splitlines()[-1])["peak_rss_mb"] for n in names}
    emit(bench="official_step", backbone=BACKBONE, stem="small_kernel", image_size=SIZE, batch=BATCH,
         projector=PROJECTOR, threads=torch.get_num_threads(),
         **{f"{n}_ms": round(times[n] * 1e3, 1) for n in names}, **{f"{n}_peak_mb": round(peaks[n]) for n in names},
         speedup_online=round(times["official"] / times["mvmr"], 2),
         speedup_cached=round(times["official"] / times["mvmr_cached"], 2))
