"""CloudWatch embedded metric format (EMF) records for the shared metric names (runtime.metric_names).

Records are built and serialized by ``aws-embedded-metrics`` (its MetricsContext and LogSerializer)
and handed to a sink chosen by config ``metrics_sink``:

- ``agent``: the CloudWatch agent's EMF listener (TCP 127.0.0.1:25888, the library's AgentSink) — AWS;
- ``stdout``: one JSON line per record on stdout (journald -> CloudWatch agent log collection, local);
- ``memory``: kept in ``records`` (tests, the benchmark); ``off``: dropped.

Each record carries the dimension sets {Stack, AutoScalingGroupName} and {Stack, Backend}. Metrics are
published synchronously from the job thread (a socket write or a line; no event loop involved).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from aws_embedded_metrics.logger.metrics_context import MetricsContext
from aws_embedded_metrics.serializers.log_serializer import LogSerializer
from aws_embedded_metrics.sinks import Sink
from aws_embedded_metrics.sinks.stdout_sink import StdoutSink

from runtime import metric_names as m

log = logging.getLogger(__name__)

UNITS = {
    m.JOB_LATENCY: "Milliseconds", m.QUEUE_WAIT: "Milliseconds", m.MODEL_LOAD_TIME: "Milliseconds",
    m.INFERENCE_TIME: "Milliseconds", m.UPLOAD_TIME: "Milliseconds", m.BOOT_TO_READY: "Milliseconds",
    m.BACKEND_BUSY: "Percent", m.KAFKA_BACKLOG: "Count",
    m.MODEL_DOWNLOAD_BYTES: "Bytes", m.MODEL_DOWNLOAD_TIME: "Milliseconds", m.MODEL_SWITCH_TIME: "Milliseconds",
    m.CLOCK_OFFSET: "Seconds", m.OVERHEAD_SECONDS: "Seconds", m.OVERHEAD_COST: "None",
    m.TENANT_SPEND: "None", m.TENANT_GPU_SECONDS: "Seconds",
}


class _MemorySink(Sink):
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @staticmethod
    def name() -> str:
        return "MemorySink"

    def accept(self, context: MetricsContext) -> None:
        with self._lock:
            self.records.extend(json.loads(line) for line in LogSerializer.serialize(context) if line)


class _NullSink(_MemorySink):
    def accept(self, context: MetricsContext) -> None:
        return None


def _agent_sink(log_group: str) -> Sink:
    from aws_embedded_metrics.sinks.agent_sink import AgentSink

    return AgentSink(log_group)


class Metrics:
    """Publishes EMF records: ``emit({name: value}, properties)``."""

    def __init__(self, namespace: str = m.NAMESPACE, stack: str = "local", group: str = "local",
                 backend: str = "test-pattern", sink: str = "stdout", log_group: str = "/genai-fleet/worker") -> None:
        self.namespace = namespace
        self.dimensions = {m.DIM_STACK: stack, m.DIM_GROUP: group, m.DIM_BACKEND: backend}
        self._sink_name = sink
        self._log_group = log_group
        self._sink: Sink | None = None
        self._memory = _MemorySink() if sink == "memory" else None
        self._lock = threading.Lock()

    @property
    def records(self) -> list[dict[str, Any]]:
        return self._memory.records if self._memory is not None else []

    def _get_sink(self) -> Sink:
        if self._sink is None:
            factories = {"agent": lambda: _agent_sink(self._log_group), "stdout": StdoutSink,
                         "memory": lambda: self._memory, "off": _NullSink}
            if self._sink_name not in factories:
                raise ValueError(f"metrics sink {self._sink_name!r}: must be one of {', '.join(factories)}")
            self._sink = factories[self._sink_name]()
        return self._sink

    def set_group(self, group: str) -> None:
        self.dimensions[m.DIM_GROUP] = group

    def emit(self, values: dict[str, float], properties: dict[str, Any] | None = None,
             dimensions: dict[str, str] | None = None) -> None:
        """One EMF record with ``values`` (metric name -> value; unit from UNITS, else Count); ``dimensions`` adds
        one more set, {Stack, **dimensions} (per-tenant spend)."""
        if not values:
            return
        context = MetricsContext(namespace=self.namespace)
        dims = self.dimensions
        sets = [{m.DIM_STACK: dims[m.DIM_STACK], m.DIM_GROUP: dims[m.DIM_GROUP]},
                {m.DIM_STACK: dims[m.DIM_STACK], m.DIM_BACKEND: dims[m.DIM_BACKEND]}]
        if dimensions:
            sets.append({m.DIM_STACK: dims[m.DIM_STACK], **dimensions})
        context.set_dimensions(sets)
        for key, value in (properties or {}).items():
            context.set_property(key, value)
        for name, value in values.items():
            context.put_metric(name, float(value), UNITS.get(name, "Count"))
        try:
            with self._lock:
                self._get_sink().accept(context)
        except (OSError, ValueError) as exc:  # metrics must never fail a job
            log.warning("metrics not published: %s", exc)

    def count(self, name: str, value: float = 1, **properties: Any) -> None:
        self.emit({name: value}, properties)
