"""What ``genai-ami`` checks in the account before Packer starts (read-only calls, a minute at most).

A build that fails on AWS's side fails late and obscurely: Packer waits for a source image query that
matches nothing ("No AMI was found matching filters"), or its build instance is refused for lack of vCPU
quota after the wheel is built and the plugin installed. So, first:

1. **Source image.** The same ``DescribeImages`` query as the flavour's ``source_ami_filter`` (read from
   ``packer/<flavor>.pkr.hcl`` with the values of ``release.auto.pkrvars.hcl`` and any ``--var``): owners,
   filters and ``include_deprecated``. AWS deprecates public AMIs at most two years after creation and a
   deprecated image no longer appears in other accounts' ``DescribeImages`` unless the request includes
   deprecated images (EC2 User Guide, "Deprecate an AMI"), so the pinned Neuron image (Neuron SDK 2.20,
   October 2024) is looked up with ``include_deprecated = true``. No match fails with the query it made.
2. **vCPU quota** for the build instance (on demand, one instance of ``<flavor>_build_instance_type``):
   ``GetServiceQuota``, or the default value (``GetAWSDefaultServiceQuota``) where no value was applied, as
   Service Quotas documents; the message names the quota, the need and how to request it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components import vcpu_quotas
from tools.packer_output import AmiBuildError

LOG = logging.getLogger("ami_build")
PACKER_DIR = Path(__file__).resolve().parent.parent / "packer"
RELEASE_FILE = "release.auto.pkrvars.hcl"
NEURON_DLAMI_SSM = "/aws/service/neuron/dlami/multi-framework/ubuntu-22.04/latest/image_id"


def _load(path: Path) -> dict[str, Any]:
    import hcl2  # dev dependency (make install); only the driver reads templates

    with path.open() as fh:
        return hcl2.load(fh)


def _unq(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def packer_values(overrides: list[str], packer_dir: Path = PACKER_DIR) -> dict[str, Any]:
    """Every variable's value as Packer would see it: ``--var NAME=VALUE``, then the release pins, then defaults."""
    values: dict[str, Any] = {}
    for block in _load(packer_dir / "variables.pkr.hcl").get("variable", []):
        for name, body in block.items():
            if "default" in body:
                values[_unq(name)] = _unq(body["default"])
    values.update({k: _unq(v) for k, v in _load(packer_dir / RELEASE_FILE).items() if not k.startswith("__")})
    for item in overrides:
        name, sep, value = item.partition("=")
        if sep:
            values[name] = value
    return values


def _resolve(text: Any, values: dict[str, Any]) -> Any:
    if not isinstance(text, str):
        return text

    def one(match: re.Match[str]) -> str:
        if match[1] not in values:
            raise AmiBuildError(f"packer variable {match[1]} has no value: pass --var {match[1]}=...")
        return str(values[match[1]])

    return re.sub(r"\$\{var\.([A-Za-z0-9_]+)\}", one, _unq(text))


@dataclass(frozen=True)
class ImageQuery:
    """A ``source_ami_filter`` as the DescribeImages request Packer makes from it."""

    owners: tuple[str, ...]
    filters: tuple[tuple[str, str], ...]
    include_deprecated: bool
    most_recent: bool

    def describe(self) -> str:
        shown = ", ".join(f"{k} {v!r}" for k, v in self.filters)
        return (f"owners {', '.join(self.owners)}; {shown}; deprecated images "
                f"{'included' if self.include_deprecated else 'excluded'}")


def source_image_query(flavor: str, values: dict[str, Any], packer_dir: Path = PACKER_DIR) -> ImageQuery:
    doc = _load(packer_dir / f"{flavor}.pkr.hcl")
    for block in doc.get("source", []):
        for named in block.values():
            for name, body in named.items():
                if _unq(name) == flavor:
                    f = body["source_ami_filter"][0]
                    filters = tuple((k, _resolve(v, values)) for k, v in f["filters"].items())
                    return ImageQuery(owners=tuple(_unq(o) for o in f["owners"]), filters=filters,
                                      include_deprecated=bool(f.get("include_deprecated", False)),
                                      most_recent=bool(f.get("most_recent", False)))
    raise AmiBuildError(f"packer/{flavor}.pkr.hcl has no amazon-ebs source named {flavor}")


