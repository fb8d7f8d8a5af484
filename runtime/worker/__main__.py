"""``genai-worker``: the agent's entry point (systemd runs ``genai-worker run --config FILE``).

- ``run --config FILE``: build the agent from the config file, boot (hot models, backend check,
  launching lifecycle action), then pull jobs until SIGTERM/SIGINT (hand back the running job) or a
  spot/terminating notice (drain, then complete the terminating lifecycle action and exit 0).
- ``self-check [--config FILE]``: import every runtime module the agent uses, validate the config when
  given, print a JSON report; exit 0 only when all is well (the AMI build runs it).

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
from typing import Any

from runtime.agent_config import AgentConfig, AgentConfigError, load

log = logging.getLogger(__name__)

MODULES = (
    "runtime.agent_config", "runtime.metric_names", "runtime.net_safety", "runtime.jobs.attempts",
    "runtime.jobs.schema", "runtime.jobs.store", "runtime.queues.base", "runtime.queues.sqs_consumer",
    "runtime.queues.kafka_consumer", "runtime.model_store.manifest", "runtime.model_cache.cache",
    "runtime.backends.base", "runtime.backends.comfyui", "runtime.backends.a1111", "runtime.backends.diffusers",
    "runtime.backends.neuron", "runtime.backends.test_pattern", "runtime.worker.agent", "runtime.worker.aws",
    "runtime.worker.job_runner", "runtime.worker.guard", "runtime.worker.failures",
    "runtime.worker.imds", "runtime.worker.lifecycle", "runtime.worker.metrics", "runtime.worker.outputs",
    "runtime.worker.inputs", "runtime.worker.logs", "confluent_kafka", "aws_msk_iam_sasl_signer",
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
            report["config"] = {"path": config_path, "valid": True, "backend": cfg.backend, "queue": cfg.queue.kind}
        except (AgentConfigError, ImportError, ValueError) as exc:
            report["config"] = {"path": config_path, "valid": False, "error": str(exc)}
            ok = False
    report["ok"] = ok
    return ok, report


def _worker_identity(config: AgentConfig) -> tuple[str, Any]:
    """(worker id, IMDS client or None)."""
    from runtime.worker.imds import IMDSClient, IMDSError

    if not config.lifecycle.imds_enabled:
        return config.worker_id or f"local-{socket.gethostname()}-{os.getpid()}", None
    imds = IMDSClient(config.endpoints.get("imds", config.lifecycle.imds_url))
    try:
        return config.worker_id or imds.instance_id(), imds
    except IMDSError as exc:
        raise SystemExit(f"genai-worker: instance metadata unavailable ({exc}); set lifecycle.imds_enabled "
                         f"false and worker_id for local runs") from exc


def _consumer(config: AgentConfig, worker_id: str) -> Any:
    from runtime.worker import aws

    q = config.queue
    if q.kind == "sqs":
        from runtime.queues.sqs_consumer import SQSConsumer

        return SQSConsumer(aws.client("sqs", config.region, config.endpoints), q.url, q.visibility_timeout_seconds)
    from runtime.queues.kafka_consumer import KafkaConsumer, consumer_config

    conf = consumer_config(q.bootstrap_servers, q.group_id, worker_id, config.max_job_seconds, q.kafka_iam_auth,
                           config.region, {"session.timeout.ms": q.kafka_session_timeout_ms})
    return KafkaConsumer(conf, q.topic, q.max_receive_count)


def build(config: AgentConfig) -> tuple[Any, Any]:
    """(agent, lifecycle watcher or None) wired from the config."""
    from runtime.backends.base import create
    from runtime.jobs.store import JobStore
    from runtime.model_cache import ModelCache, manifest_resolver
    from runtime.worker import aws
    from runtime.worker.agent import Agent
    from runtime.worker.lifecycle import Lifecycle, LifecycleWatcher
    from runtime.worker.metrics import Metrics
    from runtime.worker.outputs import OutputUploader

    worker_id, imds = _worker_identity(config)
    autoscaling = aws.make_autoscaling(config.region, config.endpoints)
    group = config.lifecycle.auto_scaling_group or (imds.auto_scaling_group() if imds else None)
    if group is None and imds is not None:
        group = autoscaling.group_of(worker_id)
    lifecycle = Lifecycle(autoscaling, worker_id, group, config.lifecycle.launching_hook,
                          config.lifecycle.terminating_hook)
    s3 = aws.client("s3", config.region, config.endpoints)
    cache = None
    if config.model_cache.store_bucket:
        mc = config.model_cache
        resolver = manifest_resolver(s3, mc.store_bucket, mc.manifest_key)
        cache = ModelCache(aws.ObjectStore(s3, mc.store_bucket), resolver, mc.cache_dir, mc.max_cache_bytes,
                           hot_models=config.hot_models)
    agent = Agent(
        config, consumer=_consumer(config, worker_id),
        store=JobStore(config.job_table, aws.client("dynamodb", config.region, config.endpoints)),
        backend=create(config), uploader=OutputUploader(aws.ObjectStore(s3, config.outputs.bucket),
                                                        config.outputs.cdn_base_url, config.outputs.prefix),
        metrics=Metrics(config.metrics_namespace, config.stack, group or "none", config.backend, config.metrics_sink,
                        log_group=config.metrics_log_group),
        lifecycle=lifecycle, worker_id=worker_id, model_cache=cache)
    watcher = LifecycleWatcher(imds, agent.on_notice, config.lifecycle.poll_seconds) if imds else None
    return agent, watcher


def run(config_path: str) -> int:
    try:
        config = load(config_path)
    except AgentConfigError as exc:
        log.error("bad agent config: %s", exc)
        return 2
    agent, watcher = build(config)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    log.info("agent starting", extra={"worker_id": agent.worker_id, "backend": config.backend,
                                      "queue": config.queue.kind})
    if watcher is not None:
        watcher.start()
    try:
        agent.boot()
        agent.run()
    finally:
        if watcher is not None:
            watcher.stop()
        agent.consumer.close()
        agent.backend.close()
    log.info("agent stopped", extra={"worker_id": agent.worker_id, "jobs": len(agent.stats)})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genai-worker", description="genai-fleet worker agent")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the agent")
    run_p.add_argument("--config", default=None, help="agent config file (default: GENAI_AGENT_CONFIG or "
                                                     "/etc/genai-fleet/agent.json)")
    check_p = sub.add_parser("self-check", help="import every module, validate the config, print a JSON report")
    check_p.add_argument("--config", default=None)
    args = parser.parse_args(argv)
    if args.command == "self-check":
        ok, report = self_check(args.config)
        print(json.dumps(report, indent=2))
        return 0 if ok else 1
    from runtime.worker.logs import configure

    configure(os.environ.get("GENAI_LOG_LEVEL", "INFO"), service="genai-worker")
    return run(args.config or os.environ.get("GENAI_AGENT_CONFIG", "/etc/genai-fleet/agent.json"))


if __name__ == "__main__":
    sys.exit(main())
