"""Import layering, read from the source: the runtime stands alone, tooling stays out of it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".venv", ".build", ".git", "node_modules", "venv"}


def _python_files(top: str) -> list[Path]:
    return [p for p in (ROOT / top).rglob("*.py") if not SKIP & set(p.relative_to(ROOT).parts)]


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    return roots


@pytest.mark.parametrize(("top", "forbidden"), [
    ("runtime", {"fleetdev", "tests", "components", "tools", "bench", "planner", "pulumi", "pulumi_aws"}),
    ("components", {"fleetdev", "tests", "tools", "bench"}),
    ("fleetdev", {"tests"}),
    ("tools", {"tests"}),
    ("bench", {"tests"}),
    ("planner", {"tests", "fleetdev"}),
])
def test_layers_import_only_downwards(top, forbidden):
    wrong = {str(p.relative_to(ROOT)): sorted(_imported_roots(p) & forbidden) for p in _python_files(top)}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_no_sys_path_edits_anywhere():
    """Imports resolve through the editable install (or, in subprocesses, PYTHONPATH), never a path edit."""
    offenders = []
    for top in ("runtime", "components", "fleetdev", "tools", "bench", "planner", "policies", "tests"):
        for path in _python_files(top):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_policy_package_has_one_import_root():
    users = [p for top in ("tools", "planner", "tests", "policies") for p in _python_files(top)]
    assert not [str(p.relative_to(ROOT)) for p in users if "policies.genai_policies" in p.read_text()
                and p.name != "test_layering.py"]
