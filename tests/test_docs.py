"""The README and the documentation site: short README, reference pages that match the code, working links, and a
strict MkDocs build."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mvmr import reference

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_every_recipe_key_is_documented():
    missing = reference.undocumented()
    assert not missing, f"recipe keys without a description: {missing}"


@pytest.mark.parametrize("name", sorted(reference.PAGES))
def test_reference_pages_match_the_code(name):
    page = ROOT / "docs" / "reference" / name
    assert page.read_text() == reference.PAGES[name](), f"run python -m mvmr.reference docs/reference ({name})"


def test_the_recipe_reference_names_every_key():
    text = (ROOT / "docs" / "reference" / "recipe.md").read_text()
    for key in ("`data.augment.crop`", "`providers.NAME.bank`", "`mira.queue`", "`loss.dcor_views`",
                "`trainer.precision`", "`eval.teacher_knn`"):
        assert key in text


def test_the_cli_reference_names_every_command():
    text = (ROOT / "docs" / "reference" / "cli.md").read_text()
    for command in ("mvmr pretrain", "mvmr distill", "mvmr eval", "mvmr export", "mvmr cache build", "mvmr report",
                    "mvmr recipes list", "mvmr teachers list", "mvmr objectives"):
        assert f"## `{command}`" in text


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    links = [t for t in re.findall(r"\]\(([^)#]+)", text) if not t.startswith("http")]
    assert links
    for target in links:
        assert (ROOT / target).exists(), f"README links to a missing {target}"


def test_mkdocs_build_is_strict_and_clean(tmp_path):
    pytest.importorskip("mkdocs", reason="pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "studies" / "real-teacher" / "index.html").exists()
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "FeatureRegularizer" in api and "distance_correlation" in api
