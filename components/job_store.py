"""Job store: the DynamoDB table for job records and idempotency keys (docs/CONTRACTS.md, "Job table").

One table, partition key ``pk`` (string), no sort key: ``job#<job_id>`` items are read by id and
``idem#<api_key_id>#<sha256(Idempotency-Key)>`` items are checked with a conditional put in the same
transaction. The sparse index ``running-by-lease`` (``running_index``, ``lease_expires_at``) holds only
jobs whose lease a worker holds, so the lease sweeper finds dead workers' jobs without a scan; the
index ``owner-by-created`` (``owner``, ``created_at``; all attributes projected) holds job items only
and serves ``GET /v1/jobs`` (a caller's jobs, newest first) with one Query per page; the sparse index
``queued-by-deadline`` (``deadline_index``, ``deadline_at``) holds only never-started queued jobs with a
deadline, so the sweeper cancels expired ones without a scan (issue 44, runtime/jobs/deadlines.py); the
stream (new and old images) feeds the webhook dispatcher (components/job_events.py). Items carry
``expires_at`` (epoch seconds) and DynamoDB's TTL removes them after that.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import StackIdentity, StorageSettings
from runtime.jobs.attempts import LEASE_EXPIRES, RUNNING_INDEX, RUNNING_INDEX_KEY
from runtime.jobs.deadlines import DEADLINE_AT, DEADLINE_INDEX, DEADLINE_INDEX_KEY
from runtime.jobs.store import OWNER_INDEX, OWNER_INDEX_KEY, OWNER_INDEX_SORT

PARTITION_KEY = "pk"
TTL_ATTRIBUTE = "expires_at"


@dataclass
class JobStoreArgs:
    stack: StackIdentity
    """``FleetConfig.identity``: the table's name; production stacks also get deletion protection."""
    storage: StorageSettings
    """``FleetConfig.storage``: ``point_in_time_recovery``."""


class JobStore(pulumi.ComponentResource):
    """On-demand DynamoDB table with TTL, encryption and point-in-time recovery when config asks."""

    table_name: pulumi.Output[str]
    table_arn: pulumi.Output[str]
    stream_arn: pulumi.Output[str]

    def __init__(self, name: str, args: JobStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("genai:storage:JobStore", name, None, opts)
        table = self._create_table(name, args)
        self.table_name = table.name
        self.table_arn = table.arn
        self.stream_arn = table.stream_arn
        self.register_outputs({"table_name": self.table_name, "table_arn": self.table_arn,
                               "stream_arn": self.stream_arn})

    def _create_table(self, name: str, args: JobStoreArgs) -> aws.dynamodb.Table:
        stack = args.stack
        return aws.dynamodb.Table(
            f"{name}-table",
            name=f"{stack.resource_prefix()}-jobs",
            billing_mode="PAY_PER_REQUEST",
            hash_key=PARTITION_KEY,
            attributes=[{"name": PARTITION_KEY, "type": "S"}, {"name": RUNNING_INDEX_KEY, "type": "S"},
                        {"name": LEASE_EXPIRES, "type": "N"}, {"name": OWNER_INDEX_KEY, "type": "S"},
                        {"name": OWNER_INDEX_SORT, "type": "N"},
                        {"name": DEADLINE_INDEX_KEY, "type": "S"}, {"name": DEADLINE_AT, "type": "N"}],
            global_secondary_indexes=[{"name": RUNNING_INDEX, "hash_key": RUNNING_INDEX_KEY,
                                       "range_key": LEASE_EXPIRES, "projection_type": "KEYS_ONLY"},
                                      {"name": OWNER_INDEX, "hash_key": OWNER_INDEX_KEY,
                                       "range_key": OWNER_INDEX_SORT, "projection_type": "ALL"},
                                      # issue 44: never-started queued jobs by deadline (runtime.jobs.deadlines)
                                      {"name": DEADLINE_INDEX, "hash_key": DEADLINE_INDEX_KEY,
                                       "range_key": DEADLINE_AT, "projection_type": "KEYS_ONLY"}],
            stream_enabled=True, stream_view_type="NEW_AND_OLD_IMAGES",
            ttl={"attribute_name": TTL_ATTRIBUTE, "enabled": True},
            point_in_time_recovery={"enabled": args.storage.point_in_time_recovery},
            server_side_encryption={"enabled": True},
            deletion_protection_enabled=stack.is_production,
            tags={"Name": f"{stack.resource_prefix()}-jobs"},
            opts=pulumi.ResourceOptions(parent=self))
