"""One attempt's cost entry (runtime.jobs.cost), built when the attempt settles.

The attempt's GPU-seconds are its wall time on this instance from its claim (the ``start_attempt`` write
sent: ``RunningJob.claimed`` less that write's ``mark_running_ms``) to its settle (now, right before the
write that settles it): the instance and its GPU are held for the whole of it, whatever the attempt's
outcome. Its phases come from the attempt's own timings (ms): model load (the local cache and
``load_model``), inference (the backend call, less the encoder's share), encode (a video backend's
``encode_ms``), upload; ``other`` is the rest (claim, inputs, record writes). The price is the one
``PriceSource`` holds (runtime.worker.prices).

A batch of N jobs shares one backend call: each of its jobs counts 1/N of its span (``batch_jobs`` in its
timings), so a batch costs its call once. Pipelined attempts of one worker overlap a little (the next job is
claimed just before this one's run ends, and this one settles while the next runs): each counts its own span.
"""

from __future__ import annotations

import time
from typing import Any

from runtime.jobs.cost import attempt_entry
from runtime.worker.prices import PriceSource
from runtime.worker.running_job import RunningJob


class AttemptCoster:
    def __init__(self, prices: PriceSource) -> None:
        self._prices = prices

    def entry(self, job: RunningJob, outcome: str) -> dict[str, Any]:
        """The entry of ``job``'s attempt settling now with ``outcome``."""
        t = job.timings
        share = max(1, int(t.get("batch_jobs", 1)))
        seconds = (time.monotonic() - job.claimed + float(t.get("mark_running_ms", 0.0)) / 1000) / share
        encode = float(t.get("encode_ms", 0.0))
        phases = {"model_load": float(t.get("model_load_ms", 0.0)) / 1000 / share,
                  "inference": max(0.0, float(t.get("inference_ms", 0.0)) - encode) / 1000 / share,
                  "encode": encode / 1000 / share, "upload": float(t.get("upload_ms", 0.0)) / 1000 / share}
        price = self._prices.current()
        return attempt_entry(attempt=job.attempt.number, lease=job.attempt.lease, outcome=outcome,
                             gpu_seconds=seconds, phases=phases, instance_type=price.instance_type,
                             purchase_option=price.purchase_option, hourly_usd=price.hourly_usd,
                             price_source=price.source)
