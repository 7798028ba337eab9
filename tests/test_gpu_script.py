"""The prepared GPU benchmark runs end to end (here on the CPU, --tiny) and prints its JSON lines."""
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_gpu_throughput_script_runs_tiny_on_a_cpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "gpu_throughput.py", "--tiny", "--cases", "stl10_mvmr,supervised"],
                         cwd=BENCH, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    cases = {(r["case"], r["data"], r.get("precision"), r.get("channels_last"), r.get("augment_on")) for r in lines}
    assert ("stl10_mvmr", "resident", "fp32", False, None) in cases
    assert ("stl10_mvmr", "loader, 0 workers", "fp32", None, "device") in cases
    assert ("stl10_mvmr", "loader alone, 0 workers", None, None, "workers") in cases
    assert any(r["case"] == "supervised_resnet18" for r in lines)
    assert all(r["img_per_s"] > 0 for r in lines)
