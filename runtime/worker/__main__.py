"""``genai-worker``: the agent's entry point (systemd runs ``genai-worker run --config FILE``).

- ``run --config FILE``: build the agent from the config file, boot (hot models, backend check,
  launching lifecycle action), then pull jobs until SIGTERM/SIGINT (hand back the running job) or a
  spot/terminating notice (drain, then complete the terminating lifecycle action and exit 0).
- ``self-check [--config FILE]``: import every runtime module the agent uses, validate the config when
  given (and that the configured HTTP backend is installed where the instance contract puts it), print
  a JSON report; exit 0 only when all is well (the AMI build runs it; so does the unit's ExecStartPre).
- ``mark-unhealthy --config FILE``: abandon a pending launching action and mark the instance Unhealthy
  (the unit's ``OnFailure=``: the agent failed for good, so the group replaces the instance now).

Boot failures are cheap: a missing optional prerequisite (a hot model not uploaded yet) is a warning
with a ``BootWarnings`` metric (webhooks are not the agent's: the stack's functions send them); a fatal
one (the backend never gets ready) abandons the launching action and marks the instance unhealthy at
once, instead of letting the group wait out the hook timeout on a billed instance. The agent tells systemd
it is ready and then pings the watchdog while healthy (runtime/worker/health.py).

The JSON log formatter is configured here and only here.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runtime import instance_contract
from runtime import metric_names as m
from runtime.agent_config import AgentConfig, AgentConfigError, load
from runtime.aws_clock import AwsClock
from runtime.worker.health import Heartbeat, notify

if TYPE_CHECKING:  # imported where the agent is built: self-check imports each module on its own
    from runtime.backends.base import Backend
    from runtime.model_cache import ModelCache

log = logging.getLogger(__name__)

MODULES = (
    "runtime.agent_config", "runtime.metric_names", "runtime.net_safety", "runtime.jobs.attempts",
    "runtime.jobs.schema", "runtime.jobs.store", "runtime.queues.base", "runtime.queues.sqs_consumer",
    "runtime.queues.kafka_consumer", "runtime.queues.affinity", "runtime.model_store.manifest",
    "runtime.model_cache.cache", "runtime.model_cache.download", "runtime.model_cache.ram_tier",
    "runtime.backends.base", "runtime.backends.comfyui", "runtime.backends.a1111", "runtime.backends.diffusers",
    "runtime.backends.neuron", "runtime.backends.test_pattern", "runtime.worker.agent", "runtime.worker.aws",
    "runtime.worker.claims", "runtime.worker.execution", "runtime.worker.settlement", "runtime.worker.guard",
    "runtime.worker.failures",
    "runtime.worker.imds", "runtime.worker.lifecycle", "runtime.worker.metrics", "runtime.worker.outputs",
    "runtime.worker.inputs", "runtime.worker.logs", "runtime.worker.health", "runtime.instance_contract",
    "confluent_kafka", "aws_msk_iam_sasl_signer",
    "aws_embedded_metrics", "PIL", "httpx", "boto3",
)


def self_check(config_path: str | None) -> tuple[bool, dict[str, Any]]:
    report: dict[str, Any] = {"modules": {}, "config": None}
    ok = True
    for name in MODULES:
        try:
            importlib.import_module(name)
            report["modules"][name] = "ok"
        except Exception as exc:  # noqa: BLE001 - the report names every failure
            report["modules"][name] = f"{type(exc).__name__}: {exc}"
            ok = False
    if config_path:
        try:
            cfg = load(config_path)
            importlib.import_module("runtime.backends.base").backend_class(cfg.backend)
            _check_installed(cfg)
            report["config"] = {"path": config_path, "valid": True, "backend": cfg.backend, "queue": cfg.queue.kind}
        except (AgentConfigError, ImportError, ValueError) as exc:
            report["config"] = {"path": config_path, "valid": False, "error": str(exc)}
            ok = False
    report["ok"] = ok
    return ok, report


def _check_installed(config: AgentConfig) -> None:
    """An HTTP backend served from this host must be installed where the AMI puts it (instance contract)."""
    install = instance_contract.HTTP_BACKENDS.get(config.backend)
    if install is None or config.backend_url != install.url:
        return  # in-process backend, or one served elsewhere (local mode, tests)
    if not os.path.exists(install.python):
        raise AgentConfigError(f"backend = {config.backend!r} but this image has no {config.backend} "
                               f"({install.python} is missing): build the AMI with it, or set genai-fleet:backend "
                               f"to a backend the image has")


def _worker_identity(config: AgentConfig) -> tuple[str, Any]:
    """(worker id, IMDS client or None)."""
    from runtime.worker.imds import IMDSClient, IMDSError

    if not config.lifecycle.imds_enabled:
        return config.worker_id or f"local-{socket.gethostname()}-{os.getpid()}", None
    # endpoints.imds (tests, local mode), else the AWS SDKs' own override variable, else the config's URL.
    url = (config.endpoints.get("imds") or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
           or config.lifecycle.imds_url)
    imds = IMDSClient(url)
    try:
        return config.worker_id or imds.instance_id(), imds
    except IMDSError as exc:
        raise SystemExit(f"genai-worker: instance metadata unavailable ({exc}); set lifecycle.imds_enabled "
                         f"false and worker_id for local runs") from exc


def _consumer(config: AgentConfig, worker_id: str, tiers: Any = None) -> Any:
    """The queue consumer; with ``queue.groups`` an affinity consumer over a queue per model group."""
    from runtime.worker import aws

    q = config.queue
    if q.kind == "sqs":
        from runtime.queues.sqs_consumer import SQSConsumer

        sqs = aws.client("sqs", config.region, config.endpoints)
        queues = {"default": SQSConsumer(sqs, q.url, q.visibility_timeout_seconds)}
        queues.update({g.name: SQSConsumer(sqs, g.url, q.visibility_timeout_seconds) for g in q.groups})
        probes = {name: c.backlog for name, c in queues.items()}
    else:
        from runtime.queues.kafka_consumer import KafkaConsumer, consumer_config
        from runtime.queues.kafka_lag import read_lag

        def kafka(topic: str, suffix: str) -> Any:
            conf = consumer_config(q.bootstrap_servers, q.group_id, worker_id + suffix, config.max_job_seconds,
                                   q.kafka_iam_auth, config.region, {"session.timeout.ms": q.kafka_session_timeout_ms})
            return KafkaConsumer(conf, topic, q.max_receive_count)

        topics = {"default": q.topic, **{g.name: g.topic for g in q.groups}}
        queues = {name: kafka(topic, "" if name == "default" else f"-{name}") for name, topic in topics.items()}
        probes = {name: (lambda t=topic: read_lag(q.bootstrap_servers, t, q.group_id, q.kafka_iam_auth,
                                                  config.region).total) for name, topic in topics.items()}
    if not q.groups:
        return queues["default"]
    from runtime.queues.affinity import AffinityConsumer, GroupQueue, ModelGroups

    groups = ModelGroups({g.name: g.models for g in q.groups})
    return AffinityConsumer([GroupQueue(name, c, probes[name]) for name, c in queues.items()], groups,
                            worker_id=worker_id, max_wait_seconds=q.affinity_max_wait_seconds,
                            switch_after_seconds=q.affinity_switch_after_seconds,
                            idle_switch_seconds=q.affinity_idle_switch_seconds, tiers=tiers)


def build(config: AgentConfig, clock: AwsClock | None = None) -> tuple[Any, Any]:
    """(agent, lifecycle watcher or None) wired from the config. Lease times are written in ``clock``'s
    time: AWS's, measured from the job table's answers (runtime/aws_clock.py)."""
    from runtime.backends.base import create
    from runtime.jobs.store import JobStore
    from runtime.model_cache import ModelCache, manifest_resolver
    from runtime.worker import aws
    from runtime.worker.agent import Agent
    from runtime.worker.lifecycle import LifecycleWatcher
    from runtime.worker.metrics import Metrics
    from runtime.worker.outputs import OutputUploader

    worker_id, imds = _worker_identity(config)
    lifecycle = _lifecycle(config, worker_id, imds)
    group = lifecycle.group
    s3 = aws.client("s3", config.region, config.endpoints)
    metrics = Metrics(config.metrics_namespace, config.stack, group or "none", config.backend, config.metrics_sink,
                      log_group=config.metrics_log_group)
    cache = None
    if config.model_cache.store_bucket:
        mc = config.model_cache
        resolver = manifest_resolver(s3, mc.store_bucket, mc.manifest_key)
        cache = ModelCache(aws.ObjectStore(s3, mc.store_bucket), resolver, mc.cache_dir, mc.max_cache_bytes,
                           hot_models=config.hot_models, observe=metrics.emit)
    clock = clock or AwsClock()
    backend = create(config)
    if backend.ram_tier is not None:
        backend.ram_tier.observe = metrics.emit  # ModelRamHits / ModelRamMisses
    store = JobStore(config.job_table, clock.attach(aws.client("dynamodb", config.region, config.endpoints)),
                     clock=clock.now)
    clock.probe = lambda: store.get("clock-probe")  # one GetItem before the first lease is written
    uploader = OutputUploader(aws.ObjectStore(s3, config.outputs.bucket), config.outputs.prefix)
    progress = _progress_reporter(config, aws.client("dynamodb", config.region, config.endpoints), clock.now,
                                  _previews(uploader.store))
    agent = Agent(
        config, consumer=_consumer(config, worker_id, _warm_tiers(cache, backend)), store=store,
        backend=backend, uploader=uploader,
        metrics=metrics, lifecycle=lifecycle, worker_id=worker_id, model_cache=cache,
        workflow_models=_workflow_models(config, s3), progress=progress,
        prices=_prices(config, imds))
    watcher = LifecycleWatcher(imds, agent.on_notice, config.lifecycle.poll_seconds) if imds else None
    return agent, watcher


def _workflow_models(config: AgentConfig, s3: Any) -> Any:
    """comfyui-workflow loader files -> store ids from this image's node catalog (issue 41); None elsewhere."""
    if config.backend != "comfyui" or not config.model_cache.store_bucket:
        return None
    from pathlib import Path

    from runtime import instance_contract
    from runtime.worker.workflow_models import load_workflow_models

    return load_workflow_models(Path(instance_contract.COMFYUI_NODE_CATALOG), s3, config.model_cache.store_bucket,
                                config.model_cache.manifest_key)


