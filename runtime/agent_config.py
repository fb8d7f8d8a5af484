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
from runtime.backends.base import NAMES as BACKENDS
from runtime.jobs.time_limits import job_time_limit, longest_time_limit, parse_task_limits
from runtime.queue_names import KAFKA_GROUP, KAFKA_TOPIC

DEFAULT_PATH = instance_contract.CONFIG_PATH


class AgentConfigError(ValueError):
    """The agent config file is missing, unreadable or has a bad value (message names the key)."""


@dataclass(frozen=True)
class GroupQueueConfig:
    """Model affinity (runtime.queues.affinity): the queue of one model group."""

    name: str
    models: tuple[str, ...]
    url: str | None = None  # SQS queue URL of the group
    topic: str | None = None  # Kafka topic of the group


@dataclass(frozen=True)
class QueueConfig:
    kind: str  # sqs | kafka
    url: str | None = None  # SQS queue URL
    max_receive_count: int = 3
    visibility_timeout_seconds: int = 360
    wait_time_seconds: int = 20  # SQS long polling
    bootstrap_servers: str | None = None  # Kafka
    topic: str = KAFKA_TOPIC
    group_id: str = KAFKA_GROUP
    kafka_iam_auth: bool = True  # MSK IAM (SASL/OAUTHBEARER); false for the local mock cluster
    kafka_session_timeout_ms: int = 45000  # static members keep their partitions this long after a crash
    groups: tuple[GroupQueueConfig, ...] = ()  # model groups with a queue each; other models use url / topic
    affinity_max_wait_seconds: float = 60.0  # a group's backlog older than this wins over the loaded model
    affinity_switch_after_seconds: float = 20.0  # a worker holding a model leaves younger backlogs to holders
    affinity_idle_switch_seconds: float = 13.0  # a worker idle this long takes any group's backlog at once


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
class PricingConfig:
    """Where a job's dollars come from (runtime.worker.prices): the stack publishes the preview's on-demand table
    (``policies/prices.json``) for the fleet's instance types in its region; spot prices are read from EC2."""

    on_demand_hourly: dict[str, float] = field(default_factory=dict)  # instance type -> USD per hour
    spot_discount: dict[str, float] = field(default_factory=dict)  # family -> typical saving (estimate fallback)
    source: str = "no price table"  # e.g. "policies/prices.json retrieved 2025-06-01, us-east-1"
    spot_refresh_seconds: int = 3600  # how often a spot instance re-reads its spot price
    instance_type: str | None = None  # else IMDS instance-type (local mode without IMDS sets it)
    purchase_option: str | None = None  # spot | on-demand; else IMDS instance-life-cycle


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
    task_max_job_seconds: dict[str, int] = field(default_factory=dict)  # task -> its own limit (time_limits)
    metrics_namespace: str = "GenAIFleet"
    allow_loopback_urls: bool = False  # local mode only; never on AWS
    endpoints: dict[str, str] = field(default_factory=dict)  # service name -> endpoint URL (moto, local)
    test_pattern_delay_seconds: float = 0.5
    backend_model_dir: str | None = None  # where ComfyUI / A1111 load checkpoints from (cache links there)
    # The folders the backend writes job files to (the instance contract's, as its unit passes them): the agent
    # deletes each attempt's files there and sweeps what a lost attempt left.
    backend_output_dir: str | None = None
    backend_input_dir: str | None = None
    backend_temp_dir: str | None = None
    # How the agent restarts a backend that does not stop work it was told to stop (a hung node): on an
    # instance ``systemctl restart <its unit>``, which the AMI's polkit rule allows for that unit only.
    backend_restart_command: tuple[str, ...] = ()
    backend_restart_timeout_seconds: int = 180  # restart + answering again; longer: the instance is unhealthy
    heartbeat_file: str | None = None  # touched while the agent is healthy (instance_contract.HEARTBEAT_FILE)
    backend_ready_timeout_seconds: int = 600  # readiness wait at boot and after a backend crash
    retry_delay_seconds: int = 5  # a failed attempt becomes visible again after this long
    cancel_poll_seconds: float = 2.0  # how often a running job's cancel flag is read
    prefetch_jobs: int = 1  # messages received ahead while a job runs (0: serial; Kafka is always serial)
    claim_ahead: bool = True  # start the next attempt just before the running job ends (docs/worker.md)
    overlap_settle: bool = True  # settle job N (upload, record, ack) while N+1 runs (docs/worker.md)
    batch_max_jobs: int | None = None  # dynamic batching: most jobs per backend call (None: the backend's own
    # recommendation, runtime.worker.batching; 1: off); backends without run_batch always run one job
    batch_wait_ms: float = 20.0  # extra wait for compatible jobs to arrive before a batch starts
    metrics_sink: str = "agent"  # agent (CloudWatch agent EMF socket) | stdout | memory | off
    metrics_log_group: str = "/genai-fleet/worker"  # log group the CloudWatch agent writes EMF records to
    worker_id: str | None = None  # default: the EC2 instance id from IMDS
    diffusers: dict[str, Any] = field(default_factory=dict)  # diffusers backend options (backends/diffusers_options)
    # Progress events (issue 38): the stack's event table (runtime/jobs/events.py; None: no events are written)
    # and the most often one attempt's events are written (runtime/worker/progress_reporter.py).
    event_table: str | None = None
    progress_interval_seconds: float = 0.5
    pricing: PricingConfig = field(default_factory=PricingConfig)  # a job's cost (runtime.worker.prices)

    def time_limit(self, task: str) -> float:
        """Seconds a job of ``task`` may run (runtime.jobs.time_limits)."""
        return job_time_limit(task, self.max_job_seconds, self.task_max_job_seconds)

    @property
    def longest_time_limit(self) -> float:
        """The longest any job may run: what the drain and the health probe must outlast."""
        return longest_time_limit(self.max_job_seconds, self.task_max_job_seconds)

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
        q["groups"] = _groups(q.get("groups") or [], kind)
        for key, default in (("affinity_max_wait_seconds", 60.0), ("affinity_switch_after_seconds", 20.0),
                             ("affinity_idle_switch_seconds", 13.0)):
            if not isinstance(q.get(key, default), int | float) or q.get(key, default) <= 0:
                raise AgentConfigError(f"queue.{key} = {q[key]!r}: must be a number of seconds > 0")
        backend = _require(data, "backend", "")
        if backend not in BACKENDS:
            raise AgentConfigError(f"backend = {backend!r}: must be one of {', '.join(BACKENDS)}")
        if backend in instance_contract.HTTP_BACKENDS:  # driven over HTTP at backend_url
            _require(data, "backend_url", "")
        outputs = dict(_require(data, "outputs", ""))
        _require(outputs, "bucket", "outputs.")
        _require(outputs, "cdn_base_url", "outputs.")
        max_job = int(data.get("max_job_seconds", 300))
        if not 10 <= max_job <= 3600:
            raise AgentConfigError(f"max_job_seconds = {max_job}: must be from 10 to 3600")
        try:
            task_limits = parse_task_limits(data.get("task_max_job_seconds"), "task_max_job_seconds")
        except ValueError as exc:
            raise AgentConfigError(str(exc)) from exc
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
            task_max_job_seconds=task_limits,
            metrics_namespace=data.get("metrics_namespace", "GenAIFleet"),
            allow_loopback_urls=bool(data.get("allow_loopback_urls", False)),
            endpoints=dict(data.get("endpoints", {})),
            test_pattern_delay_seconds=float(data.get("test_pattern_delay_seconds", 0.5)),
            diffusers=_diffusers_options(data),
            backend_restart_command=_command(data, "backend_restart_command"),
            pricing=_pricing(data.get("pricing")),
            **_worker_options(data),
        )
    except TypeError as exc:  # unknown key in a nested section
        raise AgentConfigError(f"agent config has an unknown or misspelt key: {exc}") from exc


