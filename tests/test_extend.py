"""One extension mechanism: methods and datasets register like providers (duplicates, suggestions, entry points);
each method validates its own recipe section; the examples/ plug-in trains through the CLI with no core edit;
recipes ship in the wheel; the core has no import cycle."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import mvmr
from mvmr.config import build_recipe
from mvmr.errors import ConfigError, MVMRError
from mvmr.registry import datasets, methods

ROOT = Path(__file__).parent.parent


def test_builtin_methods_and_datasets_are_registered():
    assert {"mvmr", "mira"} <= set(mvmr.list_methods())
    assert {"digits", "npz", "imagefolder", "stl10", "cifar10", "cifar100"} <= set(mvmr.list_datasets())


def test_duplicate_method_names_both_origins_and_unknown_suggests():
    class Other(mvmr.Method):
        def training_step(self, batch, progress):
            raise NotImplementedError

    with pytest.raises(MVMRError, match=r"method 'mvmr' is registered twice: by mvmr\.methods\.mvmr\.MVMR and by .*Other"):
        mvmr.register_method("mvmr", Other)
    with pytest.raises(MVMRError, match=r"unknown method 'mvrm'; did you mean 'mvmr'\?"):
        methods.get("mvrm")
    with pytest.raises(MVMRError, match=r"unknown dataset 'digts'; did you mean 'digits'\?"):
        datasets.get("digts")


def test_a_method_registered_in_python_brings_its_own_section(tmp_path):
    class Settings(mvmr.Section):
        temperature: float = 0.5

    @mvmr.register_method("t_mean_embedding")
    class MeanEmbedding(mvmr.Method):
        views = 3
        section = "t_mean"
        Config = Settings
        default_projector = "16"

        def __init__(self, recipe):
            super().__init__(recipe)
            self.student = mvmr.Student.from_config(recipe.student)

        def training_step(self, batch, progress):
            z = torch.stack([self.student(v) for v in batch.views])
            loss = z.var(0).mean() / self.config.temperature
            return loss, {"spread": loss}

    try:
        recipe = build_recipe({"method": "t_mean_embedding", "t_mean": {"temperature": 2.0},
                               "student": {"backbone": "resnet18"}})
        assert recipe.t_mean.temperature == 2.0 and recipe.student.projector == "16"
        assert recipe.method_config is recipe.t_mean
        assert "loss" not in recipe.to_dict() and "mira" not in recipe.to_dict()  # no other method's settings
        with pytest.raises(ConfigError, match=r"'t_mean.temperature'"):
            build_recipe({"method": "t_mean_embedding", "t_mean": {"temperature": "hot"}})
        with pytest.raises(ConfigError, match=r"unknown key 't_mean.tmp'"):
            build_recipe({"method": "t_mean_embedding", "t_mean": {"tmp": 1}})
        from mvmr.engine import Run, fit
        from mvmr.engine.callbacks import Checkpoint

        tree = {"method": "t_mean_embedding", "student": {"backbone": "resnet18"},
                "data": {"name": "digits", "image_size": 16, "limit": 16},
                "optim": {"batch_size": 8, "epochs": 1, "warmup_epochs": 0},
                "trainer": {"num_workers": 0, "progress": False, "precision": "fp32",
                            "cache_dir": str(tmp_path / "c")}, "eval": {"knn_every": 0}}
        run = Run(build_recipe(tree), tmp_path / "run")
        assert run.dataset.n_views == 3  # the data pipeline read the method's declaration
        fit(run, [Checkpoint()])
        assert run.step == 2 and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    finally:
        methods.unregister("t_mean_embedding")


def test_each_method_reads_only_its_own_section():
    """Another method's section is refused by name (no silent dropping: mvmr has no older recipes to migrate)."""
    with pytest.raises(ConfigError, match="section 'loss' belongs to method 'mvmr'.*method is 'mira'"):
        build_recipe({"method": "mira", "mira": {"prototypes": 10}, "loss": {"mse": 3.0}})
    with pytest.raises(ConfigError, match="section 'mira' belongs to method 'mira'"):
        build_recipe({"method": "mvmr", "mira": {"prototypes": 7}, "loss": {"mse": 2.0}})
    assert build_recipe({"method": "mvmr", "loss": {"mse": 2.0}}).loss.mse == 2.0
    assert "mira" not in build_recipe({}).to_dict()
    assert build_recipe({}).student.projector == "8192-8192-8192"
    assert build_recipe({"method": "mira"}).student.projector == "2048-2048-256"
    with pytest.raises(ConfigError, match=r"unknown key 'lossy'"):
        build_recipe({"lossy": {}})


def test_set_addresses_provider_names_with_dots_and_colons():
    recipe = build_recipe({"providers": {"mvmr:/runs/a.pt": {"weight": 1.0}}},
                          ['providers."mvmr:/runs/a.pt".weight=2.5', 'providers."timm:vit_small.augreg".weight=0.5'])
    assert recipe.providers["mvmr:/runs/a.pt"].weight == 2.5
    assert recipe.providers["timm:vit_small.augreg"].weight == 0.5


