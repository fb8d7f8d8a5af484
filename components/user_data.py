"""The worker agent's config file and the user data that writes it.

Everything an instance runs is baked into the AMI (packer/); user data does three things only:

1. write ``/etc/genai-fleet/agent.json`` (schema: ``runtime/agent_config.py``),
2. load the CloudWatch agent's config from this stack's SSM parameter (when the agent is installed),
3. start ``genai-worker.service`` (the AMI's ``genai-worker.path`` also starts it when the file appears).

The agent config is built with the runtime's own dataclasses and parsed back with
``runtime.agent_config.parse`` before it is rendered, so a field the agent would reject fails at
``pulumi preview`` instead of on a booting instance.

Every path, port and unit comes from the instance contract (``runtime/instance_contract.py``), the
module the AMI's files are rendered from. The agent config names the backend's model folder (the
one the AMI points ComfyUI / A1111 at) and the heartbeat file, so nothing falls back to a default.
Model cache placement: ``NVME_CACHE_DIR`` is where the AMI's boot script mounts the instance-store NVMe
when the type has one (else the directory stays on the root EBS volume). ``EBS_CACHE_DIR`` is never
mounted over: the on-demand group uses it when it has a warm pool, because a stopped instance loses
its instance store and a warm instance must keep its hot models.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runtime import agent_config, instance_contract, metric_names, queue_names

AGENT_CONFIG_PATH = instance_contract.CONFIG_PATH
AGENT_SERVICE = instance_contract.AGENT_UNIT
CLOUDWATCH_AGENT_CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
NVME_CACHE_DIR = instance_contract.MODEL_CACHE_DIR
EBS_CACHE_DIR = instance_contract.EBS_MODEL_CACHE_DIR



def backend_settings(backend: str) -> dict[str, object]:
    """The agent config's backend folders and restart command, from the instance contract (none for in-process
    backends: the diffusers backend's wedged call ends the agent, and systemd restarts it)."""
    b = instance_contract.HTTP_BACKENDS.get(backend)
    if b is None:
        return {}
    return {"backend_url": b.url, "backend_model_dir": b.model_dir, "backend_output_dir": b.output_dir,
            "backend_input_dir": b.input_dir, "backend_temp_dir": b.temp_dir,
            "backend_restart_command": instance_contract.BACKEND_RESTART_COMMAND}
_HEREDOC = "GENAI_FLEET_AGENT_JSON"


@dataclass(frozen=True)
class AgentSettings:
    """Plain (resolved) values the agent config is made of; build inside ``Output.all(...).apply``."""

    stack: str
    region: str
    queue_kind: str
    job_table: str
    outputs_bucket: str
    cdn_domain: str
    model_store_bucket: str
    backend: str
    launching_hook: str
    terminating_hook: str
    cache_dir: str
    max_cache_bytes: int
    max_job_seconds: int
    max_receive_count: int
    visibility_timeout_seconds: int
    hot_models: tuple[str, ...] = ()
    task_max_job_seconds: tuple[tuple[str, int], ...] = ()  # (task, seconds): runtime.jobs.time_limits
    queue_url: str | None = None
    model_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (group, model ids): model affinity
    group_queue_urls: Sequence[str] = ()  # the groups' SQS queue URLs, in model_groups' order
    bootstrap_servers: str | None = None
    kafka_topic: str = queue_names.KAFKA_TOPIC
    kafka_group: str = queue_names.KAFKA_GROUP
    outputs_prefix: str = "outputs"
    metrics_log_group: str = "/genai-fleet/worker"
    event_table: str | None = None  # the job event log (components/job_event_log.py); None: no progress events
    pricing: dict[str, Any] | None = None  # components.worker_prices.published_prices: a job's dollars


def agent_config_json(s: AgentSettings) -> str:
    """Render the agent config file; raises ``AgentConfigError`` when the agent would reject it."""
    queue = agent_config.QueueConfig(
        kind=s.queue_kind, url=s.queue_url if s.queue_kind == "sqs" else None,
        max_receive_count=s.max_receive_count, visibility_timeout_seconds=s.visibility_timeout_seconds,
        bootstrap_servers=s.bootstrap_servers if s.queue_kind == "kafka" else None,
        topic=s.kafka_topic, group_id=s.kafka_group, kafka_iam_auth=True,
        groups=tuple(agent_config.GroupQueueConfig(name=name, models=tuple(models), url=url)
                     for (name, models), url in zip(s.model_groups, s.group_queue_urls, strict=True)))
    config = agent_config.AgentConfig(
        stack=s.stack, region=s.region, queue=queue, job_table=s.job_table,
        outputs=agent_config.OutputsConfig(bucket=s.outputs_bucket, cdn_base_url=f"https://{s.cdn_domain}",
                                           prefix=s.outputs_prefix),
        backend=s.backend,
        model_cache=agent_config.ModelCacheConfig(store_bucket=s.model_store_bucket, cache_dir=s.cache_dir,
                                                  max_cache_bytes=s.max_cache_bytes),
        lifecycle=agent_config.LifecycleConfig(launching_hook=s.launching_hook, terminating_hook=s.terminating_hook),
        hot_models=tuple(s.hot_models), max_job_seconds=s.max_job_seconds,
        task_max_job_seconds=dict(s.task_max_job_seconds), metrics_namespace=metric_names.NAMESPACE,
        metrics_log_group=s.metrics_log_group, heartbeat_file=instance_contract.HEARTBEAT_FILE,
        event_table=s.event_table,
        pricing=agent_config.PricingConfig(**(s.pricing or {})),
        **backend_settings(s.backend))  # type: ignore[arg-type]
    text = config.to_json()
    agent_config.parse(json.loads(text))  # the agent's own validation, at preview time
    return text


def user_data_script(agent_json: str, cloudwatch_parameter: str | None) -> str:
    """A bash script for cloud-init (runs once, as root, on first boot; a warm-pool start keeps the file)."""
    if _HEREDOC in agent_json:
        raise ValueError(f"agent config must not contain the heredoc marker {_HEREDOC}")
    lines = [
        "#!/bin/bash",
        "# genai-fleet user data: write the worker agent's config and start it. The AMI holds everything else.",
        "set -euo pipefail",
        f"install -d -m 0755 {instance_contract.CONFIG_DIR}",
        f"cat > {AGENT_CONFIG_PATH}.tmp <<'{_HEREDOC}'",
        agent_json,
        _HEREDOC,
        f"chmod 0644 {AGENT_CONFIG_PATH}.tmp",
        f"mv -f {AGENT_CONFIG_PATH}.tmp {AGENT_CONFIG_PATH}",
    ]
    if cloudwatch_parameter:
        lines += [
            "# Metrics and log shipping: the CloudWatch agent reads its config from this stack's SSM parameter.",
            f"if [ -x {CLOUDWATCH_AGENT_CTL} ]; then",
            f"  {CLOUDWATCH_AGENT_CTL} -a fetch-config -m ec2 -s -c ssm:{cloudwatch_parameter} \\",
            "    || echo 'genai-fleet: CloudWatch agent config not loaded' >&2",
            "fi",
        ]
    lines += [
        "# The AMI's genai-worker.path starts the agent when the file appears; starting it again is a no-op.",
        f"systemctl start --no-block {AGENT_SERVICE}",
        "",
    ]
    return "\n".join(lines)


def encode(script: str) -> str:
    """Launch templates take user data base64-encoded."""
    return base64.b64encode(script.encode()).decode()
