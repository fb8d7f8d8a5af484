"""``genai-ami``'s checks before Packer starts: the source image exists, the build instance fits the vCPU quota.

The source lookup is the flavour template's own ``source_ami_filter`` (read from packer/), answered by a
DescribeImages stand-in that follows the EC2 User Guide ("Deprecate an AMI"): a deprecated AMI is left out
of other accounts' DescribeImages results unless the request includes deprecated images or names the image
id; its owner always sees it. moto does not model deprecation, so the stand-in does only that and the
filters the templates use (name with wildcards, architecture, virtualization-type, root-device-type), and
refuses any other filter. Service Quotas: ``GetServiceQuota`` has no value for a quota nobody changed
(NoSuchResourceException), then the default applies (``GetAWSDefaultServiceQuota``).
"""

from __future__ import annotations

import fnmatch
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from tools import ami_build, ami_preflight
from tools.packer_output import AmiBuildError

CALLER = "123456789012"
AMAZON = "898082745236"
NEURON_220 = {"ImageId": "ami-0neuron22020241027", "Name": "Deep Learning AMI Neuron (Ubuntu 22.04) 20241027",
              "OwnerId": AMAZON, "ImageOwnerAlias": "amazon", "CreationDate": "2024-10-27T10:00:00.000Z",
              "DeprecationTime": "2026-10-27T10:00:00.000Z", "Architecture": "x86_64",
              "VirtualizationType": "hvm", "RootDeviceType": "ebs"}
CUDA_OLD = {"ImageId": "ami-0cuda20251101000000", "OwnerId": AMAZON, "ImageOwnerAlias": "amazon",
            "Name": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20251101",
            "CreationDate": "2025-11-01T10:00:00.000Z", "DeprecationTime": "2027-11-01T10:00:00.000Z",
            "Architecture": "x86_64", "VirtualizationType": "hvm", "RootDeviceType": "ebs"}