def _progress_reporter(config: AgentConfig, ddb: Any, now: Callable[[], float], previews: Any = None) -> Any:
    """The progress reporter over the stack's event table, or None when the config names none."""
    if not config.event_table:
        return None
    from runtime.jobs.events import EventLog
    from runtime.worker.progress_reporter import ProgressReporter

    return ProgressReporter(EventLog(config.event_table, ddb, clock=now), interval_s=config.progress_interval_seconds,
                            clock=now, previews=previews)


def _previews(store: Any) -> Any:
    """Previews (issue 38) in the outputs bucket (``store``) under ``previews/``; linked at hand-out, as outputs."""
    from runtime.worker.preview_uploader import PreviewUploader

    return PreviewUploader(store)


def _prices(config: AgentConfig, imds: Any) -> Any:
    """This instance's price (runtime.worker.prices): type and purchase option from IMDS, the on-demand table
    from the config, a spot instance's spot price read now and refreshed on its own thread."""
    from runtime.worker import aws
    from runtime.worker.prices import PriceSource, SpotPriceRefresher, instance_facts

    p = config.pricing
    facts = instance_facts(imds, p.instance_type, p.purchase_option)
    ec2 = aws.client("ec2", config.region, config.endpoints) if facts.purchase_option == "spot" else None
    source = PriceSource(facts, on_demand_hourly=p.on_demand_hourly, table_source=p.source,
                         spot_discount=p.spot_discount, ec2=ec2)
    price = source.refresh()
    log.info("instance price: %s %s at %.4f USD/h (%s)", price.instance_type, price.purchase_option,
             price.hourly_usd, price.source)
    SpotPriceRefresher(source, p.spot_refresh_seconds).start()
    return source