def _groups(raw: Any, kind: str) -> tuple[GroupQueueConfig, ...]:
    """``queue.groups``: [{"name", "models": [...], "url" (sqs) | "topic" (kafka)}], names and models unique."""
    if not isinstance(raw, list):
        raise AgentConfigError("queue.groups must be a list of {name, models, url|topic}")
    where = "url" if kind == "sqs" else "topic"
    out, seen = [], set()
    for i, g in enumerate(raw):
        if not isinstance(g, dict):
            raise AgentConfigError(f"queue.groups[{i}] must be an object with name, models and {where}")
        name, models = _require(g, "name", f"queue.groups[{i}]."), g.get("models")
        _require(g, where, f"queue.groups[{i}].")
        if not isinstance(models, list) or not models or not all(isinstance(x, str) for x in models):
            raise AgentConfigError(f"queue.groups[{i}].models must be a non-empty list of model ids")
        if name == "default" or name in {o.name for o in out}:
            raise AgentConfigError(f"queue.groups[{i}].name = {name!r}: must be unique and not 'default'")
        if seen & set(models):
            raise AgentConfigError(f"queue.groups[{i}].models: {sorted(seen & set(models))} are in another group")
        seen |= set(models)
        try:
            out.append(GroupQueueConfig(**{**g, "models": tuple(models)}))
        except TypeError as exc:
            raise AgentConfigError(f"queue.groups[{i}] has an unknown key (allowed: name, models, url, topic): "
                                   f"{exc}") from exc
    return tuple(out)


