"""`mvmr report`: PNG figures of the expected size from real runs, and a table whose numbers are summary.json's."""
from __future__ import annotations

import json
import sys

import pytest
import yaml


RECIPE = {
    "method": "mvmr", "data": {"name": "digits", "image_size": 16, "limit": 32},
    "student": {"backbone": "resnet18", "projector": "32-16"},
    "providers": {"pixels": {"weight": 1.0}, "lsd": {"weight": 0.5}},
    "optim": {"batch_size": 8, "epochs": 2, "warmup_epochs": 0},
    "trainer": {"num_workers": 0, "progress": False, "precision": "fp32", "log_every": 1},
    "eval": {"knn_every": 1, "limit": 40},
}


def test_report_draws_runs_and_tabulates_their_summaries(tmp_path, run_main):
    pytest.importorskip("matplotlib")
    from PIL import Image

    runs = []
    for name, lr in [("a", 1e-3), ("b", 1e-4)]:
        tree = {**RECIPE, "optim": {**RECIPE["optim"], "lr": lr},
                "trainer": {**RECIPE["trainer"], "cache_dir": str(tmp_path / "cache")}}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(tree))
        code, out, err = run_main("pretrain", tmp_path / f"{name}.yaml", "--out", tmp_path / name)
        assert code == 0, err
        assert f"mvmr report {tmp_path / name}" in out
        runs.append(tmp_path / name)
    code, out, err = run_main("report", *runs, "--out", tmp_path / "figs")
    assert code == 0, err
    for name in ("terms.png", "dcor.png", "knn.png", "throughput.png"):
        path = tmp_path / "figs" / name
        assert path.stat().st_size > 5000
        with Image.open(path) as img:
            assert img.size == (800, 500)
    rows = [line for line in out.splitlines() if line.startswith("| a ") or line.startswith("| b ")]
    assert len(rows) == 2
    for row, run in zip(rows, runs):
        cells = [c.strip() for c in row.strip("|").split("|")]
        summary = json.loads((run / "summary.json").read_text())
        assert cells[1] == "mvmr" and int(cells[2]) == summary["epochs_completed"] == 2
        assert float(cells[3]) == round(summary["knn_top1"], 2)
        assert float(cells[4]) == round(summary["knn_top1_at_init"], 2)
        assert float(cells[5]) == round(summary["minutes"], 1)


def test_report_without_matplotlib_is_one_line(tmp_path, run_main, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run_main("report", tmp_path / "run", "--out", tmp_path / "figs")
    assert code == 2 and err.strip() == "error: mvmr report needs matplotlib: pip install 'mvmr[report]'"
    assert not (tmp_path / "figs").exists()


def test_report_on_a_folder_that_is_no_run(tmp_path, run_main):
    code, out, err = run_main("report", tmp_path)
    assert code == 2 and "is not a run folder" in err


def test_a_truncated_last_metrics_line_is_skipped_and_the_rest_reported(tmp_path):
    """A run still writing, or killed mid-line: the records before the cut are read, the cut line is dropped."""
    from mvmr.report import load_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.5}\n{"step": 3, "lo')
    (run / "summary.json").write_text(json.dumps({"knn_top1": 50.0}))
    loaded = load_run(run)
    assert [r["step"] for r in loaded["records"]] == [1, 2] and loaded["summary"]["knn_top1"] == 50.0


@pytest.mark.parametrize("bad,named", [('{"knn_top1": 50.0}', "without an integer 'epoch'"),
                                       ('{"step": 2, "loss": 0.5, "dcor/pixels": null}', "'dcor/pixels' is null")])
def test_a_record_a_figure_cannot_draw_is_named_and_the_report_is_drawn(tmp_path, run_main, bad, named):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(f'{{"step": 1, "loss": 1.0, "dcor/pixels": 0.5}}\n{bad}\n'
                                       f'{{"epoch": 1, "step": 2, "knn_top1": 40.0}}\n')
    code, out, err = run_main("report", run, "--out", tmp_path / "figs")
    assert code == 0 and named in err and "line 2" in err and "Traceback" not in err, err
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["dcor.png", "knn.png", "terms.png",
                                                                       "throughput.png"]
