"""Measure scale-out on a real account: how long until a new instance is ready for work.

    python -m planner.measure --stack prod [--runs 3] [--group NAME] [--out planner/scaleout-prod.json]

Per run: raise the spot group's desired capacity by one, then record, by polling the AWS APIs,
the phases of the new instance: the Auto Scaling activity that launches it, EC2 "running", the
launching lifecycle hook (Pending:Wait) and InService (the agent completed the hook: backend up, hot
models loaded), plus the agent's own ``BootToReady`` metric when CloudWatch has it. Then it puts the
capacity back by terminating exactly that instance with ``ShouldDecrementDesiredCapacity``, and
appends the run to the distribution file the planner reads (``--scaleout``): ``ec2_launch`` is request
to running, ``boot`` is running to InService (boot, agent, backend, preloads and the lifecycle action
together; the planner's other cold phases are set to 0 so that the sum is what was measured).

Needs AWS credentials allowed to describe and change the stack's groups. ``--endpoint-url`` points it
at a local AWS (moto) for tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from components.config_settings import NAMESPACE
from runtime import metric_names

POLL_SECONDS = 5.0
TIMEOUT_SECONDS = 1800.0


class MeasureError(RuntimeError):
    """The measurement cannot start or finish; the message says what to do."""


@dataclass
class Clients:
    autoscaling: Any
    ec2: Any
    cloudwatch: Any


def find_spot_group(asg: Any, environment: str) -> str:
    """The stack's spot group: tagged Project=genai-fleet and Environment=<env>, with a mixed instances policy."""
    found = []
    for page in asg.get_paginator("describe_auto_scaling_groups").paginate():
        for g in page["AutoScalingGroups"]:
            tags = {t["Key"]: t["Value"] for t in g.get("Tags", [])}
            if tags.get("Project") == NAMESPACE and tags.get("Environment") == environment and \
                    g.get("MixedInstancesPolicy"):
                found.append(g["AutoScalingGroupName"])
    if len(found) != 1:
        raise MeasureError(f"expected one spot group tagged Project={NAMESPACE}, Environment={environment}; found "
                           f"{found or 'none'}: pass --group NAME (see `pulumi stack output`)")
    return found[0]


class Recorder:
    """One scale-out: raise desired by one, watch the new instance until InService, put capacity back."""

    def __init__(self, clients: Clients, group: str, stack: str, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, poll: float = POLL_SECONDS,
                 timeout: float = TIMEOUT_SECONDS):
        self.c, self.group, self.stack = clients, group, stack
        self.clock, self.sleep, self.poll, self.timeout = clock, sleep, poll, timeout

    def _group(self) -> dict:
        asg = self.c.autoscaling
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.group])["AutoScalingGroups"]
        if not groups:
            raise MeasureError(f"Auto Scaling group {self.group!r} not found in this account and region")
        return groups[0]

    def _wait(self, what: str, check: Callable[[], Any]) -> tuple[Any, float]:
        deadline = self.clock() + self.timeout
        while True:
            value = check()
            if value:
                return value, self.clock()
            if self.clock() > deadline:
                raise MeasureError(f"gave up after {self.timeout:g} s waiting for {what}")
            self.sleep(self.poll)

    def run(self) -> dict[str, Any]:
        group = self._group()
        desired, before = group["DesiredCapacity"], {i["InstanceId"] for i in group["Instances"]}
        if desired + 1 > group["MaxSize"]:
            raise MeasureError(f"{self.group} is at its maximum size ({group['MaxSize']}): raise maxSize or wait")
        t0 = self.clock()
        self.c.autoscaling.set_desired_capacity(AutoScalingGroupName=self.group, DesiredCapacity=desired + 1,
                                                HonorCooldown=False)
        new = None
        try:
            new, t_seen = self._wait("the new instance", lambda: next(
                (i["InstanceId"] for i in self._group()["Instances"] if i["InstanceId"] not in before), None))
            _, t_running = self._wait("EC2 state running", lambda: self._state(new) == "running")
            _, t_in_service = self._wait("InService (launching lifecycle action completed)",
                                         lambda: self._lifecycle(new) == "InService")
            return {"instance_id": new, "requested_at": t0, "instance_seen_s": t_seen - t0,
                    "ec2_launch_s": t_running - t0, "running_to_in_service_s": t_in_service - t_running,
                    "ready_s": t_in_service - t0, "activity": self._activity(new),
                    "boot_to_ready_metric_s": self._boot_to_ready(t0)}
        finally:
            if new is not None:
                self.c.autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=new,
                                                                            ShouldDecrementDesiredCapacity=True)
            else:
                self.c.autoscaling.set_desired_capacity(AutoScalingGroupName=self.group, DesiredCapacity=desired,
                                                        HonorCooldown=False)

    def _state(self, instance_id: str) -> str | None:
        reservations = self.c.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return reservations[0]["Instances"][0]["State"]["Name"] if reservations else None

    def _lifecycle(self, instance_id: str) -> str | None:
        found = self.c.autoscaling.describe_auto_scaling_instances(InstanceIds=[instance_id])["AutoScalingInstances"]
        return found[0]["LifecycleState"] if found else None

    def _activity(self, instance_id: str) -> dict[str, Any] | None:
        acts = self.c.autoscaling.describe_scaling_activities(AutoScalingGroupName=self.group)["Activities"]
        for a in acts:
            if instance_id in a.get("Description", ""):
                end = a.get("EndTime")
                return {"status": a.get("StatusCode"), "start": str(a.get("StartTime")),
                        "end": str(end) if end else None, "description": a.get("Description")}
        return None

    def _boot_to_ready(self, t0: float) -> float | None:
        start = datetime.fromtimestamp(t0, UTC) - timedelta(minutes=1)
        stats = self.c.cloudwatch.get_metric_statistics(
            Namespace=metric_names.NAMESPACE, MetricName=metric_names.BOOT_TO_READY,
            Dimensions=[{"Name": metric_names.DIM_STACK, "Value": self.stack},
                        {"Name": metric_names.DIM_GROUP, "Value": self.group}],
            StartTime=start, EndTime=datetime.now(UTC) + timedelta(minutes=1), Period=60, Statistics=["Maximum"])
        points = stats.get("Datapoints", [])
        return max(p["Maximum"] for p in points) / 1000.0 if points else None