_WORKER_OPTIONS: dict[str, Any] = {
    "backend_model_dir": None, "backend_ready_timeout_seconds": int, "retry_delay_seconds": int,
    "backend_output_dir": None, "backend_input_dir": None, "backend_temp_dir": None,
    "backend_restart_timeout_seconds": int,
    "cancel_poll_seconds": float, "metrics_sink": str, "worker_id": None, "metrics_log_group": str,
    "heartbeat_file": None, "prefetch_jobs": int, "claim_ahead": "bool",
    "overlap_settle": "bool", "batch_max_jobs": int, "batch_wait_ms": float,
    "event_table": None, "progress_interval_seconds": float,
}
METRICS_SINKS = ("agent", "stdout", "memory", "off")


def _pricing(raw: Any) -> PricingConfig:
    """The ``pricing`` block: prices are non-negative numbers, the refresh from 60 to 86400 seconds."""
    if raw is None:
        return PricingConfig()
    if not isinstance(raw, dict):
        raise AgentConfigError("pricing must be an object {on_demand_hourly, spot_discount, source, ...}")
    for key in ("on_demand_hourly", "spot_discount"):
        table = raw.get(key, {})
        if not isinstance(table, dict) or not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                                                  for v in table.values()):
            raise AgentConfigError(f"pricing.{key} must map names to numbers >= 0, e.g. {{\"g5.xlarge\": 1.006}}")
    refresh = raw.get("spot_refresh_seconds", 3600)
    if not isinstance(refresh, int) or isinstance(refresh, bool) or not 60 <= refresh <= 86400:
        raise AgentConfigError(f"pricing.spot_refresh_seconds = {refresh!r}: must be whole seconds from 60 to 86400")
    option = raw.get("purchase_option")
    if option not in (None, "spot", "on-demand"):
        raise AgentConfigError(f"pricing.purchase_option = {option!r}: must be spot or on-demand (or left out: IMDS)")
    try:
        return PricingConfig(**{**raw, "on_demand_hourly": {str(k): float(v) for k, v in
                                                              raw.get("on_demand_hourly", {}).items()},
                                "spot_discount": {str(k): float(v) for k, v in raw.get("spot_discount", {}).items()}})
    except TypeError as exc:
        raise AgentConfigError(f"pricing has an unknown key (allowed: on_demand_hourly, spot_discount, source, "
                               f"spot_refresh_seconds, instance_type, purchase_option): {exc}") from exc


def _command(data: dict[str, Any], key: str) -> tuple[str, ...]:
    """A command line as a list of strings (no shell); absent or empty: no command."""
    value = data.get(key)
    if value is None or (isinstance(value, list | tuple) and not value):
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(x, str) and x for x in value):
        raise AgentConfigError(f"{key} = {value!r}: must be a list of non-empty strings (the program and its "
                               'arguments, no shell), e.g. ["/usr/local/bin/restart-backend", "comfyui"]')
    return tuple(value)


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"{key} must be true or false")


def _worker_options(data: dict[str, Any]) -> dict[str, Any]:
    """The optional agent-behaviour keys, converted; absent keys keep their defaults."""
    out: dict[str, Any] = {}
    for key, convert in _WORKER_OPTIONS.items():
        if data.get(key) is not None:
            try:
                out[key] = _flag(key, data[key]) if convert == "bool" else convert(data[key]) if convert \
                    else str(data[key])
            except (TypeError, ValueError) as exc:
                raise AgentConfigError(f"{key} = {data[key]!r}: {exc}") from exc
    if not 10 <= out.get("backend_restart_timeout_seconds", 180) <= 1800:
        raise AgentConfigError(f"backend_restart_timeout_seconds = {out['backend_restart_timeout_seconds']}: must be "
                               "from 10 to 1800")
    if not 0.05 <= out.get("progress_interval_seconds", 0.5) <= 60:
        raise AgentConfigError(f"progress_interval_seconds = {out['progress_interval_seconds']}: must be from 0.05 "
                               "to 60")
    if not 0 <= out.get("prefetch_jobs", 1) <= 10:
        raise AgentConfigError(f"prefetch_jobs = {out['prefetch_jobs']}: must be from 0 (serial) to 10")
    if not 1 <= out.get("batch_max_jobs", 1) <= 64:
        raise AgentConfigError(f"batch_max_jobs = {out['batch_max_jobs']}: must be from 1 (off) to 64; leave it "
                               "out for the backend's recommendation")
    if not 0 <= out.get("batch_wait_ms", 0) <= 5000:
        raise AgentConfigError(f"batch_wait_ms = {out['batch_wait_ms']}: must be from 0 to 5000 milliseconds")
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
