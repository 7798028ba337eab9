"""The teacher bank (``bank: K`` on a ``view: augmented`` term): a banked run equals an online run with the same
views, the views cycle with period K, a bank built for other settings is never read, and a build resumes."""
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import mvmr
from mvmr.bank import TeacherBank, bank_description, fill_bank, views_identity
from mvmr.cache import cache_key
from mvmr.cache_admin import build_caches
from mvmr.config import build_recipe
from mvmr.data import Views, augment_spec, build_dataset, dataset_identity
from mvmr.engine import Run, default_callbacks, fit
from mvmr.errors import ConfigError, MVMRError
from mvmr.registry import teachers

CALLS = {"n": 0}


@pytest.fixture(autouse=True)
def tiny_teacher():
    """A small random conv net as a frozen teacher (seeded by the run, so every build is the same network) that
    counts its forwards."""
    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

        def forward(self, x):
            CALLS["n"] += len(x)
            return self.net(x)

    def factory(size: int = 16):
        return mvmr.FrozenEncoder(Counting(), 8, size, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear")
    teachers.register("tiny_bank_teacher", factory)
    CALLS["n"] = 0
    yield
    teachers.unregister("tiny_bank_teacher")


def tree(npz_path: Path, cache: Path, bank: int, epochs: int, **term) -> dict:
    return {"method": "mvmr",
            "data": {"name": "npz", "root": str(npz_path), "image_size": 16, "augment": {"crop_scale": [0.3, 1.0]}},
            "student": {"backbone": "resnet18", "projector": "32", "zero_init_residual": False},
            "providers": {"tiny_bank_teacher": {"objective": "cos_smoothl1", "view": "augmented",
                                                "representation": "backbone", "bank": bank, **term}},
            "loss": {"mse": 0.0, "variance": 0.0, "dcor_views": 0.0},
            "optim": {"name": "adam", "lr": 1e-3, "batch_size": 8, "epochs": epochs, "warmup_epochs": 0},
            "trainer": {"precision": "fp32", "num_workers": 0, "progress": False, "cache_dir": str(cache), "seed": 3},
            "eval": {"knn_every": 0}}


def train(t: dict, out: Path) -> dict:
    run = Run(build_recipe(t), out)
    fit(run, default_callbacks(run))
    return {k: v.detach().clone() for k, v in run.method.student.state_dict().items()}


def test_a_banked_run_equals_the_online_run_with_the_same_views(tmp_path, npz_path):
    online = train(tree(npz_path, tmp_path / "c0", bank=0, epochs=2), tmp_path / "online")
    online_calls = CALLS["n"]
    banked_tree = tree(npz_path, tmp_path / "c1", bank=2, epochs=2)
    build_caches(build_recipe(banked_tree))  # mvmr cache build: every view of both epochs, plus the original
    CALLS["n"] = 0
    banked = train(banked_tree, tmp_path / "banked")
    assert online_calls == 2 * 24 and CALLS["n"] == 0  # the banked run read every teacher output from disk
    for key, value in online.items():
        assert torch.allclose(value.float(), banked[key].float(), atol=1e-5), key


def test_views_cycle_with_the_period_and_the_teacher_runs_only_while_the_bank_fills(tmp_path, npz_path):
    t = tree(npz_path, tmp_path / "c", bank=2, epochs=5)
    train(t, tmp_path / "run")
    assert CALLS["n"] == 2 * 24  # epochs 0 and 1 computed and stored; epochs 2-4 read (views of 0, 1, 0)
    recipe = build_recipe(t)
    views = Views(build_dataset(recipe.data, "ssl"), 16, augment_spec(recipe.data), seed=3)
    views.epoch = 0
    first = views[5][1][0]
    views.epoch = 1
    assert not torch.equal(first, views[5][1][0])  # epochs differ within a period ...
    views.epoch = 2 % 2
    assert torch.equal(first, views[5][1][0])  # ... and epoch 2 shows epoch 0's views (the run sets epoch mod K)


def _bank(recipe, root: Path, **change) -> tuple[TeacherBank, Views]:
    from mvmr.registry import build_providers

    cfg = recipe.providers["tiny_bank_teacher"]
    provider = build_providers({"tiny_bank_teacher": cfg.params}, recipe.trainer.seed)["tiny_bank_teacher"]
    base = build_dataset(recipe.data, "ssl")
    specs = [(recipe.data.image_size, augment_spec(recipe.data))]
    views = Views(base, recipe.data.image_size, augment_spec(recipe.data), seed=recipe.trainer.seed, specs=specs)
    bank = TeacherBank.open("tiny_bank_teacher", provider, dataset_identity(recipe.data, "ssl", base),
                            views_identity(recipe, specs, "workers"), cfg.bank, cfg.bank_dtype, len(base), 8, root)
    return bank, views, provider


@pytest.mark.parametrize("change,field", [
    ("data.augment.crop_scale", "views"), ("trainer.seed", "views"),
    ("providers.tiny_bank_teacher.params.size", "fingerprint/params"), ("teacher weights", "fingerprint")])
def test_a_bank_built_for_other_settings_is_refused(tmp_path, npz_path, change, field):
    t = tree(npz_path, tmp_path / "c", bank=2, epochs=2)
    recipe = build_recipe(t)
    bank, views, provider = _bank(recipe, tmp_path / "c")
    fill_bank(bank, provider, views, 2, 8, torch.device("cpu"))
    other = copy.deepcopy(t)
    if change == "data.augment.crop_scale":
        other["data"]["augment"]["crop_scale"] = [0.5, 1.0]
    elif change == "trainer.seed":
        other["trainer"]["seed"] = 4
    elif change == "providers.tiny_bank_teacher.params.size":
        other["providers"]["tiny_bank_teacher"]["params"] = {"size": 24}
    changed = build_recipe(other)
    if change == "teacher weights":  # the same settings, another network (e.g. another weight file)
        provider2 = _bank(changed, tmp_path / "elsewhere")[2]
        with torch.no_grad():
            provider2.model.net[0].weight.add_(1.0)
        provider2._digest = None
    else:
        provider2 = _bank(changed, tmp_path / "elsewhere")[2]
    old = bank.caches[0].folder
    base = build_dataset(changed.data, "ssl")
    specs = [(16, augment_spec(changed.data))]
    description = bank_description(provider2, dataset_identity(changed.data, "ssl", base),
                                   views_identity(changed, specs, "workers"), 2, 0, "float32")
    new = old.parent / cache_key(description)
    assert new != old  # another setting is another key: a run with it never reads this bank ...
    shutil.copytree(old, new)  # ... and a bank folder found under that key that was built for other settings
    with pytest.raises(MVMRError) as err:
        TeacherBank.open("tiny_bank_teacher", provider2, dataset_identity(changed.data, "ssl", base),
                         views_identity(changed, specs, "workers"), 2, "float32", len(base), 8, tmp_path / "c")
    message = str(err.value)
    assert "\n" not in message and "built for another" in message
    assert all(part in message for part in field.split("/"))


def test_an_interrupted_build_resumes_without_recomputing_finished_rows(tmp_path, npz_path):
    recipe = build_recipe(tree(npz_path, tmp_path / "c", bank=3, epochs=3))
    bank, views, provider = _bank(recipe, tmp_path / "c")
    original_forward = provider.model.forward

    def dies_after_five_batches(x):
        if CALLS["n"] >= 5 * 8:
            raise KeyboardInterrupt
        return original_forward(x)
    provider.model.forward = dies_after_five_batches
    with pytest.raises(KeyboardInterrupt):
        fill_bank(bank, provider, views, 3, 8, torch.device("cpu"))
    assert bank.slot(0).complete and not bank.slot(1).complete  # epoch 0's 24 views sealed, epoch 1 half done
    provider.model.forward = original_forward
    CALLS["n"] = 0
    reopened, views, provider = _bank(recipe, tmp_path / "c")
    assert fill_bank(reopened, provider, views, 3, 8, torch.device("cpu")) == 3 * 24 - 5 * 8
    assert CALLS["n"] == 3 * 24 - 5 * 8 and reopened.complete
    # and the rows are those of a build that was never interrupted
    fresh, views, provider = _bank(recipe, tmp_path / "fresh")
    fill_bank(fresh, provider, views, 3, 8, torch.device("cpu"))
    for a, b in zip(reopened.caches, fresh.caches):
        np.testing.assert_allclose(a.read(np.arange(24)), b.read(np.arange(24)), atol=1e-6)


def test_float16_storage_halves_the_disk_and_keeps_the_rows_to_float16_precision(tmp_path, npz_path):
    t32, t16 = (tree(npz_path, tmp_path / "c", bank=1, epochs=1, bank_dtype=d) for d in ("float32", "float16"))
    (b32, views, p), (b16, _, _) = _bank(build_recipe(t32), tmp_path / "c"), _bank(build_recipe(t16), tmp_path / "c")
    for bank in (b32, b16):
        fill_bank(bank, p, views, 1, 8, torch.device("cpu"))
    full, half = b32.slot(0).read(np.arange(24)), b16.slot(0).read(np.arange(24))
    assert half.dtype == np.float32 and np.abs(full - half).max() <= 1e-3 * np.abs(full).max()
    assert b16.slot(0).features.nbytes * 2 == b32.slot(0).features.nbytes


@pytest.mark.parametrize("term,fragment", [
    ({"view": "cross"}, "needs view: augmented"),
    ({"representation": "spatial", "objective": "cos_smoothl1"}, "feature maps are not banked"),
])
def test_a_bank_that_cannot_do_what_it_says_is_refused_before_anything_is_written(tmp_path, npz_path, term, fragment):
    t = tree(npz_path, tmp_path / "c", bank=2, epochs=2, **term)
    with pytest.raises(ConfigError, match=fragment):
        Run(build_recipe(t), tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "c").exists()


def test_banks_of_one_run_share_a_period_and_need_the_cache(tmp_path, npz_path):
    t = tree(npz_path, tmp_path / "c", bank=2, epochs=2)
    t["providers"]["second"] = {**t["providers"]["tiny_bank_teacher"], "provider": "tiny_bank_teacher", "bank": 3}
    with pytest.raises(ConfigError, match="share one bank period"):
        Run(build_recipe(t), tmp_path / "run")
    t = tree(npz_path, tmp_path / "c", bank=2, epochs=2)
    t["trainer"]["use_cache"] = False
    with pytest.raises(ConfigError, match="use_cache=true"):
        Run(build_recipe(t), tmp_path / "run")


def test_cache_build_prints_the_bank_and_its_size(tmp_path, npz_path, run_main):
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree(npz_path, tmp_path / "c", bank=2, epochs=2)))
    code, out, err = run_main("cache", "build", str(path))
    assert code == 0, err
    line = [x for x in out.splitlines() if "teacher bank" in x][0]
    assert "2 epochs (complete)" in line and "48 views computed" in line and "MB on disk" in line
    code, out, err = run_main("cache", "build", str(path))  # again: nothing left to compute
    assert code == 0 and "0 views computed" in out
