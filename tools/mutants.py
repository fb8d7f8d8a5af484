"""``make mutants``: plant one-line bugs in the invariant code, one at a time, and run the tests meant to catch each.

Each mutant in tools/mutant_catalogue.py names a file, a scope (``Class.method``, a function, or a module-level
name such as ``TABLE``), an exact text that must occur exactly once inside that scope, its replacement, and the
tests that must fail with it. Locating by scope and text (not line numbers) means a refactor that moves the code
keeps the mutant, and one that removes or duplicates the text makes the run fail loudly ("not found") instead of
dropping the mutant in silence.

The mutants are planted in a scratch copy of the working tree (``git ls-files``: tracked and untracked, not
ignored), never in the tree itself, and the copy is put first on ``PYTHONPATH`` so its code is the one imported.
The targeted tests first run once unmutated (they must pass, or every mutant would look killed). Then each
mutant: killed (its tests failed), survived (they passed: a gap in the tests), or error (pytest could not run
them: collection error or timeout). Exit 0 only when every mutant was killed.

    python -m tools.mutants                 # all mutants
    python -m tools.mutants --only auth-secret-not-compared ack-before-final-write
    python -m tools.mutants --list
"""

from __future__ import annotations

import argparse
import ast
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools.mutant_catalogue import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[1]
PER_MUTANT_TIMEOUT_S = 600


class MutantNotFoundError(Exception):
    """A mutant's scope or text is not where the catalogue says (the code moved or changed): fix the catalogue."""


@dataclass
class Result:
    mutant: Mutant
    verdict: str  # killed | survived | error
    seconds: float
    detail: str = ""


def scope_span(source: str, scope: str, path: str) -> tuple[int, int]:
    """(start, end) character offsets of ``scope`` in ``source``: a dotted class/function path, or a
    module-level assigned name."""
    tree = ast.parse(source)
    parts = scope.split(".")
    body: list[ast.stmt] = tree.body
    node: ast.AST | None = None
    for part in parts:
        node = None
        for stmt in body:
            named = isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and stmt.name == part
            assigned = (len(parts) == 1 and isinstance(stmt, (ast.Assign, ast.AnnAssign))
                        and part in _assigned_names(stmt))
            if named or assigned:
                node = stmt
        if node is None:
            raise MutantNotFoundError(f"{path}: no {scope!r} (missing {part!r})")
        body = getattr(node, "body", [])
    lines = source.splitlines(keepends=True)
    start = sum(len(line) for line in lines[: node.lineno - 1])
    end = sum(len(line) for line in lines[: node.end_lineno])
    return start, end


def _assigned_names(stmt: ast.Assign | ast.AnnAssign) -> set[str]:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    return {t.id for t in targets if isinstance(t, ast.Name)}


def mutate(source: str, mutant: Mutant) -> str:
    """``source`` with the mutant planted; MutantNotFoundError unless its text occurs exactly once in its scope."""
    start, end = scope_span(source, mutant.scope, mutant.path)
    segment = source[start:end]
    count = segment.count(mutant.find)
    if count != 1:
        raise MutantNotFoundError(f"{mutant.name}: {mutant.find!r} occurs {count} times in "
                                  f"{mutant.path}:{mutant.scope}")
    mutated = source[:start] + segment.replace(mutant.find, mutant.replace) + source[end:]
    ast.parse(mutated)  # a mutant is a bug, never a syntax error
    return mutated


def _copy_tree(dest: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _pytest(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int | None, str]:
    env = {**os.environ, "PYTHONPATH": str(copy) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    try:
        done = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f}s"
    return done.returncode, (done.stdout + done.stderr)[-1500:]


_print = functools.partial(print, flush=True)


def run(mutants: list[Mutant], out: Callable[[str], None] = _print) -> list[Result]:
    """Plant each mutant in a scratch copy, run its tests, restore; the results in catalogue order."""
    for mutant in mutants:  # every mutant must be locatable before anything runs
        mutate((ROOT / mutant.path).read_text(), mutant)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="genai-mutants-") as tmp:
        copy = Path(tmp)
        _copy_tree(copy)
        baseline = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
        code, tail = _pytest(copy, baseline, PER_MUTANT_TIMEOUT_S * 2)
        if code != 0:
            raise SystemExit(f"mutants: the targeted tests fail without any mutant (exit {code}):\n{tail}")
        out(f"mutants: baseline green ({len(baseline)} test targets)")
        for mutant in mutants:
            target = copy / mutant.path
            original = target.read_text()
            target.write_text(mutate(original, mutant))
            t0 = time.monotonic()
            try:
                code, tail = _pytest(copy, mutant.tests, PER_MUTANT_TIMEOUT_S)
            finally:
                target.write_text(original)
            verdict = "killed" if code == 1 else "survived" if code == 0 else "error"
            result = Result(mutant, verdict, time.monotonic() - t0, "" if verdict == "killed" else tail)
            results.append(result)
            out(f"  {verdict:8} {mutant.name:44} {result.seconds:5.1f}s  {mutant.path}:{mutant.scope}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutants only")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    names = {m.name for m in MUTANTS}
    unknown = sorted(set(args.only or ()) - names)
    if unknown:
        parser.error(f"unknown mutant(s) {unknown}; --list shows them")
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.group:12} {m.name:44} {m.path}:{m.scope}  ({m.why})")
        return 0
    t0 = time.monotonic()
    results = run(chosen)
    survivors = [r for r in results if r.verdict != "killed"]
    for r in survivors:
        print(f"\n{r.verdict.upper()}: {r.mutant.name} ({r.mutant.why})\n  {r.mutant.path}:{r.mutant.scope}: "
              f"{r.mutant.find!r} -> {r.mutant.replace!r}\n  tests: {' '.join(r.mutant.tests)}\n{r.detail}")
    print(f"mutants: {len(results) - len(survivors)} killed, {sum(r.verdict == 'survived' for r in results)} "
          f"survived, {sum(r.verdict == 'error' for r in results)} errors in {time.monotonic() - t0:.0f}s")
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())
