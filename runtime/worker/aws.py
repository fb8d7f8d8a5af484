"""Small interfaces over the AWS calls the agent makes, so tests swap endpoints or whole fakes.

- ``AutoScaling``: complete a lifecycle action (CONTINUE or ABANDON), record a heartbeat, set scale-in
  protection, mark the instance unhealthy, find the instance's group. The worker role's IAM policy
  (components/cluster_iam.py) is tested against the operations ``Boto3AutoScaling`` issues.
  ``Boto3AutoScaling`` is the real one; ``RecordingAutoScaling`` records every call (in memory and,
  for agents run as subprocesses, as JSON lines in a file) because moto does not
  implement CompleteLifecycleAction. Config ``endpoints.autoscaling = "record:/path/calls.jsonl"``
  selects the recorder.
- ``ObjectStore``: put and ranged get on S3 (outputs upload, model downloads).

Endpoints come from ``AgentConfig.endpoints`` (service -> URL): moto in tests and local mode, the
regional AWS endpoint (None) on AWS.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from runtime import aws_clients

log = logging.getLogger(__name__)


class AWSCallError(Exception):
    """An AWS call failed (service error or transport)."""


class LifecycleActionNotFound(AWSCallError):  # noqa: N818
    """No lifecycle action is pending for this instance (nothing to complete)."""


def client(service: str, region: str, endpoints: dict[str, str] | None = None, profile: str = "worker",
           **config: Any) -> Any:
    """A boto3 client from ``runtime.aws_clients``; ``endpoints[service]`` overrides the endpoint (moto, local)."""
    return aws_clients.client(service, profile=profile, region=region, endpoint_url=(endpoints or {}).get(service),
                              **config)


class AutoScaling(Protocol):
    def complete_lifecycle_action(self, hook: str, group: str, instance_id: str, result: str = "CONTINUE") -> None: ...
    def record_lifecycle_action_heartbeat(self, hook: str, group: str, instance_id: str) -> None: ...
    def set_instance_protection(self, group: str, instance_id: str, protected: bool) -> None: ...
    def set_instance_health(self, instance_id: str, healthy: bool) -> None: ...
    def group_of(self, instance_id: str) -> str | None: ...


class Boto3AutoScaling:
    def __init__(self, boto_client: Any) -> None:
        self._c = boto_client

    def _call(self, name: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._c, name)(**kwargs)
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", str(exc))
            if "No active Lifecycle Action" in message:
                raise LifecycleActionNotFound(message) from exc
            raise AWSCallError(f"autoscaling {name}: {message}") from exc
        except (BotoCoreError, ResponseParserError) as exc:
            raise AWSCallError(f"autoscaling {name}: {exc}") from exc

    def complete_lifecycle_action(self, hook: str, group: str, instance_id: str, result: str = "CONTINUE") -> None:
        self._call("complete_lifecycle_action", LifecycleHookName=hook, AutoScalingGroupName=group,
                   InstanceId=instance_id, LifecycleActionResult=result)

    def record_lifecycle_action_heartbeat(self, hook: str, group: str, instance_id: str) -> None:
        self._call("record_lifecycle_action_heartbeat", LifecycleHookName=hook, AutoScalingGroupName=group,
                   InstanceId=instance_id)

    def set_instance_protection(self, group: str, instance_id: str, protected: bool) -> None:
        self._call("set_instance_protection", AutoScalingGroupName=group, InstanceIds=[instance_id],
                   ProtectedFromScaleIn=protected)

    def set_instance_health(self, instance_id: str, healthy: bool) -> None:
        # ShouldRespectGracePeriod=False: a dead agent is replaced even inside the group's grace period.
        self._call("set_instance_health", InstanceId=instance_id, HealthStatus="Healthy" if healthy else "Unhealthy",
                   ShouldRespectGracePeriod=False)

    def group_of(self, instance_id: str) -> str | None:
        found = self._call("describe_auto_scaling_instances", InstanceIds=[instance_id]).get("AutoScalingInstances")
        return found[0]["AutoScalingGroupName"] if found else None


class RecordingAutoScaling:
    """Records every call; ``calls`` is a list of dicts ``{"op": ..., ...}`` (also appended to ``path``)."""

    def __init__(self, path: str | Path | None = None, group: str | None = "local-workers") -> None:
        self.path = Path(path) if path else None
        self.group = group
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _record(self, op: str, **fields: Any) -> None:
        call = {"op": op, "at": time.time(), **fields}
        with self._lock:
            self.calls.append(call)
            if self.path is not None:
                with self.path.open("a") as fh:
                    fh.write(json.dumps(call) + "\n")

    def complete_lifecycle_action(self, hook: str, group: str, instance_id: str, result: str = "CONTINUE") -> None:
        self._record("complete_lifecycle_action", hook=hook, group=group, instance_id=instance_id, result=result)

    def record_lifecycle_action_heartbeat(self, hook: str, group: str, instance_id: str) -> None:
        self._record("record_lifecycle_action_heartbeat", hook=hook, group=group, instance_id=instance_id)

    def set_instance_protection(self, group: str, instance_id: str, protected: bool) -> None:
        self._record("set_instance_protection", group=group, instance_id=instance_id, protected=protected)

    def set_instance_health(self, instance_id: str, healthy: bool) -> None:
        self._record("set_instance_health", instance_id=instance_id, healthy=healthy)

    def group_of(self, instance_id: str) -> str | None:
        self._record("describe_auto_scaling_instances", instance_id=instance_id)
        return self.group

    @staticmethod
    def read(path: str | Path) -> list[dict[str, Any]]:
        file = Path(path)
        return [json.loads(line) for line in file.read_text().splitlines() if line] if file.exists() else []


def make_autoscaling(region: str, endpoints: dict[str, str]) -> AutoScaling:
    target = endpoints.get("autoscaling", "")
    if target.startswith("record:"):
        return RecordingAutoScaling(target[len("record:"):] or None)
    return Boto3AutoScaling(client("autoscaling", region, endpoints))


class ObjectStore:
    """S3 put / ranged get / head for one bucket."""

    def __init__(self, boto_client: Any, bucket: str) -> None:
        self._c = boto_client
        self.bucket = bucket

    def put(self, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None = None,
            cache_control: str | None = None) -> None:
        extra: dict[str, Any] = {"Metadata": metadata or {}}
        if cache_control:
            extra["CacheControl"] = cache_control
        try:
            self._c.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, **extra)
        except (ClientError, BotoCoreError) as exc:
            raise AWSCallError(f"s3 put {self.bucket}/{key}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._c.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise AWSCallError(f"s3 delete {self.bucket}/{key}: {exc}") from exc

    def size(self, key: str) -> int:
        try:
            return int(self._c.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except (ClientError, BotoCoreError) as exc:
            raise AWSCallError(f"s3 head {self.bucket}/{key}: {exc}") from exc

    @property
    def client(self) -> Any:
        """The boto3 S3 client (the model cache downloads through it with s3transfer)."""
        return self._c

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start..end`` inclusive."""
        try:
            body = self._c.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}")["Body"]
            return body.read()
        except (ClientError, BotoCoreError) as exc:
            raise AWSCallError(f"s3 get {self.bucket}/{key} [{start}-{end}]: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._c.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise AWSCallError(f"s3 get {self.bucket}/{key}: {exc}") from exc
