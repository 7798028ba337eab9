"""The shipped quickstart_distill recipe as a user runs it (``mvmr distill quickstart_distill``), one JSON line per
seed: the student's k-NN, at initialisation, the teacher's own, and the wall minutes of the whole command.
Usage: python bench_quickstart_distill.py [--seeds=0,1]"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import emit, option

for seed in [int(s) for s in option("seeds", "0,1").split(",")]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mvmr", "distill", "quickstart_distill", "--out", f"{tmp}/run",
                        "--set", "trainer.progress=false", "--set", f"trainer.cache_dir={tmp}/cache",
                        "--set", f"trainer.seed={seed}"], check=True, capture_output=True)
        minutes = (time.perf_counter() - started) / 60
        s = json.loads(Path(f"{tmp}/run/summary.json").read_text())
    emit(bench="quickstart_distill", seed=seed, knn_top1=round(s["knn_top1"], 2),
         knn_top1_at_init=round(s["knn_top1_at_init"], 2),
         teacher_knn_top1=round(s["teacher_knn_top1"]["efficientnet-lite0"], 2), minutes=round(minutes, 2))
