"""`make mutants` stays meaningful as the code moves (issue 33): every planted bug is found where the catalogue
says (by scope and text, exactly once), its tests exist, and each invariant keeps at least three mutants.
The mutation run itself is `make mutants` (minutes); this guard is in `make test` (milliseconds)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tools.mutant_catalogue import MUTANTS, Mutant
from tools.mutants import MutantNotFoundError, mutate

ROOT = Path(__file__).resolve().parents[2]
INVARIANTS = ("leases", "idempotency", "ack-order", "auth", "size-limits")


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_every_mutant_is_found_once_and_changes_the_code(mutant):
    source = (ROOT / mutant.path).read_text()
    assert mutate(source, mutant) != source
    for target in mutant.tests:
        assert (ROOT / target.split("::")[0]).is_file(), target


def test_names_are_unique_and_each_invariant_has_three_mutants_or_more():
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
    groups = Counter(m.group for m in MUTANTS)
    assert {g: groups[g] for g in INVARIANTS if groups[g] < 3} == {}


def test_a_mutant_whose_text_moved_or_repeats_fails_loudly():
    source = "X = 1\n\n\nclass A:\n    def f(self):\n        return 1 + 1\n"
    ok = Mutant("m", "g", "x.py", "A.f", "return 1 + 1", "return 1 - 1", (), "")
    assert "return 1 - 1" in mutate(source, ok)
    assert mutate(source, Mutant("n", "g", "x.py", "X", "1", "2", (), "")).startswith("X = 2")
    with pytest.raises(MutantNotFoundError, match="occurs 2 times"):
        mutate(source, Mutant("r", "g", "x.py", "A.f", "1", "2", (), ""))
    with pytest.raises(MutantNotFoundError, match="occurs 0 times"):
        mutate(source, Mutant("z", "g", "x.py", "A.f", "return 2", "return 3", (), ""))
    with pytest.raises(MutantNotFoundError, match=r"no 'A\.g'"):
        mutate(source, Mutant("s", "g", "x.py", "A.g", "x", "y", (), ""))