def write_distribution(path: Path, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Append ``runs`` to the file and rewrite the phase samples the planner resamples."""
    data = json.loads(path.read_text()) if path.exists() else {}
    all_runs = list(data.get("runs", [])) + runs
    zero = {"samples": [0.0]}
    data = {"note": "written by `make measure-scaleout`; boot = EC2 running -> InService (boot, agent, backend, "
                    "hot-model preloads and the lifecycle action together)",
            "runs": all_runs,
            "cold_phases": {"ec2_launch": {"samples": [r["ec2_launch_s"] for r in all_runs]},
                            "boot": {"samples": [r["running_to_in_service_s"] for r in all_runs]},
                            "backend": zero, "preload_per_model": zero, "lifecycle": zero}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m planner.measure", description=__doc__.splitlines()[0])
    p.add_argument("--stack", default="dev")
    p.add_argument("--group", help="the spot group's name (default: found by the stack's tags)")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--out", type=Path, help="default planner/scaleout-<stack>.json")
    p.add_argument("--endpoint-url", help="a local AWS endpoint (tests)")
    p.add_argument("--poll", type=float, default=POLL_SECONDS)
    args = p.parse_args(argv)
    import boto3

    from planner.stack import load_stack

    cfg = load_stack(args.stack)

    def client(name: str) -> Any:
        return boto3.client(name, region_name=cfg.region, endpoint_url=args.endpoint_url)

    clients = Clients(client("autoscaling"), client("ec2"), client("cloudwatch"))
    try:
        group = args.group or find_spot_group(clients.autoscaling, cfg.environment)
        rec = Recorder(clients, group, cfg.stack, poll=args.poll)
        runs = []
        for n in range(args.runs):
            runs.append(rec.run())
            print(f"run {n + 1}: ready in {runs[-1]['ready_s']:.1f} s (EC2 running after "
                  f"{runs[-1]['ec2_launch_s']:.1f} s)", file=sys.stderr)
    except MeasureError as exc:
        print(f"measure-scaleout: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("planner") / f"scaleout-{args.stack}.json"
    write_distribution(out, runs)
    print(f"wrote {out}; use it with `make plan STACK={args.stack}` (picked up automatically) or --scaleout {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
