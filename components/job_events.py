"""Job events: the functions that make every accepted job end final and tell its webhook, off the workers.

- ``dead-letters``: SQS event source on the jobs DLQ -> ``runtime.functions.reconciler.dead_letter_handler`` marks
  each dead-lettered job failed with its attempt history (queueKind sqs; the Kafka agent fails a job
  before it writes the DLQ topic, and the sweeper covers crashes).
- ``sweeper``: every ``SWEEP_MINUTES`` -> ``runtime.functions.reconciler.sweep_handler`` requeues or fails jobs whose
  worker stopped renewing its lease (sparse index on the job table).
- ``webhook-stream``: the job table's stream -> ``runtime.functions.webhook_dispatch.stream_handler`` writes one
  message per webhook (payload captured at the change) to the deliveries queue.
- ``webhook-sender``: deliveries queue -> ``runtime.functions.webhook_dispatch.sender_handler``: one short try per
  message, backoff through the queue, a DLQ after ``WEBHOOK_MAX_RECEIVES`` tries. Each delivery is its
  own message, so a hanging receiver costs one invocation's few seconds and delays nobody else.
- ``webhook-progress`` (when ``event_table_stream_arn`` is given): the job event log's stream, only the event items
  the worker marked ``notify = "progress"`` (a mapping filter: unmarked ones invoke nothing) ->
  ``runtime.functions.webhook_dispatch.progress_stream_handler``: one GetItem of the job, one delivery message.
- ``output-sweeper``: the job table's stream, final transitions only ->
  ``runtime.functions.output_orphans.stream_handler`` deletes the objects under ``outputs/<job>/`` that the
  final record does not point at (attempts whose worker was killed after uploading). It may list only under
  ``outputs/`` and delete only there.

The functions run outside the VPC (the sender must reach the internet; the others only call AWS APIs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import lambda_package
from components.config import StackIdentity, StorageSettings
from components.function_policy import policy_json
from components.output_link_access import OutputLinkAccess
from components.queue_endpoint import QueueEndpoint, SqsEndpoint
from components.request_queue import DLQ_CONSUMER_TIMEOUT_SECONDS
from runtime.jobs.events import NOTIFY_ATTRIBUTE, NOTIFY_PROGRESS

SWEEP_MINUTES = 5
STALE_LEASE_SECONDS = 300  # ten lease lengths: a live worker renews every 10 s
WEBHOOK_MAX_RECEIVES = 8  # tries before the deliveries DLQ (backoff reaches 15 minutes)
WEBHOOK_TIMEOUT_S = 30  # function timeout; one try is capped at 5 s inside it
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
OUTPUTS_PREFIX = "outputs"  # runtime/worker/outputs.py's default prefix; the agent config sets the same
FINAL_STATUSES = ("succeeded", "failed", "canceled")


@dataclass
class JobEventsArgs:
    stack: StackIdentity
    """``FleetConfig.identity``: function and queue names, the secret's ARN (region)."""

    storage: StorageSettings
    """``FleetConfig.storage``: ``log_retention_days`` of the functions' log groups."""

    max_attempts: int
    """``FleetConfig.queue.max_receive_count``: attempts a job gets before the reconciler makes it final."""

    job_table_name: pulumi.Input[str]
    job_table_arn: pulumi.Input[str]
    job_table_stream_arn: pulumi.Input[str]
    """The job table and its stream (components/job_store.py)."""

    webhook_secret_parameter_name: str
    """SSM SecureString holding the webhook signing secret (created by the operator, see the README)."""

    api_url: pulumi.Input[str]
    """Links in webhook payloads (``urls.get`` / ``urls.cancel``)."""

    queue: QueueEndpoint
    """RequestQueue.endpoint: an SQS endpoint's DLQ feeds the dead-letter consumer (Kafka workers write
    poison jobs final themselves)."""

    outputs_bucket_name: pulumi.Input[str]
    outputs_bucket_arn: pulumi.Input[str]
    """The outputs bucket (components/cdn_storage.py): the output sweeper lists and deletes under
    ``outputs/`` there, and nowhere else."""

    # issue 38: the opt-in progress webhook
    event_table_stream_arn: pulumi.Input[str] | None = None
    """The job event log's stream (components/job_event_log.py): marked progress events become ``progress``
    webhooks; None: no progress webhooks."""
    # issue 43: output links
    output_links: OutputLinkAccess | None = None
    """The CDN serving the outputs and the signing key: the webhook sender makes output URLs at send time."""


