"""Job event log: the DynamoDB table of per-job progress and status events (issue 38; runtime/jobs/events.py).

A table of its own, not items in the job table: the job table's stream drives the webhook and output-sweeper
functions (components/job_events.py, whose mappings filter on ``eventName`` only), and a progress write there
would invoke them. Its own stream (new images) feeds only the opt-in ``progress`` webhook function, whose
mapping passes only the items the worker marked ``notify`` (components/job_events.py). Key: ``job_id`` (hash)
and ``cursor`` (range, ``<lease>.<seq>``); items expire through TTL on ``expires_at`` (``EVENT_TTL_SECONDS``
after the write, docs/api.md "Job events"). The worker role may BatchWriteItem into it, the API role Query it
(components/cluster_iam.py, components/api.py), the progress webhook function read its stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import StackIdentity

HASH_KEY, RANGE_KEY = "job_id", "cursor"
TTL_ATTRIBUTE = "expires_at"


@dataclass
class JobEventLogArgs:
    stack: StackIdentity
    """``FleetConfig.identity``: the table's name; production stacks also get deletion protection."""


class JobEventLog(pulumi.ComponentResource):
    """On-demand DynamoDB table with TTL and encryption at rest; a new-image stream (progress webhooks); no index."""

    table_name: pulumi.Output[str]
    table_arn: pulumi.Output[str]
    stream_arn: pulumi.Output[str]

    def __init__(self, name: str, args: JobEventLogArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("genai:storage:JobEventLog", name, None, opts)
        stack = args.stack
        table = aws.dynamodb.Table(
            f"{name}-table",
            name=f"{stack.resource_prefix()}-job-events",
            billing_mode="PAY_PER_REQUEST",
            hash_key=HASH_KEY, range_key=RANGE_KEY,
            attributes=[{"name": HASH_KEY, "type": "S"}, {"name": RANGE_KEY, "type": "S"}],
            ttl={"attribute_name": TTL_ATTRIBUTE, "enabled": True},
            server_side_encryption={"enabled": True},
            stream_enabled=True, stream_view_type="NEW_IMAGE",  # the opt-in progress webhook (issue 38)
            deletion_protection_enabled=stack.is_production,
            tags={"Name": f"{stack.resource_prefix()}-job-events"},
            opts=pulumi.ResourceOptions(parent=self))
        self.table_name = table.name
        self.table_arn = table.arn
        self.stream_arn = table.stream_arn
        self.register_outputs({"table_name": self.table_name, "table_arn": self.table_arn,
                               "stream_arn": self.stream_arn})