CUDA_NEW = {**CUDA_OLD, "ImageId": "ami-0cuda20261120000000", "CreationDate": "2026-11-20T10:00:00.000Z",
            "Name": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20261120"}
FILTER_FIELDS = {"name": "Name", "architecture": "Architecture", "virtualization-type": "VirtualizationType",
                 "root-device-type": "RootDeviceType"}


class NoSuchResourceException(Exception):  # noqa: N818 - the AWS exception's name
    pass


class AccessDeniedException(Exception):  # noqa: N818 - the AWS exception's name
    pass


class FakeEc2:
    """DescribeImages with AWS's deprecation rule; DescribeInstanceTypes from moto's copy of EC2's data."""

    def __init__(self, images: list[dict[str, Any]]):
        self.images, self.calls = images, []

    def describe_images(self, Owners=(), Filters=(), IncludeDeprecated=False, ImageIds=()):  # noqa: N803 - AWS names
        self.calls.append({"Owners": list(Owners), "Filters": list(Filters), "IncludeDeprecated": IncludeDeprecated})
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        found = []
        for image in self.images:
            if ImageIds and image["ImageId"] not in ImageIds:
                continue
            if Owners and not {image["OwnerId"], image.get("ImageOwnerAlias"), "self" if image["OwnerId"] == CALLER
                               else None} & set(Owners):
                continue
            ok = True
            for f in Filters:
                if f["Name"] not in FILTER_FIELDS:
                    raise ValueError(f"InvalidParameterValue: The filter '{f['Name']}' is invalid")
                ok &= any(fnmatch.fnmatchcase(image[FILTER_FIELDS[f["Name"]]], v) for v in f["Values"])
            deprecated = image.get("DeprecationTime", "9999") <= now
            if deprecated and not IncludeDeprecated and not ImageIds and image["OwnerId"] != CALLER:
                ok = False
            if ok:
                found.append(image)
        return {"Images": found}

    def describe_instance_types(self, InstanceTypes):  # noqa: N803
        from moto.ec2.models.instance_types import INSTANCE_TYPES

        return {"InstanceTypes": [{"InstanceType": t, **INSTANCE_TYPES[t]} for t in InstanceTypes]}


class FakeQuotas:
    """Service Quotas: applied values where set, else NoSuchResourceException and the default."""

    exceptions = type("Exceptions", (), {"NoSuchResourceException": NoSuchResourceException,
                                         "AccessDeniedException": AccessDeniedException})

    def __init__(self, applied: dict[str, float], defaults: dict[str, float] | None = None, denied: bool = False):
        self.applied, self.defaults, self.denied = applied, defaults or {}, denied

    def get_service_quota(self, ServiceCode, QuotaCode):  # noqa: N803
        assert ServiceCode == "ec2"
        if self.denied:
            raise AccessDeniedException("not authorized to perform: servicequotas:GetServiceQuota")
        if QuotaCode not in self.applied:
            raise NoSuchResourceException(QuotaCode)
        return {"Quota": {"QuotaCode": QuotaCode, "Value": self.applied[QuotaCode]}}

    def get_aws_default_service_quota(self, ServiceCode, QuotaCode):  # noqa: N803
        return {"Quota": {"QuotaCode": QuotaCode, "Value": self.defaults.get(QuotaCode, 0.0)}}


class FakeSession:
    region_name = "us-east-1"

    def __init__(self, ec2: FakeEc2, quotas: FakeQuotas):
        self.clients = {"ec2": ec2, "service-quotas": quotas}

    def client(self, name: str) -> Any:
        return self.clients[name]


def _query(flavor: str, *overrides: str) -> ami_preflight.ImageQuery:
    return ami_preflight.source_image_query(flavor, ami_preflight.packer_values(list(overrides)))


# --- the source image -----------------------------------------------------------------------------------
def test_the_queries_are_the_templates_filters():
    neuron = _query("neuron")
    assert neuron.owners == ("amazon",) and neuron.include_deprecated and neuron.most_recent
    assert dict(neuron.filters) == {"name": "Deep Learning AMI Neuron (Ubuntu 22.04) 20241027",
                                    "architecture": "x86_64", "virtualization-type": "hvm",
                                    "root-device-type": "ebs"}
    cuda = _query("cuda")
    assert not cuda.include_deprecated and dict(cuda.filters)["name"].endswith("(Ubuntu 22.04) *")


def test_the_pinned_neuron_image_is_found_though_deprecated():
    """It was deprecated on 2026-10-27 (two years after creation): without include_deprecated it is invisible."""
    ec2 = FakeEc2([NEURON_220, CUDA_NEW])
    image = ami_preflight.find_source_image(ec2, "neuron", _query("neuron"), "us-east-1")
    assert image["ImageId"] == NEURON_220["ImageId"]
    assert ec2.calls[-1]["IncludeDeprecated"] is True and ec2.calls[-1]["Owners"] == ["amazon"]
    hidden = ami_preflight.ImageQuery(**{**_query("neuron").__dict__, "include_deprecated": False})
    with pytest.raises(AmiBuildError, match="deprecated images excluded\\) found no image; a pinned image is "
                                            "deprecated at most two years after it was made"):
        ami_preflight.find_source_image(ec2, "neuron", hidden, "us-east-1")


def test_a_deregistered_source_fails_naming_the_query_and_the_way_out():
    with pytest.raises(AmiBuildError) as info:
        ami_preflight.find_source_image(FakeEc2([CUDA_NEW]), "neuron", _query("neuron"), "eu-west-1")
    assert str(info.value) == (
        "no source AMI for the neuron flavour in eu-west-1: DescribeImages (owners amazon; name 'Deep Learning AMI "
        "Neuron (Ubuntu 22.04) 20241027', architecture 'x86_64', virtualization-type 'hvm', root-device-type 'ebs'; "
        "deprecated images included) found no image; the image may have been deregistered: move the source image "
        "and the versions built for it together (docs/amis.md, \"The Neuron source image\"; `aws ssm get-parameter "
        "--name /aws/service/neuron/dlami/multi-framework/ubuntu-22.04/latest/image_id` names the newest Neuron "
        "DLAMI)")


def test_the_cuda_pattern_takes_the_newest_and_overrides_apply():
    ec2 = FakeEc2([CUDA_OLD, CUDA_NEW])
    assert ami_preflight.find_source_image(ec2, "cuda", _query("cuda"), "us-east-1")["ImageId"] == CUDA_NEW["ImageId"]
    query = _query("cuda", f"cuda_source_ami_name={CUDA_OLD['Name']}")
    assert ami_preflight.find_source_image(ec2, "cuda", query, "us-east-1")["ImageId"] == CUDA_OLD["ImageId"]


def test_a_deprecated_source_is_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="ami_build"):
        ami_preflight.find_source_image(FakeEc2([NEURON_220]), "neuron", _query("neuron"), "us-east-1")
    assert "was deprecated at 2026-10-27T10:00:00.000Z: it still builds" in caplog.text


