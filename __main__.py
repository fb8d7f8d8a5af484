"""genai-fleet: read the stack config, build the components, export what users need.

Nothing else lives here: every resource is declared inside a component in ``components/``.
"""

import pulumi
import pulumi_aws as aws

from components import config as fleet_config
from components import naming, teardown
from components.api import Api, ApiArgs
from components.cdn_storage import CdnStorage, CdnStorageArgs
from components.inference_cluster import InferenceCluster, InferenceClusterArgs
from components.job_event_log import JobEventLog, JobEventLogArgs
from components.job_events import JobEvents, JobEventsArgs
from components.job_store import JobStore, JobStoreArgs
from components.model_store import ModelStore, ModelStoreArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.output_link_access import OutputLinkAccess
from components.prerequisites import require as require_prerequisites
from components.request_queue import RequestQueue, RequestQueueArgs
from runtime.backends.base import lora_tasks, served_tasks, video_capabilities

# Fails with every bad key listed before any resource is declared.
cfg = fleet_config.from_pulumi()
# Production keeps its data on destroy (protect + retain_on_delete, components/teardown.py); dev deletes cleanly.
teardown.register(cfg.is_production)

# One provider carries the required tags to every taggable resource (Project, Environment, Owner,
# CostCenter); components inherit it through their parent chain.
provider = aws.Provider(
    "aws",
    region=cfg.region,
    default_tags=aws.ProviderDefaultTagsArgs(tags=cfg.tags.as_dict()),
)
opts = pulumi.ResourceOptions(providers=[provider])
# AMI, webhook secret, API key, Lambda quota: a missing one fails the preview naming the command that makes it.
require_prerequisites(cfg, provider)

# Each component takes the slices of the config it reads (``stack`` is the identity: stack, region, environment).
stack = cfg.identity
network = Network("network", NetworkArgs(network=cfg.network, region=cfg.region), opts=opts)
models = ModelStore("models", ModelStoreArgs(stack=stack), opts=opts)
outputs = CdnStorage("outputs", CdnStorageArgs(stack=stack, storage=cfg.storage, access=cfg.outputs), opts=opts)
# output links (issue 43): made on the CDN when handed out, signed with the stack's key unless outputs are public
output_links = OutputLinkAccess(base_url=pulumi.Output.concat("https://", outputs.cdn_domain),
                                ttl_seconds=cfg.outputs.url_ttl_seconds, key_id=outputs.signing_key_id,
                                key_parameter=outputs.signing_key_parameter)
jobs = JobStore("jobs", JobStoreArgs(stack=stack, storage=cfg.storage), opts=opts)
job_events = JobEventLog("job-events", JobEventLogArgs(stack=stack), opts=opts)  # progress events (issue 38)
queue = RequestQueue("queue", RequestQueueArgs(
    stack=stack, queue=cfg.queue, storage=cfg.storage, max_workers=cfg.cluster.max_size,
    vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
), opts=opts)
cluster = InferenceCluster("cluster", InferenceClusterArgs(
    stack=stack, cluster=cfg.cluster, queue_settings=cfg.queue, tags=cfg.tags,
    vpc_id=network.vpc_id, private_subnet_ids=network.private_subnet_ids, queue=queue.endpoint,
    model_store_bucket_name=models.bucket_name, model_store_bucket_arn=models.bucket_arn,
    outputs_bucket_name=outputs.bucket_name, outputs_bucket_arn=outputs.bucket_arn, cdn_domain=outputs.cdn_domain,
    job_table_name=jobs.table_name, job_table_arn=jobs.table_arn,
    event_table_name=job_events.table_name, event_table_arn=job_events.table_arn,
), opts=opts)
api = Api("api", ApiArgs(
    stack=stack, api=cfg.api, storage=cfg.storage, job_table_name=jobs.table_name, job_table_arn=jobs.table_arn,
    queue=queue.endpoint, average_job_seconds=cfg.cluster.average_job_seconds, hot_models=cfg.cluster.hot_models,
    model_groups=cfg.queue.model_groups, model_bucket_name=models.bucket_name, model_bucket_arn=models.bucket_arn,
    tasks=served_tasks(cfg.cluster.backend), lora_tasks=lora_tasks(cfg.cluster.backend),
    video_formats=video_capabilities(cfg.cluster.backend)[0],
    video_model_kinds=video_capabilities(cfg.cluster.backend)[1],
    event_table_name=job_events.table_name, event_table_arn=job_events.table_arn,
    instance_type=cfg.cluster.instance_types[0],
    # the node catalog of the fleet's image (issue 41): the cluster's own AMI lookup
    comfyui_image=(cfg.cluster.flavor, cluster.ami_id) if cfg.cluster.backend == "comfyui" else None,
    output_links=output_links,  # output links made when handed out (issue 43)
), opts=opts)
# Dead letters and dead workers end final; webhooks come from the table's stream, never from a worker.
# The webhook secret is a SecureString the operator creates once per environment (README: "Webhook signing secret").
events = JobEvents("events", JobEventsArgs(
    stack=stack, storage=cfg.storage, max_attempts=cfg.queue.max_receive_count,
    job_table_name=jobs.table_name, job_table_arn=jobs.table_arn, job_table_stream_arn=jobs.stream_arn,
    webhook_secret_parameter_name=naming.webhook_secret_parameter(stack), api_url=api.api_url, queue=queue.endpoint,
    outputs_bucket_name=outputs.bucket_name, outputs_bucket_arn=outputs.bucket_arn,
    event_table_stream_arn=job_events.stream_arn,  # opt-in progress webhooks (issue 38)
    output_links=output_links,  # the sender makes output links at send time (issue 43)
), opts=opts)
monitoring = Monitoring("monitoring", MonitoringArgs(
    stack=stack, monitoring=cfg.monitoring, storage=cfg.storage, cluster=cfg.cluster, queue_settings=cfg.queue,
    queue=queue.endpoint, spot_group_name=cluster.spot_group_name,
    on_demand_group_name=cluster.on_demand_group_name if cfg.cluster.on_demand_base > 0 else None,
    api_id=api.api_id,
), opts=opts)

pulumi.export("apiUrl", api.api_url)
pulumi.export("apiKeysPrefix", api.api_keys_prefix)
pulumi.export("environment", cfg.environment)
pulumi.export("region", cfg.region)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("modelStoreBucket", models.bucket_name)
pulumi.export("outputsBucket", outputs.bucket_name)
pulumi.export("cdnDomain", outputs.cdn_domain)
pulumi.export("jobTable", jobs.table_name)
pulumi.export("queueKind", queue.endpoint.kind)
for key, value in queue.endpoint.exports().items():
    pulumi.export(key, value)
pulumi.export("webhookDeadLetterQueueUrl", events.webhook_dlq_url)
pulumi.export("spotGroupName", cluster.spot_group_name)
pulumi.export("onDemandGroupName", cluster.on_demand_group_name)
pulumi.export("workerRoleArn", cluster.role_arn)
pulumi.export("amiId", cluster.ami_id)
pulumi.export("dashboardUrl", monitoring.dashboard_url)
pulumi.export("alarmTopicArn", monitoring.alarm_topic_arn)