def _warm_tiers(cache: ModelCache | None, backend: Backend) -> Callable[[], dict[str, int]]:
    """model -> tier for the affinity consumer: the disk cache's entries, and the models in the backend's
    host-RAM tier where it has one (``backend.ram_tier``, a runtime.model_cache.HostRamTier, keyed
    ``<model id>@<architecture>`` by the diffusers backend; model ids never hold "@")."""
    from runtime.queues.affinity import tier_map

    def tiers() -> dict[str, int]:
        ram = backend.ram_tier
        in_ram = ram.keys() if ram is not None else []
        return tier_map(cache.models_on_disk() if cache is not None else (), [k.partition("@")[0] for k in in_ram])

    return tiers


def _lifecycle(config: AgentConfig, worker_id: str, imds: Any) -> Any:
    """Auto Scaling calls for this instance; group from config, IMDS tags, else DescribeAutoScalingInstances."""
    from runtime.worker import aws
    from runtime.worker.lifecycle import Lifecycle

    autoscaling = aws.make_autoscaling(config.region, config.endpoints)
    group = config.lifecycle.auto_scaling_group or (imds.auto_scaling_group() if imds else None)
    if group is None and imds is not None:
        try:
            group = autoscaling.group_of(worker_id)
        except aws.AWSCallError as exc:
            log.warning("Auto Scaling group of %s unknown (%s): lifecycle actions and protection are off",
                        worker_id, exc)
    return Lifecycle(autoscaling, worker_id, group, config.lifecycle.launching_hook,
                     config.lifecycle.terminating_hook)


