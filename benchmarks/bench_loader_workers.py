"""Does ``trainer.num_workers`` change a CIFAR recipe's wall time on this machine? ``mvmr distill cifar10_distill_kd``
against a teacher checkpoint, 2 epochs, no k-NN, loader workers 1 and 2 alternated ``REPS`` times, one JSON line a
run (wall seconds of the whole command, start-up included).
Usage: python bench_loader_workers.py TEACHER.pt [reps]   (e.g. .cache/teacher_e_resnet18_cifar10mini.pt)
"""
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CIFAR_NPZ as NPZ, emit

teacher = Path(sys.argv[1]).resolve()
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 2
mvmr = Path(sys.executable).with_name("mvmr")
for rep in range(1, reps + 1):
    for workers in (1, 2):
        out = Path(tempfile.mkdtemp())
        started = time.perf_counter()
        rc = subprocess.run([str(mvmr), "distill", "--teacher-weights", str(teacher), "cifar10_distill_kd",
                             "--out", str(out / "run"), "--set", f"data.root={NPZ}", "--set", "optim.epochs=2",
                             "--set", "eval.knn_every=0", "--set", f"trainer.num_workers={workers}",
                             "--set", "trainer.progress=false", "--set", f"trainer.cache_dir={out / 'cache'}"],
                            capture_output=True).returncode
        emit(bench="loader_workers", recipe="cifar10_distill_kd", epochs=2, num_workers=workers, rep=rep, rc=rc,
             seconds=round(time.perf_counter() - started, 1))
        shutil.rmtree(out, ignore_errors=True)
