"""The console script: version, provider listing, one-line errors."""
import subprocess
import sys

import mvmr


def _run(*args):
    return subprocess.run([sys.executable, "-m", "mvmr", *args], capture_output=True, text=True)


def test_version():
    out = _run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"mvmr {mvmr.__version__}"


def test_extractors_list_reports_sizes():
    out = _run("extractors", "list", "--image-size", "32")
    assert out.returncode == 0
    rows = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.count("│") >= 4}
    for name in ("pixels", "augmented_pixels", "hog", "lsd", "scatnet"):
        assert name in rows
    assert "3,072" in rows["pixels"] and "15,552" in rows["scatnet"] and " no " in rows["augmented_pixels"]
