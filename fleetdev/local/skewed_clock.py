"""Run a Python module with this process's wall clock moved by a fixed offset (chaos: clock skew).

    python -m fleetdev.local.skewed_clock -90 runtime.worker run --config worker-0.json

``time.time`` is replaced before the module is imported, so everything that reads wall time through it
(the job store's clock, logging, botocore's retry timers) runs ``offset`` seconds off, as on a host whose
time sync broke; the monotonic clock is untouched, as on such a host.
"""

from __future__ import annotations

import runpy
import sys
import time


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m fleetdev.local.skewed_clock OFFSET_SECONDS MODULE [ARGS...]")
    offset, module = float(argv[0]), argv[1]
    real = time.time
    time.time = lambda: real() + offset  # type: ignore[assignment]
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
