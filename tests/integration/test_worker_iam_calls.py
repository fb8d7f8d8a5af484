"""The worker role's IAM policy covers every AWS call the agent makes (recorded, not a hand-kept list).

The agent is built by its own entry point (``runtime.worker.__main__.build``) against moto and the fake
IMDS, with every boto3 client it creates wrapped by a recorder (botocore's ``before-call`` event, so
the operation is recorded before it is sent, even when moto does not implement it). It boots (hot
model, webhook secret from SSM, the DescribeAutoScalingInstances fallback because the IMDS has no
group tag), runs a job, drains and marks itself unhealthy; every method of the Auto Scaling
interface is called as well. Each recorded operation must be allowed by ``instance_policy_document``.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from components import cluster_iam
from fleetdev.local.fake_imds import FakeIMDS
from fleetdev.worker_support import REGION, Stack
from runtime.agent_config import parse
from runtime.worker import aws

pytestmark = pytest.mark.integration

# Operations whose IAM action is named differently from the API operation.
IAM_ACTION = {
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
}
PREFIX = {"s3": "s3", "sqs": "sqs", "dynamodb": "dynamodb", "ssm": "ssm", "auto-scaling": "autoscaling",
          "autoscaling": "autoscaling", "cloudwatch": "cloudwatch", "logs": "logs"}


def _action(service_id: str, operation: str) -> str:
    service = service_id.lower().replace(" ", "-")
    return IAM_ACTION.get((service, operation), f"{PREFIX.get(service, service)}:{operation}")


@pytest.fixture
def recorded(monkeypatch):
    calls: set[str] = set()
    real_client = aws.client

    def recording_client(service: str, region: str, endpoints: dict[str, str] | None = None, **kw: Any) -> Any:
        c = real_client(service, region, endpoints, **kw)

        def record(model: Any, **_: Any) -> None:
            calls.add(_action(model.service_model.service_id, model.name))

        c.meta.events.register("before-call", record)
        return c

    monkeypatch.setattr(aws, "client", recording_client)
    return calls


def _policy(stack: Stack) -> dict:
    arn = "arn:aws:{}:us-east-1:123456789012:{}"
    scope = cluster_iam.PolicyScope(
        partition="aws", region=REGION, account_id="123456789012", queue_kind="sqs",
        model_store_bucket_arn=f"arn:aws:s3:::{stack.models_bucket}", outputs_bucket_arn=f"arn:aws:s3:::{stack.bucket}",
        job_table_arn=arn.format("dynamodb", f"table/{stack.table}"), group_names=("workers",),
        log_group_names=("/genai-fleet/test/agent",), parameter_names=("/genai-fleet/test/cloudwatch-agent",),
        queue_arn=arn.format("sqs", stack.queue_url.rsplit("/", 1)[1]))
    return cluster_iam.instance_policy_document(scope)


def _allowed(document: dict) -> set[str]:
    return {a for st in document["Statement"] if st["Effect"] == "Allow" for a in st["Action"]}


def test_every_call_the_agent_makes_is_in_the_worker_policy(moto_endpoint, recorded, tmp_path):
    from runtime.worker.__main__ import build, mark_unhealthy
    from runtime.worker.lifecycle import TERMINATING, Notice

    stack = Stack(moto_endpoint)
    stack.put_model("sd15", b"weights" * 100)
    recorded.clear()
    # a spot instance: it reads its spot price at boot (issue 42)
    with FakeIMDS(instance_id="i-0iam0000000000001", group_name=None, life_cycle="spot") as imds:
        base = stack.config()
        data = {**_config_dict(base), "hot_models": ["sd15"],
                "endpoints": {s: moto_endpoint for s in ("s3", "sqs", "dynamodb", "ssm", "autoscaling", "ec2")},
                "lifecycle": {"launching_hook": "launch-hook", "terminating_hook": "drain-hook",
                              "imds_url": imds.url, "imds_enabled": True}, "worker_id": None}
        config = parse(data)
        agent, _watcher = build(config)
        assert agent.lifecycle.group is None  # moto knows no group: the fallback ran and did not crash
        agent.lifecycle.group = "workers"  # as AWS would answer, so the group-scoped calls are made too
        stack.submit()
        agent.boot()
        agent.run(max_jobs=1, idle_exit_seconds=30)
        agent.on_notice(Notice(TERMINATING, None, "Terminated"))
        agent.shutdown()
        agent.lifecycle.mark_unhealthy("test")
        config_file = tmp_path / "agent.json"
        config_file.write_text(config.to_json())
        mark_unhealthy(str(config_file), "test")
    # Every method of the Auto Scaling interface, whatever path reaches it.
    boto = aws.Boto3AutoScaling(aws.client("autoscaling", REGION, {"autoscaling": moto_endpoint}))
    for name, _ in inspect.getmembers(aws.Boto3AutoScaling, inspect.isfunction):
        if name.startswith("_"):
            continue
        args = {"hook": "h", "group": "workers", "instance_id": "i-0iam0000000000001", "protected": True,
                "healthy": False}
        params = inspect.signature(getattr(boto, name)).parameters
        try:
            getattr(boto, name)(**{k: v for k, v in args.items() if k in params})
        except aws.AWSCallError:
            pass  # moto does not implement every operation; the call was still recorded

    allowed = _allowed(_policy(stack))
    expected_somewhere = {"autoscaling:DescribeAutoScalingInstances", "autoscaling:SetInstanceHealth",
                          "autoscaling:CompleteLifecycleAction", "sqs:ReceiveMessage",
                          "s3:PutObject", "dynamodb:UpdateItem", "ec2:DescribeSpotPriceHistory"}
    assert expected_somewhere <= recorded, f"the run did not exercise {expected_somewhere - recorded}"
    missing = sorted(recorded - allowed)
    assert not missing, f"the worker role does not allow {missing} (components/cluster_iam.py)"


def _config_dict(config: Any) -> dict:
    import json

    return json.loads(config.to_json())
