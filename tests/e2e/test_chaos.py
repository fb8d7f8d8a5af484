"""The short subset of ``make chaos`` (tools/chaos.py) that runs in ``make test``: each scenario starts local
mode with a supervisor, injects its fault and audits the local AWS's state (zero lost, zero stuck, zero
overwritten, the scenario's own checks). The full set: ``make chaos``."""

from __future__ import annotations

import pytest

from tests.e2e._helpers import REPORTS
from tools.chaos import run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.parametrize("name", ["frozen-worker", "worker-killing-job", "spot-handbacks-to-dlq",
                                  "hanging-webhook"])
def test_chaos_scenario(name: str, tmp_path) -> None:
    outcome = run_scenario(name, tmp_path / name)
    print(outcome.line())
    REPORTS.append(outcome.line())
    assert outcome.passed, outcome.problems
