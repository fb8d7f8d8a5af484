"""The README quotes the measured figures and documents what a user needs."""

from __future__ import annotations

from tests.pulumi_mocks import ROOT
from tools.bench import README_BEGIN, README_END


def test_readme_quotes_the_latest_benchmark_table():
    readme = (ROOT / "README.md").read_text()
    quoted = readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()
    assert quoted == (ROOT / "bench" / "results" / "latest.md").read_text().strip()


def test_readme_starts_with_the_two_commands_and_links_every_doc():
    readme = (ROOT / "README.md").read_text()
    top = readme[:1200]
    assert "make demo" in top and "make test" in top
    for doc in sorted((ROOT / "docs").glob("*.md")):
        if doc.name != "CONTRACTS.md":
            assert f"docs/{doc.name}" in readme, doc.name
