"""trainer.precision on a CPU: fp16 runs as fp32; bf16 runs as bf16 only where the CPU has native bfloat16, else as
fp32 with one line (emulated bf16 autocast ran 28x slower than fp32 on an AVX2-only CPU)."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

import mvmr.engine.optim as optim


@pytest.mark.parametrize("support, expected", [("native", "bf16"), ("emulated", "fp32")])
def test_bf16_on_a_cpu_depends_on_native_support(monkeypatch, support, expected):
    monkeypatch.setattr(optim, "cpu_bf16_support", lambda: support)
    cpu = torch.device("cpu")
    assert optim.effective_precision(cpu, "bf16") == expected
    assert optim.effective_precision(cpu, "fp16") == "fp32" and optim.effective_precision(cpu, "fp32") == "fp32"
    note = optim.precision_note(cpu, "bf16")
    assert (note is None) == (expected == "bf16")
    if note:
        assert "runs as fp32" in note and "no native bfloat16" in note
    with optim.autocast_for(cpu, "bf16"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)


def test_cpu_flags_decide_and_a_probe_answers_where_there_are_none(monkeypatch):
    from pathlib import Path

    real = Path.read_text
    for text, expected in [("flags\t\t: fpu sse2 avx2 fma\n", "emulated"),
                           ("flags\t\t: fpu avx2 avx512f avx512_bf16\n", "native"),
                           ("Features\t: fp asimd bf16 i8mm\n", "native")]:
        monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: text if str(self) == "/proc/cpuinfo"
                            else real(self, *a, **k))
        optim.cpu_bf16_support.cache_clear()
        assert optim.cpu_bf16_support() == expected, text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (_ for _ in ()).throw(OSError("no procfs")))
    optim.cpu_bf16_support.cache_clear()
    assert optim.cpu_bf16_support() in ("native", "emulated")
    monkeypatch.undo()
    optim.cpu_bf16_support.cache_clear()


def test_a_bf16_run_without_native_support_says_so_in_one_line(tmp_path, run_main, monkeypatch):
    monkeypatch.setattr(optim, "cpu_bf16_support", lambda: "emulated")
    recipe = {"data": {"name": "digits", "image_size": 16, "limit": 16},
              "student": {"backbone": "resnet18", "projector": "16-8"}, "providers": {"pixels": {}},
              "optim": {"batch_size": 8, "epochs": 1, "warmup_epochs": 0},
              "trainer": {"precision": "bf16", "num_workers": 0, "progress": False, "max_steps": 1,
                          "cache_dir": str(tmp_path / "cache")}, "eval": {"knn_every": 0}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    code, _, err = run_main("pretrain", tmp_path / "r.yaml", "--out", tmp_path / "run")
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: trainer.precision")]
    assert notes == ["note: trainer.precision=bf16 runs as fp32 on the CPU: this CPU has no native bfloat16 "
                     "(avx512_bf16 / amx_bf16), where bf16 autocast runs tens of times slower"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 1


@pytest.mark.parametrize("bf16_gpu, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_precision_is_bf16_on_cuda_and_fp32_on_a_cpu(monkeypatch, bf16_gpu, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
    assert optim.effective_precision(torch.device("cuda"), "auto") == expected
    monkeypatch.setattr(optim, "cpu_bf16_support", lambda: "native")  # even with native bf16: a CPU runs fp32
    assert optim.effective_precision(torch.device("cpu"), "auto") == "fp32"
    assert optim.precision_note(torch.device("cpu"), "auto") is None  # auto chose: nothing to warn about


def test_gpu_defaults_resolve_to_the_plain_path_on_a_cpu(tmp_path):
    """precision auto, channels_last unset and augment_on auto give fp32, contiguous images and views made in the
    workers on a CPU (CUDA turns all three on: bf16, channels_last, device augmentation)."""
    from mvmr.config import build_recipe
    from mvmr.engine import Run

    recipe = build_recipe({"data": {"name": "digits", "image_size": 16, "limit": 16}, "optim": {"batch_size": 8},
                           "student": {"backbone": "resnet18", "projector": "16-8"},
                           "trainer": {"num_workers": 0, "use_cache": False}})
    assert recipe.trainer.precision == "auto" and recipe.student.channels_last is None
    run = Run(recipe, tmp_path / "run")
    assert (run.precision, run.channels_last, run.dataset.augment_on) == ("fp32", False, "workers")
    assert not run.scaler.is_enabled()


def test_compiled_student_trains_as_the_eager_one(tmp_path, monkeypatch):
    """trainer.compile=true compiles the student's backbone and projector in place (same state_dict keys) and the
    steps equal the eager ones. torch.compile's aot_eager backend here: it traces forward and backward as
    inductor does, without generating C++ (inductor: 52 s against 7 s for a 3-step run on this CPU)."""
    import mvmr.engine.run as run_module
    from mvmr.config import build_recipe
    from mvmr.engine import Run, fit

    monkeypatch.setattr(run_module, "COMPILE_OPTIONS", {"backend": "aot_eager"})
    weights, initial = {}, None
    for compiled in (False, True):
        recipe = build_recipe({"data": {"name": "digits", "image_size": 16, "limit": 32},
                               "optim": {"batch_size": 16, "lr": 0.01, "warmup_epochs": 0},
                               "student": {"backbone": "resnet18", "projector": "16-8"}, "eval": {"knn_every": 0},
                               "trainer": {"num_workers": 0, "use_cache": False, "max_steps": 2, "progress": False,
                                           "compile": compiled}})
        run = Run(recipe, tmp_path / str(compiled))
        initial = initial or {k: v.clone() for k, v in run.method.state_dict().items()}
        fit(run, [])
        assert (run.method.student.backbone._compiled_call_impl is not None) == compiled
        weights[compiled] = run.method.state_dict()
    assert sorted(weights[True]) == sorted(weights[False])
    moved = max((v.float() - initial[k].float()).abs().max().item() for k, v in weights[False].items())
    assert moved > 5e-3  # the steps moved the weights well beyond the tolerance below
    for k, v in weights[False].items():
        assert torch.allclose(v.float(), weights[True][k].float(), atol=1e-4), k
