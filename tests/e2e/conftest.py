"""Fixtures of the end-to-end tests: local mode started per test, always stopped in teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetdev.local.platform import LocalOptions, LocalPlatform
from tests.e2e._helpers import REPORTS


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def start_platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., LocalPlatform]]:
    """``start_platform(workers=2, queue_kind="sqs", ...)`` -> a started LocalPlatform (LocalOptions fields).

    Every platform started through it is stopped at teardown, whatever the test did; when the test
    failed, the tail of each child's log is printed (the run directory stays under tmp_path).
    """
    started: list[LocalPlatform] = []

    def start(**options: Any) -> LocalPlatform:
        platform = LocalPlatform(LocalOptions(run_dir=tmp_path / f"run-{len(started)}", stop_grace_seconds=8,
                                              **options))
        started.append(platform)
        return platform.start()

    try:
        yield start
    finally:
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        for platform in started:
            if failed:
                for log_file in sorted(platform.run_dir.glob("*.log")):
                    lines = log_file.read_text(errors="replace").splitlines()[-15:]
                    print(f"--- {log_file} (last {len(lines)} lines) ---\n" + "\n".join(lines))
            platform.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTS:
        terminalreporter.section("local-mode drill reports")
        for line in REPORTS:
            terminalreporter.write_line(line)