def test_entry_points_bring_methods_and_datasets(tmp_path, monkeypatch):
    (tmp_path / "tinymethods.py").write_text(textwrap.dedent("""
        import numpy as np, mvmr

        class Tiny(mvmr.Method):
            def training_step(self, batch, progress):
                raise NotImplementedError

        def ramp(cfg, split):
            return mvmr.ArrayDataset(np.zeros((4, 8, 8, 3), np.uint8), np.arange(4))
    """))
    info = tmp_path / "tinymethods-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinymethods\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mvmr.methods]\ntiny = tinymethods:Tiny\n\n"
                                           "[mvmr.datasets]\nramp = tinymethods:ramp\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    methods.refresh(), datasets.refresh()
    try:
        assert "tiny" in mvmr.list_methods() and "ramp" in mvmr.list_datasets()
        from mvmr.data import build_dataset

        assert len(build_dataset(mvmr.DataConfig(name="ramp"), "train")) == 4
    finally:
        methods.unregister("tiny"), datasets.unregister("ramp")
        monkeypatch.undo()
        methods.refresh(), datasets.refresh()


def _pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", *args],
                          capture_output=True, text=True)


def test_example_plugin_installs_and_trains_through_the_cli(tmp_path):
    pytest.importorskip("lightly")
    done = _pip("--target", str(tmp_path / "site"), str(ROOT / "examples" / "vicreg_plugin"))
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "OMP_NUM_THREADS": "1"}
    recipe = ROOT / "examples" / "vicreg_plugin" / "mvmr_example" / "vicreg_shapes.yaml"
    run = subprocess.run([sys.executable, "-m", "mvmr", "pretrain", str(recipe), "--out", str(tmp_path / "run"),
                          "--set", "trainer.max_steps=2", "--set", "optim.batch_size=16", "--set", "eval.limit=32",
                          "--set", "trainer.num_workers=0", "--set", "trainer.progress=false",
                          "--set", "data.params.n_train=64", "--set", f"trainer.cache_dir={tmp_path / 'cache'}"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "k-NN top-1" in run.stdout
    last = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert any('"vicreg"' in line and '"dcor/color_histogram"' in line for line in last)


def test_recipes_ship_in_the_wheel(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("mvmr-*.whl"))
    assert _pip("--target", str(tmp_path / "site"), str(wheel)).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}

    def mvmr_cli(*args):
        return subprocess.run([sys.executable, "-m", "mvmr", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path)

    where = subprocess.run([sys.executable, "-c", "import mvmr; print(mvmr.__file__)"], capture_output=True,
                           text=True, env=env, cwd=tmp_path)
    assert where.stdout.startswith(str(tmp_path / "site")), where.stdout  # the wheel, not this checkout
    listed = mvmr_cli("recipes", "list")
    assert listed.returncode == 0 and "stl10_distill_clip" in listed.stdout and "quickstart" in listed.stdout
    assert mvmr_cli("distill", "--help").returncode == 0
    shown = mvmr_cli("recipes", "show", "quickstart")
    assert shown.returncode == 0 and "method: mvmr" in shown.stdout
    # the packaged default of `mvmr distill` resolves without the source tree (it then needs the STL10 data)
    missing = mvmr_cli("distill", "--set", f"data.root={tmp_path / 'nowhere'}")
    assert missing.returncode == 2 and "stl10: no data at" in missing.stderr


def test_core_modules_have_no_import_cycle():
    """Module-level imports inside mvmr/ (the CLI package's command registration aside) form no cycle."""
    core = ROOT / "mvmr"
    graph: dict[str, set[str]] = {}
    for path in core.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_pkg else parts)
        if name.startswith("mvmr.cli"):
            continue
        package = name if is_pkg else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.parse(path.read_text()).body:  # module level only: imports inside functions are lazy
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    deps.add(f"{base}.{alias.name}" if f"{base}.{alias.name}".replace(".", "/") and
                             (ROOT / f"{base}.{alias.name}".replace(".", "/")).with_suffix(".py").exists() else base)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d.startswith("mvmr") and d != name}

    def visit(node, stack):
        if node in stack:
            raise AssertionError(" -> ".join(stack[stack.index(node):] + [node]))
        for dep in graph.get(node, ()):
            visit(dep, stack + [node])

    for module in graph:
        visit(module, [])


def test_a_plugin_file_named_like_a_standard_module_never_replaces_it(tmp_path, run_main):
    """--import W/plug/json.py registers its provider under a private module name: json stays json."""
    import json

    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "json.py").write_text(
        "import torch, mvmr\n\n@mvmr.register_extractor('channel_mean_json')\nclass C(mvmr.Provider):\n"
        "    def output_dim(self, h, w): return 3\n    def extract(self, x): return x.mean((2, 3))\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: mvmr\ndata: {name: digits, image_size: 16, limit: 16}\n"
                      "student: {backbone: resnet18, projector: 16}\nproviders: {channel_mean_json: {weight: 1.0}}\n"
                      "optim: {batch_size: 8, epochs: 1, warmup_epochs: 0}\n"
                      f"trainer: {{max_steps: 1, num_workers: 0, progress: false, cache_dir: '{tmp_path / 'c'}'}}\n"
                      "eval: {knn_every: 0}\n")
    try:
        code, _, err = run_main("pretrain", recipe, "--out", tmp_path / "run", "--import", plug / "json.py")
        assert code == 0, err
        assert sys.modules["json"] is json and hasattr(json, "dumps")
    finally:
        mvmr.registry.extractors.unregister("channel_mean_json")


def test_the_objectives_command_lists_what_distill_help_points_to(run_main):
    code, out, _ = run_main("objectives")
    assert code == 0 and all(name in out for name in ("dcor", "cos_smoothl1", "kd", "rkd"))
    code, out, _ = run_main("distill", "--help")
    import re

    assert code == 0 and "mvmr objectives" in " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())
