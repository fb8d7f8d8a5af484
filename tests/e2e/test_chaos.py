"""The representative subset of ``make chaos`` (tools/chaos.py) that runs in ``make test``: one scenario of each
fault class (process death, spot drain, frozen process, AWS outage, slow receiver, clock skew, shared cache).
Each starts local mode with a supervisor, injects its fault and audits the local AWS's state (zero lost, zero
stuck, zero overwritten, one final write per job, the DLQ drained, the scenario's own checks). The full set:
``make chaos``."""

from __future__ import annotations

import pytest

from tests.e2e._helpers import REPORTS
from tools.chaos import FAULT_CLASSES, SCENARIOS, run_scenario

pytestmark = [pytest.mark.e2e]

SUBSET = ["frozen-worker", "worker-killing-job", "spot-handbacks-to-dlq", "hanging-webhook", "outputs-bucket-missing",
          "clock-skew", "shared-model-cache"]


def test_every_scenario_names_a_fault_class_and_the_subset_covers_each():
    assert {name: sc.fault for name, sc in SCENARIOS.items() if sc.fault not in FAULT_CLASSES} == {}
    assert {SCENARIOS[name].fault for name in SUBSET} == set(FAULT_CLASSES)


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBSET)
def test_chaos_scenario(name: str, tmp_path) -> None:
    outcome = run_scenario(name, tmp_path / name)
    print(outcome.line())
    REPORTS.append(outcome.line())
    assert outcome.passed, outcome.problems
