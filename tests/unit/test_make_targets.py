"""`make test` = static-check + unit + integration + e2e: every test directory runs in exactly one suite."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITES = ("UNIT_TESTS", "INTEGRATION_TESTS", "E2E_TESTS")


def _suites() -> dict[str, list[str]]:
    text = (ROOT / "Makefile").read_text()
    return {name: re.search(rf"^{name} := (.+)$", text, re.M).group(1).split() for name in SUITES}


def test_every_test_directory_is_in_exactly_one_suite():
    listed = [d for dirs in _suites().values() for d in dirs]
    assert len(listed) == len(set(listed))
    with_tests = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")}
    covered = {d for d in with_tests if any(d == s or d.startswith(s + "/") for s in listed)}
    assert covered == with_tests, f"not in any suite: {sorted(with_tests - covered)}"
    assert all((ROOT / d).is_dir() for d in listed)


def test_make_test_runs_each_part_once_and_each_part_runs_its_suite():
    dry = subprocess.run(["make", "-n", "--no-print-directory", "test", "unit", "integration", "e2e",
                          "static-check", "VENV=.venv-absent-for-dry-run"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = dry.stdout
    loop = re.search(r"for part in ([a-z0-9\- ]+); do", out)
    assert loop and loop.group(1).split() == ["static-check", "unit", "integration", "e2e"]
    for name, target in zip(SUITES, ("unit", "integration", "e2e"), strict=True):
        assert f"-m pytest {' '.join(_suites()[name])}" in out, target
    assert "tools/static_check.sh" in out
