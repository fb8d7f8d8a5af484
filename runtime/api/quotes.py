"""``POST /v1/quotes``: the expected wait and cost of a job on the fleet as it is now; no job is created.

Inputs, and where each comes from::

    service time     this model and shape's measured run time (the API's sync-wait pacer learns it from jobs
                     that finished while a request waited on them), else ``averageJobSeconds``
    running jobs     the job table's sparse ``running-by-lease`` index (a Query that counts): busy workers
    waiting jobs     the queue's visible messages, plus in-flight ones no job is running for (prefetched by a
                     worker): jobs ahead of this one. SQS only; Kafka gives no depth, so the quote says so
    price            the fleet's on-demand price (``policies/prices.json`` for its first instance type)

The wait comes from ``runtime.queueing.next_start_seconds`` with as many workers as jobs are running (at
least one): with nothing ahead and nothing running, a warm fleet starts the job at once. Cold-start odds come
from whether the workers hold the model: a hot model (``GENAI_HOT_MODELS``, ``"hot"`` in ``GET /v1/models``)
is loaded by every worker at boot, so no model load is expected (``cold_start``: "none"); for any other model a
worker may have to load it first, so ``wait_seconds.high`` adds one service time and the cost's high end the
load inside it (``cold_start``: "possible"). A fleet scaled to zero adds an instance launch the API cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.queueing import next_start_seconds


@dataclass(frozen=True)
class FleetState:
    waiting: int | None  # visible messages (None: the queue gives no depth)
    in_flight: int | None  # received, not deleted (running or prefetched)
    running: int  # jobs running now (the job table)


def quote(state: FleetState, service_s: float, service_source: str, hourly_usd: float | None,
          model_hot: bool = False) -> dict[str, Any]:
    """The quote document for a job whose run takes about ``service_s`` seconds; ``model_hot``: every worker
    holds the job's model (a hot model), so no cold start is expected."""
    cold_s = 0.0 if model_hot else service_s  # a cold start: about one more run (the model load)
    busy = state.running
    ahead = None if state.waiting is None else state.waiting + max(0, (state.in_flight or 0) - busy)
    servers = max(1, busy)
    if ahead is None:
        expected = low = high = None
    else:
        expected = next_start_seconds(ahead=ahead, busy=busy, servers=servers, service_s=service_s)
        low = next_start_seconds(ahead=ahead, busy=busy, servers=servers, service_s=service_s, residual_s=0.0)
        high = next_start_seconds(ahead=ahead, busy=busy, servers=servers, service_s=service_s,
                                  residual_s=service_s) + cold_s
    price = hourly_usd or 0.0
    low_s, high_s = service_s, service_s + cold_s  # warm; cold (model load on a worker that does not hold it)
    return {
        "wait_seconds": {"expected": expected, "low": low, "high": high},
        "gpu_seconds": {"expected": round(service_s, 3), "low": round(low_s, 3), "high": round(high_s, 3)},
        "cost_usd": {"expected": round(service_s * price / 3600, 6), "low": round(low_s * price / 3600, 6),
                     "high": round(high_s * price / 3600, 6)},
        "fleet": {"jobs_ahead": ahead, "running": busy, "workers_busy": busy},
        "basis": {"service_seconds": round(service_s, 3), "service_source": service_source,
                  "hourly_usd": hourly_usd, "cold_start": "none" if model_hot else "possible",
                  "queue": "sqs approximate counts" if ahead is not None else "no depth (kafka)"},
    }
