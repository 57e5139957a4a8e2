"""The docs: every relative link and image in README.md and docs/ points to a file that exists."""

import re
import sys

import pytest

from helpers import ROOT

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def relative_links(text):
    """The targets of the markdown links and images that are not web addresses or anchors of the same page."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold commands, not links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_point_to_files(page):
    missing = [t for t in relative_links(page.read_text()) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_the_link_finder_sees_links_and_skips_the_rest():
    text = "[a](docs/a.md) ![b](b.png) [web](https://x.org) [here](#top) [c](c.md#part)\n```\n[d](d.md)\n```"
    assert relative_links(text) == ["docs/a.md", "b.png", "c.md#part"]


def test_every_script_has_its_page_with_the_same_sections():
    sections = ["## Usage", "## Logged metrics", "## Implementation details", "## Deviations from the paper", "## Results"]
    for script in sorted(ROOT.glob("*.py")):
        page = (ROOT / "docs" / f"{script.stem}.md").read_text()
        assert [s for s in sections if s in page] == sections, script.name
        assert [page.index(s) for s in sections] == sorted(page.index(s) for s in sections), script.name


def test_every_experiment_has_its_row_in_the_benchmark_page():
    sys.path.insert(0, str(ROOT / "benchmark"))
    from experiments import EXPERIMENTS

    rows = re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "benchmark.md").read_text(), flags=re.M)
    assert sorted(rows) == sorted(EXPERIMENTS), "docs/benchmark.md's table and benchmark/experiments.py differ"
