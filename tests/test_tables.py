"""The documentation's result tables are generated from benchmarks/results.jsonl: a table edited by hand, or a
result line whose table was not regenerated, fails here."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import tables  # noqa: E402


def test_every_table_equals_what_the_result_lines_give():
    rows = tables.lines()
    for page in tables.PAGES:
        text = page.read_text()
        assert tables.BLOCK.search(text), f"{page.name} has no generated table"
        assert tables.render(text, rows) == text, f"{page.name}: tables out of date; run python benchmarks/tables.py"


def test_a_rerun_replaces_its_row():
    rows = [{"bench": "quickstart_distill", "seed": 0, "knn_top1": 1.0, "knn_top1_at_init": 0.5,
             "teacher_knn_top1": 2.0, "minutes": 1.0},
            {"bench": "quickstart_distill", "seed": 0, "knn_top1": 3.0, "knn_top1_at_init": 0.5,
             "teacher_knn_top1": 2.0, "minutes": 1.0}]
    table = tables.quickstart_distill(rows)
    assert "| 0 | 3.00 |" in table and "1.00 | 0.50" not in table
