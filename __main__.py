"""genai-fleet: read the stack config, build the components, export what users need.

Nothing else lives here: every resource is declared inside a component in ``components/``.
"""

import pulumi
import pulumi_aws as aws

from components import config as fleet_config
from components.cdn_storage import CdnStorage, CdnStorageArgs
from components.job_store import JobStore, JobStoreArgs
from components.model_store import ModelStore, ModelStoreArgs
from components.network import Network, NetworkArgs
from components.request_queue import RequestQueue, RequestQueueArgs

# Fails with every bad key listed before any resource is declared.
cfg = fleet_config.from_pulumi()

# One provider carries the required tags to every taggable resource (Project, Environment, Owner,
# CostCenter); components inherit it through their parent chain.
provider = aws.Provider(
    "aws",
    region=cfg.region,
    default_tags=aws.ProviderDefaultTagsArgs(tags=cfg.tags.as_dict()),
)
opts = pulumi.ResourceOptions(providers=[provider])

network = Network("network", NetworkArgs(config=cfg), opts=opts)
models = ModelStore("models", ModelStoreArgs(config=cfg), opts=opts)
outputs = CdnStorage("outputs", CdnStorageArgs(config=cfg,
                                               signing_public_key_pem=cfg.storage.outputs_signing_public_key),
                     opts=opts)
jobs = JobStore("jobs", JobStoreArgs(config=cfg), opts=opts)
queue = RequestQueue("queue", RequestQueueArgs(config=cfg, vpc_id=network.vpc_id,
                                               subnet_ids=network.private_subnet_ids), opts=opts)

pulumi.export("environment", cfg.environment)
pulumi.export("region", cfg.region)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("modelStoreBucket", models.bucket_name)
pulumi.export("outputsBucket", outputs.bucket_name)
pulumi.export("cdnDomain", outputs.cdn_domain)
pulumi.export("jobTable", jobs.table_name)
pulumi.export("queueKind", cfg.queue.kind)
if cfg.queue.kind == "sqs":
    pulumi.export("queueUrl", queue.queue_url)
    pulumi.export("deadLetterQueueUrl", queue.dlq_url)
else:
    pulumi.export("kafkaBootstrapBrokers", queue.bootstrap_brokers)
