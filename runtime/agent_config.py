"""The worker agent's configuration file: the one place that parses it.

The launch template's user data writes ``/etc/genai-fleet/agent.json`` from the stack's outputs;
local mode writes one per agent. Endpoint overrides (``endpoints``) point the same code at moto,
a fake IMDS or local backends: tests and local mode swap endpoints, not code paths.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime import instance_contract

DEFAULT_PATH = instance_contract.CONFIG_PATH
BACKENDS = ("comfyui", "a1111", "diffusers", "neuron", "test-pattern")


class AgentConfigError(ValueError):
    """The agent config file is missing, unreadable or has a bad value (message names the key)."""


@dataclass(frozen=True)
class QueueConfig:
    kind: str  # sqs | kafka
    url: str | None = None  # SQS queue URL
    max_receive_count: int = 3
    visibility_timeout_seconds: int = 360
    wait_time_seconds: int = 20  # SQS long polling
    bootstrap_servers: str | None = None  # Kafka
    topic: str = "genai-jobs"
    group_id: str = "genai-workers"
    kafka_iam_auth: bool = True  # MSK IAM (SASL/OAUTHBEARER); false for the local mock cluster
    kafka_session_timeout_ms: int = 45000  # static members keep their partitions this long after a crash


@dataclass(frozen=True)
class OutputsConfig:
    bucket: str
    cdn_base_url: str  # e.g. https://d111111abcdef8.cloudfront.net (local mode: http://127.0.0.1:PORT)
    prefix: str = "outputs"


@dataclass(frozen=True)
class ModelCacheConfig:
    store_bucket: str | None = None
    manifest_key: str = "manifest.json"
    cache_dir: str = instance_contract.MODEL_CACHE_DIR  # instance-store NVMe mount when the type has one
    max_cache_bytes: int = 200 * 1024**3


@dataclass(frozen=True)
class LifecycleConfig:
    launching_hook: str | None = None
    terminating_hook: str | None = None
    imds_url: str = "http://169.254.169.254"
    poll_seconds: float = 5.0
    imds_enabled: bool = True  # false: no IMDS (local mode without the fake IMDS); worker_id must be set
    auto_scaling_group: str | None = None  # else read from IMDS tags, else DescribeAutoScalingInstances
    drain_margin_seconds: float = 15.0  # kept free before a spot deadline for upload, record and hook


@dataclass(frozen=True)
class AgentConfig:
    stack: str
    region: str
    queue: QueueConfig
    job_table: str
    outputs: OutputsConfig
    backend: str
    backend_url: str | None = None  # ComfyUI / A1111 base URL on localhost
    model_cache: ModelCacheConfig = field(default_factory=ModelCacheConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    hot_models: tuple[str, ...] = ()
    max_job_seconds: int = 300
    metrics_namespace: str = "GenAIFleet"
    allow_loopback_urls: bool = False  # local mode only; never on AWS
    endpoints: dict[str, str] = field(default_factory=dict)  # service name -> endpoint URL (moto, local)
    test_pattern_delay_seconds: float = 0.5
    backend_model_dir: str | None = None  # where ComfyUI / A1111 load checkpoints from (cache links there)
    heartbeat_file: str | None = None  # touched while the agent is healthy (instance_contract.HEARTBEAT_FILE)
    backend_ready_timeout_seconds: int = 600  # readiness wait at boot and after a backend crash
    retry_delay_seconds: int = 5  # a failed attempt becomes visible again after this long
    cancel_poll_seconds: float = 2.0  # how often a running job's cancel flag is read
    metrics_sink: str = "agent"  # agent (CloudWatch agent EMF socket) | stdout | memory | off
    metrics_log_group: str = "/genai-fleet/worker"  # log group the CloudWatch agent writes EMF records to
    worker_id: str | None = None  # default: the EC2 instance id from IMDS
    diffusers: dict[str, Any] = field(default_factory=dict)  # diffusers backend options (backends/diffusers_options)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def _require(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data or data[key] in (None, ""):
        raise AgentConfigError(f"{where}{key} is required")
    return data[key]


def parse(data: dict[str, Any]) -> AgentConfig:
    """Validate a decoded config document; errors name the key and what is allowed."""
    if not isinstance(data, dict):
        raise AgentConfigError("agent config must be a JSON object")
    try:
        q = dict(_require(data, "queue", ""))
        kind = _require(q, "kind", "queue.")
        if kind not in ("sqs", "kafka"):
            raise AgentConfigError(f"queue.kind = {kind!r}: must be one of sqs, kafka")
        if kind == "sqs":
            _require(q, "url", "queue.")
        else:
            _require(q, "bootstrap_servers", "queue.")
        backend = _require(data, "backend", "")
        if backend not in BACKENDS:
            raise AgentConfigError(f"backend = {backend!r}: must be one of {', '.join(BACKENDS)}")
        if backend in ("comfyui", "a1111"):
            _require(data, "backend_url", "")
        outputs = dict(_require(data, "outputs", ""))
        _require(outputs, "bucket", "outputs.")
        _require(outputs, "cdn_base_url", "outputs.")
        max_job = int(data.get("max_job_seconds", 300))
        if not 10 <= max_job <= 3600:
            raise AgentConfigError(f"max_job_seconds = {max_job}: must be from 10 to 3600")
        return AgentConfig(
            stack=_require(data, "stack", ""),
            region=_require(data, "region", ""),
            queue=QueueConfig(**q),
            job_table=_require(data, "job_table", ""),
            outputs=OutputsConfig(**outputs),
            backend=backend,
            backend_url=data.get("backend_url"),
            model_cache=ModelCacheConfig(**data.get("model_cache", {})),
            lifecycle=LifecycleConfig(**data.get("lifecycle", {})),
            hot_models=tuple(data.get("hot_models", ())),
            max_job_seconds=max_job,
            metrics_namespace=data.get("metrics_namespace", "GenAIFleet"),
            allow_loopback_urls=bool(data.get("allow_loopback_urls", False)),
            endpoints=dict(data.get("endpoints", {})),
            test_pattern_delay_seconds=float(data.get("test_pattern_delay_seconds", 0.5)),
            diffusers=_diffusers_options(data),
            **_worker_options(data),
        )
    except TypeError as exc:  # unknown key in a nested section
        raise AgentConfigError(f"agent config has an unknown or misspelt key: {exc}") from exc


_WORKER_OPTIONS: dict[str, Any] = {
    "backend_model_dir": None, "backend_ready_timeout_seconds": int, "retry_delay_seconds": int,
    "cancel_poll_seconds": float, "metrics_sink": str, "worker_id": None, "metrics_log_group": str,
    "heartbeat_file": None,
}
METRICS_SINKS = ("agent", "stdout", "memory", "off")


def _worker_options(data: dict[str, Any]) -> dict[str, Any]:
    """The optional agent-behaviour keys, converted; absent keys keep their defaults."""
    out: dict[str, Any] = {}
    for key, convert in _WORKER_OPTIONS.items():
        if data.get(key) is not None:
            try:
                out[key] = convert(data[key]) if convert else str(data[key])
            except (TypeError, ValueError) as exc:
                raise AgentConfigError(f"{key} = {data[key]!r}: {exc}") from exc
    if out.get("metrics_sink", "agent") not in METRICS_SINKS:
        raise AgentConfigError(f"metrics_sink = {out['metrics_sink']!r}: must be one of {', '.join(METRICS_SINKS)}")
    return out


def _diffusers_options(data: dict[str, Any]) -> dict[str, Any]:
    """The ``diffusers`` block, checked now so a typo fails the boot, not the first job."""
    from runtime.backends.diffusers_options import DiffusersOptions, OptionsError

    raw = data.get("diffusers") or {}
    if not isinstance(raw, dict):
        raise AgentConfigError("diffusers must be an object of diffusers backend options")
    try:
        DiffusersOptions.from_mapping(raw)
    except (OptionsError, TypeError, ValueError) as exc:
        raise AgentConfigError(str(exc)) from exc
    return dict(raw)


def load(path: str | os.PathLike[str] | None = None) -> AgentConfig:
    """Read the config file (``GENAI_AGENT_CONFIG`` or the default path)."""
    file = Path(path or os.environ.get("GENAI_AGENT_CONFIG", DEFAULT_PATH))
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError as exc:
        raise AgentConfigError(f"agent config {file} not found; the launch template writes it") from exc
    except json.JSONDecodeError as exc:
        raise AgentConfigError(f"agent config {file} is not valid JSON: {exc}") from exc
    return parse(data)
