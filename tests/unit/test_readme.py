"""The README quotes the measured figures and documents what a user needs."""

from __future__ import annotations

from fleetdev.pulumi_mocks import ROOT
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


def test_every_make_target_the_docs_name_exists():
    """A merge once dropped the deploy and planner targets while the README still named them."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    makefile = (root / "Makefile").read_text()
    defined = set(re.findall(r"^([a-z][a-z0-9-]*)(?:\s[^=\n]*)?:(?!=)", makefile, flags=re.M))
    docs = [root / "README.md", root / ".github" / "workflows" / "preview.yml", *(root / "docs").glob("*.md")]
    command = r"(?:^\s*|`|run: |&& )make ([a-z][a-z0-9-]*)"  # commands in code, not the word in prose
    named = {t for f in docs for t in re.findall(command, f.read_text(), flags=re.M)}
    assert named and named <= defined, sorted(named - defined)
