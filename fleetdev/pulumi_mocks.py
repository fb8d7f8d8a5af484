"""Run the whole Pulumi program under recording mocks: the offline stand-in for ``pulumi preview``.

``RecordingMocks`` records every resource (type, name, parent, inputs) and answers the provider
functions the program calls (availability zones, AMI lookup, caller identity, region, partition, instance
types (moto's copy of EC2's data), service quotas (Lambda, EC2 vCPUs),
SSM parameters, IAM policy documents). Unknown functions fail loudly, so a new invoke gets a mock
on purpose instead of an empty answer.

The account the provider functions see is a ``MockAccount``: by default a *prepared* one (every SSM
parameter the program asks for exists, a large Lambda quota); ``MockAccount.fresh()`` is an empty account
(no AMI, no secret, no key, the default quota) to which tests add what the README's steps create.

``run_stack("dev")`` runs ``__main__.py`` with ``Pulumi.dev.yaml`` in a fresh interpreter (Pulumi's
runtime is process-global) and returns a ``Recording`` to query. ``python -m fleetdev.pulumi_mocks
--stack dev`` prints the same recording as JSON, which ``tools/preview.py`` uses.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import runpy
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleetdev.provider_renderers import policy_document as _policy_document
from fleetdev.provider_renderers import service_of as _service_of

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "genai-fleet"
ACCOUNT_ID = "123456789012"
MOCK_AMI_ID = "ami-0123456789abcdef0"


@dataclass
class MockAccount:
    """SSM parameters (name -> value), the Lambda concurrency quota and the EC2 vCPU quotas the mocked account holds.

    ``parameters=None`` is a prepared account: every parameter exists (AMI parameters hold ``MOCK_AMI_ID``)
    and every path lists one parameter.
    """

    parameters: dict[str, str] | None = None
    lambda_concurrency_quota: float = 10_000.0
    ec2_vcpu_quotas: dict[str, float] | None = None  # quota code -> vCPUs; None: every EC2 quota is ample

    @classmethod
    def fresh(cls) -> MockAccount:
        """A new account: no parameters, the default regional quota of 1,000 concurrent executions, and no vCPUs
        of any accelerated-instance quota (what new accounts commonly get for G and VT, Inf, P and Trn)."""
        return cls(parameters={}, lambda_concurrency_quota=1_000.0, ec2_vcpu_quotas={})

    def ec2_quota(self, code: str) -> float:
        return 100_000.0 if self.ec2_vcpu_quotas is None else self.ec2_vcpu_quotas.get(code, 0.0)

    def get(self, name: str) -> str | None:
        if self.parameters is None:
            return MOCK_AMI_ID if name.startswith("/genai-fleet/ami/") else "mock-value"
        return self.parameters.get(name)

    def by_path(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        if self.parameters is None:
            return [prefix + "mock"]
        return sorted(n for n in self.parameters if n.startswith(prefix) and "/" not in n[len(prefix):])

    def to_json(self) -> str:
        return json.dumps({"parameters": self.parameters, "lambda_concurrency_quota": self.lambda_concurrency_quota,
                           "ec2_vcpu_quotas": self.ec2_vcpu_quotas}, sort_keys=True)


class ProgramError(RuntimeError):
    """The program failed under mocks; ``message`` is what it printed as the cause."""


@dataclass
class RecordedResource:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    provider: str | None = None  # "<provider urn>::<id>"; a default provider's urn names "default_<version>"
    protect: bool = False  # the registration's protect, else the parent's (as the engine inherits it)
    retain_on_delete: bool = False  # the registration's retainOnDelete
    dependencies: list[str] = field(default_factory=list)  # URNs: depends_on plus the inputs' resources

    @property
    def parent_name(self) -> str | None:
        return self.parent.rsplit("::", 1)[-1] if self.parent else None


@dataclass
class Recording:
    """What one program run declared; query it in tests."""

    resources: list[RecordedResource]
    exports: dict[str, Any]
    calls: list[dict[str, Any]]

    def of_type(self, type_token: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str, name: str | None = None) -> RecordedResource:
        found = [r for r in self.of_type(type_token) if name is None or r.name == name]
        if len(found) != 1:
            names = [r.name for r in self.of_type(type_token)]
            raise AssertionError(f"expected one {type_token} named {name!r}, found {len(found)} among {names}")
        return found[0]

    def named(self, name: str) -> RecordedResource:
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one resource named {name!r}, found {len(found)}")
        return found[0]

    def children_of(self, urn: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.parent == urn]

    def types(self) -> set[str]:
        return {r.type for r in self.resources}

    def to_json(self) -> str:
        return json.dumps({"resources": [r.__dict__ for r in self.resources], "exports": self.exports,
                           "calls": self.calls}, default=str)

    @classmethod
    def from_json(cls, text: str) -> Recording:
        data = json.loads(text)
        return cls(resources=[RecordedResource(**r) for r in data["resources"]], exports=data["exports"],
                   calls=data["calls"])


class RecordingMocks:
    """Pulumi ``Mocks`` that record resources and answer provider functions deterministically."""

    def __init__(self, region: str, account: MockAccount | None = None):
        self.region = region
        self.account = account or MockAccount()
        self.resources: dict[str, RecordedResource] = {}
        self.order: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.parents: dict[tuple[str, str], str] = {}

    # --- resources -----------------------------------------------------------------------------
    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        physical = outputs.get("name") or args.name
        service = _service_of(args.typ)
        region, acct = self.region, ACCOUNT_ID
        rid = f"{args.name}-id"
        outputs.setdefault("arn", f"arn:aws:{service}:{region}:{acct}:{args.typ.split(':')[-1].lower()}/{physical}")
        extra: dict[str, Any] = {}
        t = args.typ
        if t in ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"):
            bucket = outputs.get("bucket") or args.name
            rid = bucket
            extra = {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}",
                     "bucketRegionalDomainName": f"{bucket}.s3.{region}.amazonaws.com",
                     "bucketDomainName": f"{bucket}.s3.amazonaws.com"}
        elif t == "aws:sqs/queue:Queue":
            qname = outputs.get("name") or args.name
            extra = {"name": qname, "arn": f"arn:aws:sqs:{region}:{acct}:{qname}",
                     "url": f"https://sqs.{region}.amazonaws.com/{acct}/{qname}"}
            rid = extra["url"]
        elif t == "aws:dynamodb/table:Table":
            extra = {"arn": f"arn:aws:dynamodb:{region}:{acct}:table/{physical}",
                     "streamArn": f"arn:aws:dynamodb:{region}:{acct}:table/{physical}/stream/2026-01-01T00:00:00.000"}
        elif t == "aws:cloudfront/distribution:Distribution":
            extra = {"domainName": "d111111abcdef8.cloudfront.net", "hostedZoneId": "Z2FDTNDATAQYW2",
                     "arn": f"arn:aws:cloudfront::{acct}:distribution/EDFDVBD632BHDS5"}
            rid = "EDFDVBD632BHDS5"
        elif t == "aws:iam/role:Role":
            extra = {"arn": f"arn:aws:iam::{acct}:role/{physical}", "name": physical}
        elif t == "aws:iam/instanceProfile:InstanceProfile":
            extra = {"arn": f"arn:aws:iam::{acct}:instance-profile/{physical}", "name": physical}
        elif t == "aws:iam/policy:Policy":
            extra = {"arn": f"arn:aws:iam::{acct}:policy/{physical}"}
        elif t == "aws:autoscaling/group:Group":
            extra = {"name": physical, "arn": f"arn:aws:autoscaling:{region}:{acct}:autoScalingGroup:uuid:"
                                              f"autoScalingGroupName/{physical}"}
            rid = physical
        elif t == "aws:apigatewayv2/api:Api":
            extra = {"apiEndpoint": f"https://abc123.execute-api.{region}.amazonaws.com",
                     "executionArn": f"arn:aws:execute-api:{region}:{acct}:abc123"}
            rid = "abc123"
        elif t == "aws:apigatewayv2/stage:Stage":
            stage = outputs.get("name", "$default")
            extra = {"invokeUrl": f"https://abc123.execute-api.{region}.amazonaws.com/{stage}"}
        elif t == "aws:lambda/function:Function":
            extra = {"arn": f"arn:aws:lambda:{region}:{acct}:function:{physical}",
                     "invokeArn": f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/"
                                  f"arn:aws:lambda:{region}:{acct}:function:{physical}/invocations",
                     "name": physical}
        elif t == "aws:ec2/vpc:Vpc":
            rid = "vpc-0a1b2c3d4e5f67890"
        elif t == "aws:ec2/subnet:Subnet":
            rid = f"subnet-{abs(hash(args.name)) % 16**12:012x}"
        elif t == "aws:ec2/securityGroup:SecurityGroup":
            rid = f"sg-{abs(hash(args.name)) % 16**12:012x}"
        elif t == "aws:ec2/launchTemplate:LaunchTemplate":
            rid = f"lt-{abs(hash(args.name)) % 16**12:012x}"
            extra = {"latestVersion": 1}
        elif t == "aws:msk/serverlessCluster:ServerlessCluster":
            extra = {"arn": f"arn:aws:kafka:{region}:{acct}:cluster/{physical}/uuid",
                     "bootstrapBrokersSaslIam": f"boot-abc.c1.kafka-serverless.{region}.amazonaws.com:9098",
                     "clusterUuid": "uuid"}
        elif t == "aws:sns/topic:Topic":
            extra = {"arn": f"arn:aws:sns:{region}:{acct}:{physical}"}
        elif t == "aws:cloudwatch/logGroup:LogGroup":
            extra = {"arn": f"arn:aws:logs:{region}:{acct}:log-group:{physical}"}
        elif t == "aws:ssm/parameter:Parameter":
            extra = {"arn": f"arn:aws:ssm:{region}:{acct}:parameter/{physical.lstrip('/')}"}
        outputs.update(extra)
        outputs.setdefault("id", rid)
        return rid, outputs

    # --- provider functions ----------------------------------------------------------------------
    def call(self, args: Any) -> tuple[dict[str, Any], list[Any] | None] | dict[str, Any]:
        token = args.token
        self.calls.append({"token": token, "args": args.args, "provider": getattr(args, "provider", None) or None})
        region = self.region
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{region}{s}" for s in "abcdef"]
            return {"names": names, "zoneIds": [f"use1-az{i}" for i in range(1, 7)], "id": region}
        if token == "aws:ec2/getAmi:getAmi":
            wanted = [f["values"][0] for f in args.args.get("filters") or [] if f.get("name") == "image-id"]
            image = wanted[0] if wanted else MOCK_AMI_ID
            return {"id": image, "imageId": image, "architecture": "x86_64", "name": "genai-fleet-mock", "tags": {},
                    "rootDeviceName": "/dev/sda1"}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/ci", "userId": "AIDAMOCK",
                    "id": ACCOUNT_ID}
        if token == "aws:index/getRegion:getRegion":
            return {"name": region, "region": region, "id": region, "description": region,
                    "endpoint": f"ec2.{region}.amazonaws.com"}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws", "reverseDnsPrefix": "com.amazonaws"}
        if token == "aws:ssm/getParameter:getParameter":
            name = args.args.get("name")
            value = self.account.get(name)
            if value is None:  # what the provider reports for a missing parameter
                return {}, [("name", f"reading SSM Parameter ({name}): operation error SSM: GetParameter, "
                                     f"https response error StatusCode: 400, ParameterNotFound")]
            return {"name": name, "value": value, "insecureValue": value, "type": "String", "id": name,
                    "arn": f"arn:aws:ssm:{region}:{ACCOUNT_ID}:parameter/{name.lstrip('/')}", "version": 1}
        if token == "aws:ssm/getParametersByPath:getParametersByPath":
            names = self.account.by_path(args.args.get("path", "/"))
            return {"id": args.args.get("path"), "path": args.args.get("path"), "names": names,
                    "arns": [f"arn:aws:ssm:{region}:{ACCOUNT_ID}:parameter/{n.lstrip('/')}" for n in names],
                    "types": ["SecureString"] * len(names), "values": ["ciphertext"] * len(names),
                    "insecureValues": ["ciphertext"] * len(names)}
        if token == "aws:servicequotas/getServiceQuota:getServiceQuota":
            code, service = args.args.get("quotaCode"), args.args.get("serviceCode")
            if service == "ec2":
                return {"id": code, "quotaCode": code, "serviceCode": service, "value": self.account.ec2_quota(code),
                        "defaultValue": 0.0, "adjustable": True, "globalQuota": False, "quotaName": code,
                        "serviceName": "Amazon Elastic Compute Cloud (Amazon EC2)"}
            return {"id": code, "quotaCode": code, "serviceCode": service,
                    "value": self.account.lambda_concurrency_quota, "defaultValue": 1000.0, "adjustable": True,
                    "globalQuota": False, "quotaName": "Concurrent executions", "serviceName": "AWS Lambda"}
        if token == "aws:iam/getPolicyDocument:getPolicyDocument":
            return _policy_document(args.args)
        if token == "aws:ec2/getInstanceType:getInstanceType":
            return _instance_type(args.args["instanceType"])
        raise NotImplementedError(f"no mock for provider function {token}; add one to fleetdev/pulumi_mocks.py")


def _instance_type(name: str) -> dict[str, Any]:
    """The provider's ``aws.ec2.getInstanceType`` answer from moto's copy of EC2's DescribeInstanceTypes data."""
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    if name not in INSTANCE_TYPES:  # what DescribeInstanceTypes answers for an unknown type
        raise ValueError(f"InvalidInstanceType: The following supplied instance types do not exist: [{name}]")
    info = INSTANCE_TYPES[name]
    storage = info.get("InstanceStorageInfo") or {}
    return {"id": name, "instanceType": name, "defaultVcpus": info["VCpuInfo"]["DefaultVCpus"],
            "instanceStorageSupported": bool(info.get("InstanceStorageSupported")),
            "totalInstanceStorage": storage.get("TotalSizeInGB", 0)}


