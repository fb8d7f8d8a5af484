"""Job store: the DynamoDB table for job records and idempotency keys (docs/CONTRACTS.md, "Job table").

One table, partition key ``pk`` (string), no sort key: ``job#<job_id>`` items are read by id and
``idem#<api_key_id>#<sha256(Idempotency-Key)>`` items are checked with a conditional put in the same
transaction, so neither access path needs an index. Items carry ``expires_at`` (epoch seconds) and
DynamoDB's TTL removes them after that.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import FleetConfig

PARTITION_KEY = "pk"
TTL_ATTRIBUTE = "expires_at"


@dataclass
class JobStoreArgs:
    config: FleetConfig
    """Stack config: ``storage.point_in_time_recovery``; production stacks also get deletion protection."""


class JobStore(pulumi.ComponentResource):
    """On-demand DynamoDB table with TTL, encryption and point-in-time recovery when config asks."""

    table_name: pulumi.Output[str]
    table_arn: pulumi.Output[str]

    def __init__(self, name: str, args: JobStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("genai:storage:JobStore", name, None, opts)
        table = self._create_table(name, args.config)
        self.table_name = table.name
        self.table_arn = table.arn
        self.register_outputs({"table_name": self.table_name, "table_arn": self.table_arn})

    def _create_table(self, name: str, cfg: FleetConfig) -> aws.dynamodb.Table:
        return aws.dynamodb.Table(
            f"{name}-table",
            name=f"{cfg.resource_prefix()}-jobs",
            billing_mode="PAY_PER_REQUEST",
            hash_key=PARTITION_KEY,
            attributes=[{"name": PARTITION_KEY, "type": "S"}],
            ttl={"attribute_name": TTL_ATTRIBUTE, "enabled": True},
            point_in_time_recovery={"enabled": cfg.storage.point_in_time_recovery},
            server_side_encryption={"enabled": True},
            deletion_protection_enabled=cfg.is_production,
            tags={"Name": f"{cfg.resource_prefix()}-jobs"},
            opts=pulumi.ResourceOptions(parent=self))