class JobEvents(pulumi.ComponentResource):
    webhook_queue_url: pulumi.Output[str]
    webhook_dlq_url: pulumi.Output[str]

    def __init__(self, name: str, args: JobEventsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("genai:events:JobEvents", name, None, opts)
        self._name, self._args, self._stack = name, args, args.stack
        self._code = lambda_package.api_code_archive()
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id
        self._account = account
        self._secret_arn = account.apply(lambda acct: (
            f"arn:aws:ssm:{self._stack.region}:{acct}:parameter/{args.webhook_secret_parameter_name.lstrip('/')}"))
        table_env = {"GENAI_JOB_TABLE": args.job_table_name,
                     "GENAI_MAX_ATTEMPTS": str(args.max_attempts)}
        table_rw = {"sid": "JobTable", "actions": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
                    "resources": [args.job_table_arn]}
        if isinstance(args.queue, SqsEndpoint):
            dlq_arn = args.queue.dlq_arn
            fn = self._function("dead-letters", "runtime.functions.reconciler.dead_letter_handler", [table_rw, {
                "sid": "JobsDlq", "actions": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                "resources": [dlq_arn]}], table_env, timeout=DLQ_CONSUMER_TIMEOUT_SECONDS)
            aws.lambda_.EventSourceMapping(f"{name}-dead-letters-source", event_source_arn=dlq_arn,
                                           function_name=fn.arn, batch_size=10,
                                           function_response_types=["ReportBatchItemFailures"], opts=self._opts())
        self._create_sweeper(table_rw, table_env)
        self._create_output_sweeper()
        self.webhook_queue_url, self.webhook_dlq_url = self._create_webhooks()
        self.register_outputs({"webhook_queue_url": self.webhook_queue_url, "webhook_dlq_url": self.webhook_dlq_url})

    def _opts(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def _create_sweeper(self, table_rw: dict, env: dict[str, pulumi.Input[str]]) -> None:
        index_arn = pulumi.Output.concat(self._args.job_table_arn, "/index/*")
        fn = self._function("sweeper", "runtime.functions.reconciler.sweep_handler", [table_rw, {
            "sid": "RunningIndex", "actions": ["dynamodb:Query"], "resources": [index_arn]}],
            {**env, "GENAI_STALE_LEASE_SECONDS": str(STALE_LEASE_SECONDS)})
        rule = aws.cloudwatch.EventRule(f"{self._name}-sweep-schedule",
                                        schedule_expression=f"rate({SWEEP_MINUTES} minutes)", opts=self._opts())
        aws.cloudwatch.EventTarget(f"{self._name}-sweep-target", rule=rule.name, arn=fn.arn, opts=self._opts())
        aws.lambda_.Permission(f"{self._name}-sweep-invoke", action="lambda:InvokeFunction", function=fn.name,
                               principal="events.amazonaws.com", source_arn=rule.arn, opts=self._opts())

    def _create_output_sweeper(self) -> None:
        a = self._args
        fn = self._function("output-sweeper", "runtime.functions.output_orphans.stream_handler", [
            {"sid": "ReadStream", "actions": ["dynamodb:DescribeStream", "dynamodb:GetRecords",
                                              "dynamodb:GetShardIterator"],
             "resources": [a.job_table_stream_arn]},
            # The event source mapping needs ListStreams, which has no resource-level permissions (Resource "*").
            {"sid": "ListStreams", "actions": ["dynamodb:ListStreams"], "resources": ["*"]},
            {"sid": "ListOutputs", "actions": ["s3:ListBucket"], "resources": [a.outputs_bucket_arn],
             "conditions": {"StringLike": {"s3:prefix": [f"{OUTPUTS_PREFIX}/*"]}}},
            {"sid": "DeleteOutputs", "actions": ["s3:DeleteObject"],
             "resources": [pulumi.Output.concat(a.outputs_bucket_arn, f"/{OUTPUTS_PREFIX}/*")]}],
            {"GENAI_OUTPUTS_BUCKET": a.outputs_bucket_name, "GENAI_OUTPUTS_PREFIX": OUTPUTS_PREFIX})
        aws.lambda_.EventSourceMapping(
            f"{self._name}-output-sweeper-source", event_source_arn=a.job_table_stream_arn,
            function_name=fn.arn, starting_position="LATEST", batch_size=100, maximum_retry_attempts=10,
            bisect_batch_on_function_error=True,
            filter_criteria={"filters": [{"pattern": json.dumps({
                "eventName": ["MODIFY"], "dynamodb": {"NewImage": {"status": {"S": list(FINAL_STATUSES)}}}})}]},
            opts=self._opts())

    def _create_webhooks(self) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        a, prefix = self._args, self._stack.resource_prefix()
        dlq = aws.sqs.Queue(f"{self._name}-webhooks-dlq", name=f"{prefix}-webhooks-dlq", sqs_managed_sse_enabled=True,
                            message_retention_seconds=DLQ_RETENTION_SECONDS, opts=self._opts())
        queue = aws.sqs.Queue(
            f"{self._name}-webhooks", name=f"{prefix}-webhooks", sqs_managed_sse_enabled=True,
            visibility_timeout_seconds=6 * WEBHOOK_TIMEOUT_S,  # AWS asks for 6x the function timeout
            redrive_policy=dlq.arn.apply(lambda arn: json.dumps(
                {"deadLetterTargetArn": arn, "maxReceiveCount": WEBHOOK_MAX_RECEIVES})), opts=self._opts())
        stream_fn = self._function("webhook-stream", "runtime.functions.webhook_dispatch.stream_handler", [
            {"sid": "ReadStream", "actions": ["dynamodb:DescribeStream", "dynamodb:GetRecords",
                                              "dynamodb:GetShardIterator"],
             "resources": [a.job_table_stream_arn]},
            # The event source mapping needs ListStreams, which has no resource-level permissions (Resource "*").
            {"sid": "ListStreams", "actions": ["dynamodb:ListStreams"], "resources": ["*"]},
            {"sid": "QueueDeliveries", "actions": ["sqs:SendMessage"], "resources": [queue.arn]}],
            {"GENAI_WEBHOOK_QUEUE_URL": queue.url, "GENAI_API_URL": a.api_url})
        aws.lambda_.EventSourceMapping(
            f"{self._name}-webhook-stream-source", event_source_arn=a.job_table_stream_arn,
            function_name=stream_fn.arn, starting_position="LATEST", batch_size=100,
            maximum_retry_attempts=10, bisect_batch_on_function_error=True,
            # only writes that can be an event: the first start, outputs, a final status
            filter_criteria={"filters": [{"pattern": json.dumps({"eventName": ["INSERT", "MODIFY"]})}]},
            opts=self._opts())
        sender_fn = self._function("webhook-sender", "runtime.functions.webhook_dispatch.sender_handler", [
            {"sid": "Deliveries", "actions": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                              "sqs:ChangeMessageVisibility"], "resources": [queue.arn]},
            {"sid": "WebhookSecret", "actions": ["ssm:GetParameter"], "resources": [self._secret_arn]},
            *self._output_links_statements()],
            {"GENAI_WEBHOOK_QUEUE_URL": queue.url,
             "GENAI_WEBHOOK_SECRET_PARAMETER": a.webhook_secret_parameter_name,
             **self._output_links_env()}, timeout=WEBHOOK_TIMEOUT_S)
        aws.lambda_.EventSourceMapping(f"{self._name}-webhook-sender-source", event_source_arn=queue.arn,
                                       function_name=sender_fn.arn, batch_size=1,
                                       function_response_types=["ReportBatchItemFailures"], opts=self._opts())
        if a.event_table_stream_arn is not None:
            self._create_progress_webhooks(queue)
        return queue.url, dlq.url

    def _create_progress_webhooks(self, queue: aws.sqs.Queue) -> None:
        """The opt-in ``progress`` webhook (issue 38): the event log's stream, marked items only, -> deliveries."""
        a = self._args
        fn = self._function("webhook-progress", "runtime.functions.webhook_dispatch.progress_stream_handler", [
            {"sid": "ReadStream", "actions": ["dynamodb:DescribeStream", "dynamodb:GetRecords",
                                              "dynamodb:GetShardIterator"],
             "resources": [a.event_table_stream_arn]},
            # The event source mapping needs ListStreams, which has no resource-level permissions (Resource "*").
            {"sid": "ListStreams", "actions": ["dynamodb:ListStreams"], "resources": ["*"]},
            {"sid": "ReadJob", "actions": ["dynamodb:GetItem"], "resources": [a.job_table_arn]},
            {"sid": "QueueDeliveries", "actions": ["sqs:SendMessage"], "resources": [queue.arn]}],
            {"GENAI_WEBHOOK_QUEUE_URL": queue.url, "GENAI_API_URL": a.api_url, "GENAI_JOB_TABLE": a.job_table_name})
        aws.lambda_.EventSourceMapping(
            f"{self._name}-webhook-progress-source", event_source_arn=a.event_table_stream_arn,
            function_name=fn.arn, starting_position="LATEST", batch_size=100, maximum_retry_attempts=10,
            bisect_batch_on_function_error=True,
            filter_criteria={"filters": [{"pattern": json.dumps({
                "eventName": ["INSERT"], "dynamodb": {"NewImage": {NOTIFY_ATTRIBUTE: {"S": [NOTIFY_PROGRESS]}}}})}]},
            opts=self._opts())

    def _output_links_env(self) -> dict[str, pulumi.Input[str]]:
        """Issue 43: the sender makes (and signs) the output links of a payload at send time."""
        links = self._args.output_links
        return links.environment() if links is not None else {}

    def _output_links_statements(self) -> list[dict]:
        links = self._args.output_links
        return links.statements(self._stack.region, self._account) if links is not None else []

    def _function(self, suffix: str, handler: str, statements: list[dict], env: dict[str, pulumi.Input[str]],
                  timeout: int = 60) -> aws.lambda_.Function:
        name = f"{self._name}-{suffix}"
        fn_name = f"{self._stack.resource_prefix()}-{suffix}"
        log_group = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/aws/lambda/{fn_name}",
                                            retention_in_days=self._args.storage.log_retention_days, opts=self._opts())
        statements = [*statements, {"sid": "Logs", "actions": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                    "resources": [pulumi.Output.concat(log_group.arn, ":*")]}]
        role = aws.iam.Role(f"{name}-role", assume_role_policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}),
            opts=self._opts())
        policy = aws.iam.RolePolicy(f"{name}-policy", role=role.id, name="least-privilege",
                                    policy=policy_json(statements), opts=self._opts())
        return aws.lambda_.Function(
            f"{name}-fn", name=fn_name, role=role.arn, runtime="python3.12", architectures=["arm64"],
            handler=handler, code=self._code, memory_size=256, timeout=timeout,
            environment={"variables": env},
            logging_config={"log_format": "JSON", "log_group": log_group.name, "application_log_level": "INFO",
                            "system_log_level": "WARN"},
            opts=self._opts(depends_on=[log_group, policy]))
