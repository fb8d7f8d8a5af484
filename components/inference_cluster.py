"""The elastic worker fleet: a spot (mixed instances) group and an optional on-demand base group.

- Spot group: every configured instance type as an override, ``spotAllocationStrategy``, capacity
  rebalancing, ``round((1 - spotShare) * 100)`` percent on-demand above a base of 0; sized
  ``minSize - onDemandBase`` .. ``maxSize - onDemandBase``; scaled by ``cluster_scaling``.
- On-demand base group (``onDemandBase > 0``): one launch template with the first (preferred) type,
  fixed at ``onDemandBase`` instances, with a warm pool of stopped instances when ``warmPoolSize > 0``
  (AWS allows warm pools only on groups without a mixed instances policy). A warm-pool group keeps
  its model cache on EBS: a stopped instance loses its instance store.
- Both groups: launching and terminating lifecycle hooks (see ``cluster_scaling.lifecycle_hooks``), declared
  with the group (so its first instances wait) and again as ``LifecycleHook`` resources (so changes apply),
  group metrics every minute (backlog per instance divides by GroupInServiceInstances), the
  stack's tags propagated to instances (provider default tags do not reach ASG-launched instances),
  and rolling instance refresh when the launch template changes.

Sizes, market split, warm pool and scaling numbers come from ``scaling_plan.fleet_plan`` (which the
capacity planner simulates too). See docs/fleet.md for the user's view and the scaling arithmetic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components import cluster_iam, cluster_scaling, launch_template, naming, user_data, worker_prices
from components.config import ClusterSettings, QueueSettings, StackIdentity, Tags
from components.queue_endpoint import KafkaEndpoint, QueueEndpoint, SqsEndpoint
from components.scaling_plan import LAUNCHING_HOOK, TERMINATING_HOOK, GroupPlan, fleet_plan
from runtime import metric_names

GIB = 1024**3
CACHE_BYTES = 100 * GIB  # fits the smallest instance-store NVMe of the default types and the root fallback
WARM_POOL_CACHE_BYTES = 250 * GIB  # on the larger EBS root of warm-pool instances


@dataclass
class InferenceClusterArgs:
    stack: StackIdentity
    """``FleetConfig.identity``: the agent's stack and region, log group and parameter names."""
    cluster: ClusterSettings
    """``FleetConfig.cluster``: flavor and AMI, instance types, sizes, spot, warm pool, backend, hot models,
    scaling targets."""
    queue_settings: QueueSettings
    """``FleetConfig.queue``: the job time limit (hook heartbeat, agent), attempts, lease, model groups."""
    tags: Tags
    """``FleetConfig.tags``: propagated to instances (provider default tags do not reach them)."""
    vpc_id: pulumi.Input[str]
    """VPC of the workers' security group."""
    private_subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Private subnets (two or more AZs) the groups launch into."""
    queue: QueueEndpoint
    """Where jobs come from (RequestQueue.endpoint): agent config, IAM scope, scaling metric, Kafka client group."""
    model_store_bucket_name: pulumi.Input[str]
    """Model store bucket the workers read models from."""
    model_store_bucket_arn: pulumi.Input[str]
    """Its ARN (read-only access)."""
    outputs_bucket_name: pulumi.Input[str]
    """Bucket the workers upload outputs to, under ``outputs_prefix``."""
    outputs_bucket_arn: pulumi.Input[str]
    """Its ARN (PutObject under the prefix only)."""
    cdn_domain: pulumi.Input[str]
    """CloudFront domain serving the outputs bucket; output links are ``https://<domain>/<key>``."""
    job_table_name: pulumi.Input[str]
    """DynamoDB job table (docs/CONTRACTS.md)."""
    job_table_arn: pulumi.Input[str]
    """Its ARN (GetItem, PutItem, UpdateItem)."""
    outputs_prefix: str = "outputs"
    """Key prefix of outputs in the outputs bucket; the only place workers may write."""
    event_table_name: pulumi.Input[str] | None = None
    """The job event log (components/job_event_log.py): the agent writes progress events there; None: none."""
    event_table_arn: pulumi.Input[str] | None = None
    """Its ARN (BatchWriteItem only)."""