def find_source_image(ec2: Any, flavor: str, query: ImageQuery, region: str) -> dict[str, Any]:
    """The image Packer will start from (the newest match), or an error naming the query that found nothing."""
    images = ec2.describe_images(Owners=list(query.owners), IncludeDeprecated=query.include_deprecated,
                                 Filters=[{"Name": k, "Values": [v]} for k, v in query.filters])["Images"]
    if not images:
        hint = ("a pinned image is deprecated at most two years after it was made and is then hidden unless "
                "source_ami_filter sets include_deprecated = true" if not query.include_deprecated else
                "the image may have been deregistered: move the source image and the versions built for it "
                f"together (docs/amis.md, \"The Neuron source image\"; `aws ssm get-parameter --name "
                f"{NEURON_DLAMI_SSM}` names the newest Neuron DLAMI)")
        raise AmiBuildError(f"no source AMI for the {flavor} flavour in {region}: DescribeImages ({query.describe()}) "
                            f"found no image; {hint}")
    if len(images) > 1 and not query.most_recent:
        raise AmiBuildError(f"{len(images)} source AMIs match the {flavor} filter ({query.describe()}) and "
                            "most_recent is false: Packer would refuse to choose")
    image = max(images, key=lambda i: i.get("CreationDate", ""))
    deprecated = image.get("DeprecationTime")
    if deprecated and deprecated <= datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"):
        LOG.warning("source image %s (%s) was deprecated at %s: it still builds, but AWS may deregister it; "
                    "plan the move to a supported image (docs/amis.md)", image["ImageId"], image.get("Name"),
                    deprecated)
    LOG.info("source image for %s: %s (%s)", flavor, image["ImageId"], image.get("Name"))
    return image


# --- vCPU quota of the build instance -------------------------------------------------------------------


def applied_quota(quotas: Any, code: str) -> float:
    """The quota's applied value, or its default where none was applied (Service Quotas then has no
    applied value to return: NoSuchResourceException)."""
    try:
        return float(quotas.get_service_quota(ServiceCode=vcpu_quotas.SERVICE_CODE, QuotaCode=code)["Quota"]["Value"])
    except quotas.exceptions.NoSuchResourceException:
        return float(quotas.get_aws_default_service_quota(ServiceCode=vcpu_quotas.SERVICE_CODE,
                                                          QuotaCode=code)["Quota"]["Value"])


def build_instance_type(flavor: str, values: dict[str, Any]) -> str:
    return str(values[f"{flavor}_build_instance_type"])


def build_quota_need(ec2: Any, instance_type: str) -> vcpu_quotas.Need:
    """One on-demand build instance: its DefaultVCpus of its family's on-demand quota."""
    (info,) = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    vcpus = int(info["VCpuInfo"]["DefaultVCpus"])
    try:
        quota = vcpu_quotas.quota_for(instance_type, vcpu_quotas.ON_DEMAND)
    except vcpu_quotas.UnknownInstanceFamilyError as exc:
        raise AmiBuildError(str(exc)) from exc
    return vcpu_quotas.Need(quota, vcpu_quotas.ON_DEMAND, vcpus, f"the build instance, one {instance_type} of "
                                                                 f"{vcpus} vCPUs")


def check_build_quota(need: vcpu_quotas.Need, applied: float, region: str) -> None:
    if applied < need.vcpus:
        raise AmiBuildError(vcpu_quotas.shortfall(need, applied, region))


def preflight(session: Any, flavor: str, overrides: list[str]) -> dict[str, Any]:
    """Both checks against the account; the source image and build quota found (for the summary)."""
    region = session.region_name
    values = packer_values(overrides)
    ec2 = session.client("ec2")
    image = find_source_image(ec2, flavor, source_image_query(flavor, values), region)
    need = build_quota_need(ec2, build_instance_type(flavor, values))
    quotas = session.client("service-quotas")
    try:
        applied: float | None = applied_quota(quotas, need.quota.code)
    except quotas.exceptions.AccessDeniedException as exc:  # the check is advice: say so and go on
        LOG.warning("cannot read the EC2 quota %s (%s): %s; the build instance needs %d vCPUs of it, check it "
                    "yourself", need.quota.name, need.quota.code, exc, need.vcpus)
        applied = None
    if applied is not None:
        check_build_quota(need, applied, region)
    return {"source_ami": image["ImageId"], "source_ami_name": image.get("Name"),
            "build_quota": {"code": need.quota.code, "vcpus": applied, "needed": need.vcpus}}
