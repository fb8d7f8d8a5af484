"""Tests that cannot pass vacuously (issue 33, finding 8): a check inside a loop over ``of_type(...)`` (or an
``all(...)`` over it) passes when the type token changes and the list is empty, so component tests loop over
``component_harness.each``, which fails on an empty list. Read from the source, like the layering test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fleetdev.pulumi_mocks import Recording
from tests.unit.component_harness import each

TESTS = Path(__file__).resolve().parents[1]


def _is_of_type(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "of_type"


def _vacuous_loops(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and _is_of_type(node.iter):
            lines.append(node.lineno)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "all"
                and node.args and isinstance(node.args[0], ast.GeneratorExp)
                and any(_is_of_type(g.iter) for g in node.args[0].generators)):
            lines.append(node.lineno)
    return lines


def test_no_test_checks_only_inside_a_loop_over_of_type():
    found = {str(p.relative_to(TESTS)): lines for p in sorted(TESTS.rglob("*.py"))
             if (lines := _vacuous_loops(ast.parse(p.read_text(), filename=str(p))))}
    assert found == {}, "loop over component_harness.each(built, TOKEN) instead (it fails when there are none)"


def test_the_scan_sees_both_shapes():
    sample = "for r in built.of_type(T):\n    assert r\nassert all(r for r in x.of_type(T))\n"
    assert _vacuous_loops(ast.parse(sample)) == [1, 3]
    assert _vacuous_loops(ast.parse("for r in each(built, T):\n    assert r\n")) == []


def test_each_fails_on_a_type_nothing_declared():
    with pytest.raises(AssertionError, match="aws:sqs/queue:Queue"):
        each(Recording(resources=[], exports={}, calls=[]), "aws:sqs/queue:Queue")
