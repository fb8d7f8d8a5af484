"""Names the job queue is known by, shared by the stack (components/), the API, the agent and local mode.

One definition, so the topic the API produces to, the group the workers consume with and the names in
the workers' IAM policy can never drift apart. SQS queue names carry the stack's resource prefix.
"""

KAFKA_TOPIC = "genai-jobs"
"""Topic of the jobs (created at deploy time on MSK Serverless, which does not auto-create topics)."""

KAFKA_DLQ_TOPIC = "genai-jobs-dlq"
"""Topic the workers write poison jobs to."""

KAFKA_GROUP = "genai-workers"
"""Consumer group of the workers."""


def sqs_queue_name(resource_prefix: str) -> str:
    """``<prefix>-jobs``: the SQS jobs queue."""
    return f"{resource_prefix}-jobs"


def sqs_dlq_name(resource_prefix: str) -> str:
    """``<prefix>-jobs-dlq``: its dead-letter queue."""
    return f"{resource_prefix}-jobs-dlq"


def sqs_group_queue_name(resource_prefix: str, group: str) -> str:
    """``<prefix>-jobs-<group>``: the queue of one model group (genai-fleet:modelGroups, model affinity)."""
    return f"{resource_prefix}-jobs-{group}"
