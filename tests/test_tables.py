"""The documentation's result tables are generated from benchmarks/results.jsonl: a table edited by hand, or a
result line whose table was not regenerated, fails here."""
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import tables  # noqa: E402


def test_every_table_equals_what_the_result_lines_give():
    rows = tables.lines()
    pages_with_tables = 0
    for page in tables.pages():
        text = page.read_text()
        pages_with_tables += bool(tables.BLOCK.search(text))
        assert tables.render(text, rows) == text, f"{page.name}: tables out of date; run python benchmarks/tables.py"
    assert pages_with_tables >= 9  # the README's results at a glance and every study page


def test_every_study_page_holds_a_generated_table():
    for page in sorted((tables.DOCS / "studies").glob("*.md")):
        assert tables.BLOCK.search(page.read_text()), f"{page.name} has no generated table"


def test_every_table_is_used_and_every_used_name_exists():
    used = {m.group("name") for page in tables.pages() for m in tables.BLOCK.finditer(page.read_text())}
    assert used == set(tables.TABLES), f"tables without a page: {set(tables.TABLES) - used}"


def test_a_rerun_replaces_its_row():
    rows = [{"bench": "quickstart_distill", "seed": 0, "knn_top1": 1.0, "knn_top1_at_init": 0.5,
             "teacher_knn_top1": 2.0, "minutes": 1.0, "_line": 1},
            {"bench": "quickstart_distill", "seed": 0, "knn_top1": 3.0, "knn_top1_at_init": 0.5,
             "teacher_knn_top1": 2.0, "minutes": 1.0, "_line": 2}]
    table = tables.quickstart_distill(rows)
    assert "| 0 | 3.00 |" in table and "1.00 | 0.50" not in table


def test_a_row_without_its_line_is_an_error_not_a_silent_gap():
    runs = tables.Runs("demo", [("a", {"variant": "a"}), ("b", {"variant": "b"})],
                       [tables.Col("k-NN", tables.per_seed("knn"))])
    rows = [{"bench": "demo", "variant": "a", "seed": 0, "knn": 1.0, "_line": 1}]
    with pytest.raises(SystemExit, match="table row 'b'"):
        runs(rows)


def test_seeds_keep_their_place():
    runs = tables.Runs("demo", [("a", {"variant": "a"})], [tables.Col("k-NN", tables.per_seed("knn"))])
    rows = [{"bench": "demo", "variant": "a", "seed": 1, "knn": 2.5, "_line": 1}]
    assert "| a | – / 2.5 |" in runs(rows)


def test_unused_lines_are_listed():
    rows = tables.lines() + [{"bench": "nobody_reads_this", "_line": 10**6}]
    assert [r["_line"] for r in tables.unused(rows)][-1] == 10**6


def test_the_figures_draw_from_the_same_lines(tmp_path):
    pytest.importorskip("matplotlib")
    import figures

    figures.main([str(tmp_path)])
    for name in ("real_teacher.png", "objective_ratios.png"):
        assert (tmp_path / name).stat().st_size > 10_000
        assert (tables.DOCS / "studies" / "img" / name).exists()


def prose_and_tables(text: str) -> tuple[str, str]:
    """A page split into its hand-written prose (no generated blocks, code or image captions) and its generated
    blocks."""
    generated = "\n".join(m.group("body") for m in tables.BLOCK.finditer(text))
    prose = tables.BLOCK.sub("", text)
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)
    prose = re.sub(r"`[^`]*`", "", prose)
    prose = re.sub(r"\(https?://[^)]*\)|arXiv:\S+", "", prose)  # links and references are not measurements
    prose = re.sub(r"\*\*Setting\.\*\*.*?\n\n", "", prose, flags=re.S)  # settings, not measurements
    prose = re.sub(r"(?:[=≈<>]|weight|scale|lr|T =|τ|α =) ?\d+\.\d+", "", prose)  # a setting's value
    return prose, generated


def test_prose_quotes_only_numbers_of_a_generated_table_on_its_page():
    """A measured number (one with decimals) in a page's prose must appear in a generated table of that page."""
    for page in [tables.ROOT / "README.md", *sorted((tables.DOCS / "studies").glob("*.md"))]:
        prose, generated = prose_and_tables(page.read_text())
        shown = set(re.findall(r"(?<![\w.])\d+\.\d+", generated))
        quoted = set(re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", prose))
        assert quoted <= shown, f"{page.name} quotes {sorted(quoted - shown)} outside its generated tables"


def test_a_typed_number_is_caught():
    text = ("**Setting.** lr 0.5, T = 0.07.\n\n<!-- table:x -->\n| a | 61.5 |\n<!-- /table -->\n\n"
            "It reaches 61.5, and 62.35 elsewhere.\n")
    prose, generated = prose_and_tables(text)
    quoted = set(re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", prose))
    assert quoted == {"61.5", "62.35"} and "61.5" in generated and "62.35" not in generated