def mark_unhealthy(config_path: str, reason: str) -> int:
    """OnFailure= of the agent unit: abandon a pending launch and mark the instance Unhealthy.

    Works without a valid config too (a broken config is one way an agent crash-loops): then the
    instance id and region come from IMDS and only SetInstanceHealth is called.
    """
    from runtime.worker import aws
    from runtime.worker.imds import IMDSClient, IMDSError
    from runtime.worker.lifecycle import Lifecycle

    try:
        config = load(config_path)
    except AgentConfigError as exc:
        log.error("agent config unusable (%s); marking the instance unhealthy from instance metadata", exc)
        imds = IMDSClient(os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or "http://169.254.169.254")
        try:
            instance_id, region = imds.instance_id(), imds.get("placement/region")
        except IMDSError as imds_exc:
            log.error("instance metadata unavailable too: %s", imds_exc)
            return 1
        lifecycle = Lifecycle(aws.make_autoscaling(region or "us-east-1", {}), instance_id, None, None, None)
        return 0 if lifecycle.mark_unhealthy(reason) else 1
    worker_id, imds = _worker_identity(config)
    lifecycle = _lifecycle(config, worker_id, imds)
    lifecycle.abandon_launching()
    return 0 if lifecycle.mark_unhealthy(reason) else 1


def run(config_path: str) -> int:
    try:
        config = load(config_path)
    except AgentConfigError as exc:
        log.error("bad agent config: %s", exc)
        return 2
    from runtime.model_cache import CacheOwned

    clock = AwsClock()
    try:
        agent, watcher = build(config, clock)
    except CacheOwned as exc:  # a second agent on one cache folder: say which setting to change, then stop
        log.error("cannot start: %s", exc)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    log.info("agent starting", extra={"worker_id": agent.worker_id, "backend": config.backend,
                                      "queue": config.queue.kind})
    def beat() -> None:  # once a minute while healthy: alive, and how far this host's clock is from AWS's
        agent.metrics.count(m.AGENT_HEARTBEAT, worker_id=agent.worker_id)
        agent.metrics.emit({m.CLOCK_OFFSET: round(abs(clock.offset), 1)}, {"worker_id": agent.worker_id})

    heartbeat = Heartbeat(agent.healthy, file=config.heartbeat_file, beat=beat)
    notify("READY=1")  # the process is up; from here on the watchdog judges it
    heartbeat.start()
    if watcher is not None:
        watcher.start()
    try:
        try:
            agent.boot()
        except Exception as exc:  # noqa: BLE001 - any boot failure must reach the group now, not at the hook timeout
            _boot_failed(agent, exc)
            return 3
        agent.run()
    finally:
        heartbeat.stop()
        if watcher is not None:
            watcher.stop()
        agent.consumer.close()
        agent.backend.close()
    log.info("agent stopped", extra={"worker_id": agent.worker_id, "jobs": len(agent.stats)})
    return 0


def _boot_failed(agent: Any, exc: Exception) -> None:
    log.exception("fatal boot error: %s", exc)
    agent.metrics.count(m.BOOT_FAILURES, worker_id=agent.worker_id, error=f"{type(exc).__name__}: {exc}"[:300])
    notify(f"STATUS=boot failed: {exc}"[:200])
    if not agent.lifecycle.abandon_launching():
        agent.lifecycle.mark_unhealthy(f"boot failed: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genai-worker", description="genai-fleet worker agent")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the agent")
    run_p.add_argument("--config", default=None, help="agent config file (default: GENAI_AGENT_CONFIG or "
                                                     "/etc/genai-fleet/agent.json)")
    check_p = sub.add_parser("self-check", help="import every module, validate the config, print a JSON report")
    check_p.add_argument("--config", default=None)
    sick_p = sub.add_parser("mark-unhealthy", help="abandon a pending launch and mark this instance Unhealthy")
    sick_p.add_argument("--config", default=None)
    sick_p.add_argument("--reason", default="the worker agent failed")
    args = parser.parse_args(argv)
    if args.command == "self-check":
        ok, report = self_check(args.config)
        print(json.dumps(report, indent=2))
        return 0 if ok else 1
    from runtime.worker.logs import configure

    configure(os.environ.get("GENAI_LOG_LEVEL", "INFO"), service="genai-worker")
    config_path = args.config or os.environ.get("GENAI_AGENT_CONFIG", instance_contract.CONFIG_PATH)
    if args.command == "mark-unhealthy":
        return mark_unhealthy(config_path, args.reason)
    return run(config_path)


if __name__ == "__main__":
    sys.exit(main())