# --- the build instance's vCPU quota ------------------------------------------------------------------------
def test_a_new_account_cannot_start_the_g5_build_instance():
    session = FakeSession(FakeEc2([CUDA_NEW]), FakeQuotas(applied={}))
    with pytest.raises(AmiBuildError) as info:
        ami_preflight.preflight(session, "cuda", [])
    assert str(info.value) == (
        'the EC2 quota "Running On-Demand G and VT instances" (L-DB2E81BA) in us-east-1 is 0 vCPUs, below the 4 the '
        "on-demand instances need (the build instance, one g5.xlarge of 4 vCPUs): request 4 with `aws service-quotas "
        "request-service-quota-increase --region us-east-1 --service-code ec2 --quota-code L-DB2E81BA "
        "--desired-value 4` or at https://us-east-1.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/"
        "L-DB2E81BA (instances already running count against it too)")


def test_the_neuron_build_needs_the_inf_quota_and_a_larger_build_type_more():
    session = FakeSession(FakeEc2([NEURON_220]), FakeQuotas(applied={"L-1945791B": 4.0}))
    checked = ami_preflight.preflight(session, "neuron", [])
    assert checked == {"source_ami": NEURON_220["ImageId"], "source_ami_name": NEURON_220["Name"],
                       "build_quota": {"code": "L-1945791B", "vcpus": 4.0, "needed": 4}}
    with pytest.raises(AmiBuildError, match=r"below the 32 the on-demand instances need .*inf2\.8xlarge"):
        ami_preflight.preflight(session, "neuron", ["neuron_build_instance_type=inf2.8xlarge"])


def test_the_default_quota_counts_where_none_was_applied():
    session = FakeSession(FakeEc2([CUDA_NEW]), FakeQuotas(applied={}, defaults={"L-DB2E81BA": 8.0}))
    assert ami_preflight.preflight(session, "cuda", [])["build_quota"] == {"code": "L-DB2E81BA", "vcpus": 8.0,
                                                                           "needed": 4}


def test_the_build_stops_before_packer_or_the_wheel(monkeypatch, caplog):
    session = FakeSession(FakeEc2([CUDA_NEW]), FakeQuotas(applied={}))
    monkeypatch.setattr(ami_build, "aws_session", lambda region: session)

    def never(*args, **kwargs):
        raise AssertionError("nothing is built or run before the account checks pass")

    for name in ("packer_version", "build_agent_wheel", "run_packer_build", "git_revision"):
        monkeypatch.setattr(ami_build, name, never)
    assert ami_build.main(["--flavor", "cuda", "--region", "us-east-1"]) == 1
    assert "(L-DB2E81BA) in us-east-1 is 0 vCPUs, below the 4" in caplog.text


def test_the_dry_run_shows_both_checks(capsys, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert ami_build.main(["--flavor", "neuron", "--dry-run"]) == 0
    import json

    steps = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"]
    assert any("describe-images (owners amazon; name 'Deep Learning AMI Neuron (Ubuntu 22.04) 20241027'" in s
               and "deprecated images included" in s for s in steps)
    assert any("describe-instance-types inf2.xlarge + service-quotas get-service-quota" in s for s in steps)


def test_an_unreadable_quota_is_a_warning_not_a_stop(caplog):
    session = FakeSession(FakeEc2([CUDA_NEW]), FakeQuotas(applied={}, denied=True))
    with caplog.at_level(logging.WARNING, logger="ami_build"):
        checked = ami_preflight.preflight(session, "cuda", [])
    assert checked["build_quota"] == {"code": "L-DB2E81BA", "vcpus": None, "needed": 4}
    assert "cannot read the EC2 quota Running On-Demand G and VT instances (L-DB2E81BA)" in caplog.text