class InferenceCluster(pulumi.ComponentResource):
    """Worker groups, their role, security group, launch templates, lifecycle hooks and scaling."""

    spot_group_name: pulumi.Output[str]
    on_demand_group_name: pulumi.Output[str | None]
    group_names: pulumi.Output[list[str]]
    role_arn: pulumi.Output[str]
    role_name: pulumi.Output[str]
    instance_profile_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]
    ami_id: pulumi.Output[str]

    def __init__(self, name: str, args: InferenceClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("genai:cluster:InferenceCluster", name, None, opts)
        self._name, self._args = name, args
        self._plan = plan = fleet_plan(args.cluster, args.queue_settings)
        if args.queue.kind != args.queue_settings.kind:
            raise ValueError(f"InferenceClusterArgs.queue is a {args.queue.kind} endpoint but queueKind is "
                             f"{args.queue_settings.kind} (InferenceClusterArgs.queue_settings)")
        role, profile = cluster_iam.create_instance_role(name, self)
        sg = launch_template.create_security_group(name, args.vpc_id, self)
        self._image_id, self._root_device = launch_template.find_ami(args.cluster, self)
        self._profile_arn = profile.arn
        kafka = args.queue if isinstance(args.queue, KafkaEndpoint) else None
        self._sg_ids = [sg.id] + ([kafka.client_security_group_id] if kafka else [])

        # The role's policy exists before any group does: an instance of prod's base capacity launches as soon
        # as its group is created, and its first calls (the CloudWatch agent's fetch-config, the launching
        # hook) need the policy. The groups' names are fixed, so the policy can name them first.
        plans = [plan.spot] + ([plan.on_demand] if plan.on_demand is not None else [])
        access = cluster_iam.attach_instance_policy(
            name, role, self._policy_json([self._group_name(g) for g in plans]), self)
        spot = self._create_spot_group(plan.spot, access)
        groups = [spot]
        if plan.on_demand is not None:
            groups.append(self._create_on_demand_group(plan.on_demand, access))
        for g, group in zip(plan.groups, groups, strict=True):
            cluster_scaling.create_lifecycle_hooks(f"{name}-{g.suffix}", plan, group, self)
        names = [g.name for g in groups]
        if plan.has_scaling_policies:
            cluster_scaling.create_scaling_policies(f"{name}-spot", plan, args.cluster.flavor, spot, names,
                                                    args.queue.backlog_metric, self)

        self.spot_group_name = spot.name
        self.on_demand_group_name = groups[1].name if len(groups) > 1 else pulumi.Output.from_input(None)
        self.group_names = pulumi.Output.all(*names)
        self.role_arn, self.role_name = role.arn, role.name
        self.instance_profile_arn = profile.arn
        self.security_group_id = sg.id
        self.ami_id = self._image_id
        self.register_outputs({
            "spot_group_name": self.spot_group_name, "on_demand_group_name": self.on_demand_group_name,
            "group_names": self.group_names, "role_arn": self.role_arn, "role_name": self.role_name,
            "instance_profile_arn": self.instance_profile_arn, "security_group_id": self.security_group_id,
            "ami_id": self.ami_id,
        })

    # --- launch templates ----------------------------------------------------------------------------
    def _user_data(self, cache_dir: str, cache_bytes: int) -> pulumi.Output[str]:
        a, stack, cluster, settings = self._args, self._args.stack, self._args.cluster, self._args.queue_settings
        sqs, kafka = _variants(a.queue)
        values = pulumi.Output.all(
            queue_url=sqs and sqs.queue_url, bootstrap_servers=kafka and kafka.bootstrap_brokers,
            group_queue_urls=pulumi.Output.all(*(g.queue_url for g in (sqs.groups if sqs else ()))),
            job_table=a.job_table_name, event_table=a.event_table_name,
            outputs_bucket=a.outputs_bucket_name, cdn_domain=a.cdn_domain, model_store_bucket=a.model_store_bucket_name)
        agent = values.apply(lambda v: user_data.AgentSettings(
            stack=stack.stack, region=stack.region, queue_kind=settings.kind, backend=cluster.backend,
            launching_hook=LAUNCHING_HOOK, terminating_hook=TERMINATING_HOOK,
            cache_dir=cache_dir, max_cache_bytes=cache_bytes, max_job_seconds=settings.max_job_seconds,
            task_max_job_seconds=settings.task_max_job_seconds,
            max_receive_count=settings.max_receive_count,
            visibility_timeout_seconds=settings.visibility_timeout_seconds, hot_models=cluster.hot_models,
            model_groups=settings.model_groups, **_kafka_names(a.queue), outputs_prefix=a.outputs_prefix,
            metrics_log_group=naming.log_group_names(stack)["metrics"],
            pricing=worker_prices.published_prices(stack.region,
                                                   [t for g in self._plan.groups for t in g.instance_types]),
            **v))
        parameter = naming.agent_parameter_name(stack)
        return agent.apply(lambda s: user_data.encode(
            user_data.user_data_script(user_data.agent_config_json(s), parameter)))

    def _launch_template(self, suffix: str, *, cache_dir: str, cache_bytes: int, root_gib: int,
                         instance_type: str | None = None) -> aws.ec2.LaunchTemplate:
        return launch_template.create_launch_template(
            f"{self._name}-{suffix}", image_id=self._image_id, root_device=self._root_device,
            instance_profile_arn=self._profile_arn, security_group_ids=self._sg_ids,
            user_data=self._user_data(cache_dir, cache_bytes), tags=self._args.tags.as_dict(),
            root_volume_gib=root_gib, instance_type=instance_type, parent=self)

    # --- groups --------------------------------------------------------------------------------------
    def _group_tags(self, suffix: str) -> list[dict]:
        tags = {**self._args.tags.as_dict(), "Name": f"{self._name}-{suffix}"}
        return [{"key": k, "value": v, "propagate_at_launch": True} for k, v in tags.items()]

    def _common(self, suffix: str, warm_pool: bool = False) -> dict[str, Any]:
        metrics = [m for m in cluster_scaling.ENABLED_METRICS if warm_pool or not m.startswith("WarmPool")]
        return {
            "vpc_zone_identifiers": self._args.private_subnet_ids,
            "initial_lifecycle_hooks": cluster_scaling.lifecycle_hooks(self._plan),
            "health_check_type": "EC2", "health_check_grace_period": self._plan.health_check_grace,
            "default_instance_warmup": self._plan.instance_warmup,
            "metrics_granularity": "1Minute", "enabled_metrics": metrics,
            # Do not block `pulumi up` on capacity: instances join only after the launching hook.
            "wait_for_capacity_timeout": "0",
            # Outside production `pulumi destroy` terminates the instances without waiting for them to drain
            # (instances running a job are scale-in protected, so a drain could wait past the delete timeout).
            "force_delete": not self._args.stack.is_production,
            "force_delete_warm_pool": not self._args.stack.is_production,
            "tags": self._group_tags(suffix),
        }

    def _group_name(self, g: GroupPlan) -> str:
        """Fixed physical name (the instance policy names it before the group exists)."""
        return f"{self._args.stack.resource_prefix()}-{g.suffix}"

    def _create_spot_group(self, g: GroupPlan, access: pulumi.Resource) -> aws.autoscaling.Group:
        lt = self._launch_template(g.suffix, cache_dir=user_data.NVME_CACHE_DIR, cache_bytes=CACHE_BYTES,
                                   root_gib=launch_template.ROOT_VOLUME_GIB)
        return aws.autoscaling.Group(
            f"{self._name}-{g.suffix}", name=self._group_name(g),
            min_size=g.min_size, max_size=g.max_size,
            capacity_rebalance=g.capacity_rebalance,
            mixed_instances_policy={
                "instances_distribution": {
                    "on_demand_base_capacity": 0,
                    "on_demand_percentage_above_base_capacity": g.on_demand_percent,
                    "on_demand_allocation_strategy": "prioritized",  # instanceTypes are in order of preference
                    "spot_allocation_strategy": self._args.cluster.spot_allocation_strategy,
                },
                "launch_template": {
                    "launch_template_specification": {"launch_template_id": lt.id,
                                                      "version": lt.latest_version.apply(str)},
                    "overrides": [{"instance_type": t} for t in g.instance_types],
                },
            },
            instance_refresh={"strategy": "Rolling", "preferences": {
                "min_healthy_percentage": 100, "max_healthy_percentage": 200, "scale_in_protected_instances": "Wait"}},
            **self._common(g.suffix),
            # Scaling policies own the desired capacity.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desired_capacity"], depends_on=[access]))

    def _create_on_demand_group(self, g: GroupPlan, access: pulumi.Resource) -> aws.autoscaling.Group:
        warm = g.warm_pool_size > 0
        lt = self._launch_template(
            g.suffix, instance_type=g.instance_types[0],
            cache_dir=user_data.EBS_CACHE_DIR if warm else user_data.NVME_CACHE_DIR,
            cache_bytes=WARM_POOL_CACHE_BYTES if warm else CACHE_BYTES,
            root_gib=launch_template.WARM_POOL_ROOT_VOLUME_GIB if warm else launch_template.ROOT_VOLUME_GIB)
        warm_pool = {"pool_state": "Stopped", "min_size": g.warm_pool_size,
                     "max_group_prepared_capacity": g.warm_pool_max_prepared,
                     "instance_reuse_policy": {"reuse_on_scale_in": True}} if warm else None
        return aws.autoscaling.Group(
            f"{self._name}-{g.suffix}", name=self._group_name(g),
            min_size=g.min_size, max_size=g.max_size, desired_capacity=g.desired_capacity,
            launch_template={"id": lt.id, "version": lt.latest_version.apply(str)},
            warm_pool=warm_pool,
            instance_refresh={"strategy": "Rolling", "preferences": {
                "min_healthy_percentage": 50, "scale_in_protected_instances": "Wait"}},
            **self._common(g.suffix, warm_pool=warm),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[access]))

    # --- IAM -----------------------------------------------------------------------------------------
    def _policy_json(self, group_names: Sequence[pulumi.Input[str]]) -> pulumi.Output[str]:
        a, stack = self._args, self._args.stack
        sqs, kafka = _variants(a.queue)
        values: dict[str, pulumi.Input] = {
            "model_store_bucket_arn": a.model_store_bucket_arn, "outputs_bucket_arn": a.outputs_bucket_arn,
            "job_table_arn": a.job_table_arn, "queue_arn": sqs and sqs.queue_arn, "event_table_arn": a.event_table_arn,
            "group_queue_arns": pulumi.Output.all(*(g.queue_arn for g in (sqs.groups if sqs else ()))),
            "kafka_cluster_arn": kafka and kafka.cluster_arn}
        params = [naming.agent_parameter_name(stack)]
        scope = cluster_iam.scope_output(
            cfg_region=stack.region, queue_kind=a.queue.kind, values=values, group_names=group_names,
            log_group_names=list(naming.log_group_names(stack).values()), parameter_names=params, parent=self,
            **_kafka_names(a.queue, dlq=True), outputs_prefix=a.outputs_prefix,
            metric_namespaces=_metric_namespaces(a.cluster.flavor))
        return scope.apply(lambda s: json.dumps(cluster_iam.instance_policy_document(s)))


def _metric_namespaces(flavor: str) -> tuple[str, ...]:
    """The worker's EMF namespace, the CloudWatch agent's, and the accelerator metric's (neuron-monitor)."""
    accelerator = cluster_scaling.ACCELERATOR_METRIC[flavor][0]
    return tuple(dict.fromkeys((metric_names.NAMESPACE, cluster_iam.CLOUDWATCH_AGENT_NAMESPACE, accelerator)))


def _variants(queue: QueueEndpoint) -> tuple[SqsEndpoint | None, KafkaEndpoint | None]:
    return (queue, None) if isinstance(queue, SqsEndpoint) else (None, queue)


def _kafka_names(queue: QueueEndpoint, dlq: bool = False) -> dict[str, str]:
    """Topic and group keywords for the agent settings (and the IAM scope, with the DLQ topic); none for SQS."""
    if not isinstance(queue, KafkaEndpoint):
        return {}
    names = {"kafka_topic": queue.topic, "kafka_group": queue.group}
    return {**names, "kafka_dlq_topic": queue.dlq_topic} if dlq else names