def stack_config(stack: str, overrides: dict[str, Any] | None = None) -> tuple[dict[str, str], str]:
    """Read ``Pulumi.<stack>.yaml`` as the engine passes it (strings; structured values as JSON)."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    config = dict((data or {}).get("config", {}) or {})
    for key, value in (overrides or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if value is None:
            config.pop(full, None)
        else:
            config[full] = value
    flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    region = flat.get("aws:region", "us-east-1")
    return flat, region


def install_recorder(recorder: RecordingMocks) -> tuple[Any, Any]:
    """Pulumi ``Mocks`` and ``MockMonitor`` that fill ``recorder`` (type, name, parent, provider, inputs)."""
    from pulumi.runtime import mocks as pmocks

    current = threading.local()
    lock = threading.Lock()

    class _Mocks(pmocks.Mocks):
        def new_resource(self, args):
            rid, outputs = recorder.new_resource(args)
            rec = getattr(current, "record", None)
            if rec is not None and rec.name == args.name and rec.type == args.typ:
                rec.inputs, rec.outputs = _plain(args.inputs), _plain(outputs)
            return rid, outputs

        def call(self, args):
            return recorder.call(args)

    class _Monitor(pmocks.MockMonitor):
        def RegisterResource(self, request):
            if request.type == "pulumi:pulumi:Stack":
                return super().RegisterResource(request)
            urn = self.make_urn(request.parent, request.type, request.name)
            parent = _parent_or_none(request.parent)
            protect = (request.protect if request.HasField("protect")
                       else bool(parent and parent in recorder.resources and recorder.resources[parent].protect))
            current.record = RecordedResource(urn=urn, type=request.type, name=request.name,
                                              parent=parent, custom=bool(request.custom),
                                              inputs={}, provider=request.provider or None, protect=protect,
                                              retain_on_delete=bool(request.retainOnDelete),
                                              dependencies=list(request.dependencies))
            with lock:
                recorder.resources[urn] = current.record
                recorder.order.append(urn)
            try:
                return super().RegisterResource(request)
            finally:
                current.record = None

    os.environ.setdefault("PULUMI_TEST_MODE", "true")
    mocks = _Mocks()
    return mocks, _Monitor(mocks)


def record_in_process(stack: str, overrides: dict[str, Any] | None = None,
                      program: Path | None = None, account: MockAccount | None = None) -> Recording:
    """Run the program in this interpreter. Use once per process (the Pulumi runtime is global)."""
    import pulumi
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    config, region = stack_config(stack, overrides)
    recorder = RecordingMocks(region, account)

    mocks, monitor = install_recorder(recorder)
    pmocks.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config)
    program_path = program or ROOT / "__main__.py"
    _sync_await(run_pulumi_func(lambda: runpy.run_path(str(program_path), run_name="__main__")))

    root = pulumi.runtime.get_root_resource()
    exports = {}
    for key, value in getattr(root, "outputs", {}).items():
        exports[key] = _plain(_sync_await(pulumi.Output.from_input(value).future()))
    return Recording(resources=[recorder.resources[u] for u in recorder.order], exports=exports,
                     calls=_plain(recorder.calls))


def _parent_or_none(parent: str) -> str | None:
    """Top-level resources hang off the root stack; record them as having no parent."""
    return None if not parent or parent.split("::")[-2].endswith("pulumi:pulumi:Stack") else parent


def _plain(value: Any) -> Any:
    """Make mock inputs JSON-friendly (unknowns and resource references become strings)."""
    return json.loads(json.dumps(value, default=lambda o: (getattr(o, "urn", None) and str(o)) or repr(o)))


@functools.lru_cache(maxsize=32)
def _run_cached(stack: str, overrides_json: str, account_json: str | None = None) -> Recording:
    cmd = [sys.executable, "-m", "fleetdev.pulumi_mocks", "--stack", stack, "--overrides", overrides_json]
    if account_json:
        cmd += ["--account", account_json]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise ProgramError(_cause(proc.stderr) or proc.stdout[-2000:])
    return Recording.from_json(proc.stdout)


def _cause(stderr: str) -> str:
    marker = "RECORDING-ERROR: "
    lines = [line[len(marker):] for line in stderr.splitlines() if line.startswith(marker)]
    return json.loads(lines[-1]) if lines else stderr[-4000:]


def run_stack(stack: str, overrides: dict[str, Any] | None = None, account: MockAccount | None = None) -> Recording:
    """Run ``__main__.py`` for ``Pulumi.<stack>.yaml`` (plus overrides) under mocks in a fresh interpreter.

    ``account`` is what the provider functions see (default: a prepared account). Raises ``ProgramError``
    carrying the program's error message (for example a ``ConfigError`` or a ``PrerequisiteError``).
    """
    return _run_cached(stack, json.dumps(overrides or {}, sort_keys=True), account.to_json() if account else None)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--overrides", default="{}", help="JSON object of config keys to set (null unsets)")
    parser.add_argument("--account", help="JSON of a MockAccount (default: a prepared account)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    account = MockAccount(**json.loads(args.account)) if args.account else None
    try:
        recording = record_in_process(args.stack, json.loads(args.overrides), account=account)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent process, then exit non-zero
        print("RECORDING-ERROR: " + json.dumps(f"{type(exc).__name__}: {exc}"), file=sys.stderr)
        return 1
    print(recording.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
