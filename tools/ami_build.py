"""Build a genai-fleet AMI with Packer and publish it where the Pulumi program looks it up.

``python tools/ami_build.py --flavor cuda [--region us-east-1] [--dry-run]`` (``make ami FLAVOR=cuda``):

1. checks AWS credentials (``sts:GetCallerIdentity``), that the source image the template asks for exists
   and that the account's vCPU quota allows the build instance (tools/ami_preflight.py), then the Packer
   version (>= 1.10: the templates use ``required_plugins``, ``metadata_options`` and ``imds_support``, which
   Debian's 1.6.6 lacks);
2. builds the worker agent wheel from the committed tree at ``HEAD`` (``git archive``) into
   ``build/agent/``, so the AMI holds exactly the revision in its ``GitRevision`` tag; the wheel holds
   ``runtime/`` only, with metadata generated from ``pyproject.toml`` (tools/runtime_wheel.py);
3. runs ``packer init`` and ``packer build -machine-readable -only=amazon-ebs.<flavor>`` in ``packer/``,
   streaming Packer's messages to stderr and reading the artifact lines;
4. reads the manifest post-processor's ``packer/manifest.json`` and checks it names the same AMI;
5. checks the AMI's tags, encryption and IMDSv2 setting (``DescribeImages``); for the CUDA image uploads the
   ComfyUI node catalog the build recorded (``packer/node-catalog-cuda.json``) beside the AMI id in S3
   (tools/node_catalog_publish.py); then publishes its id to the SSM parameter
   ``/genai-fleet/ami/<flavor>/latest`` (``DataType=aws:ec2:image``), so ``latest`` never names an image whose
   catalog is not there.

The last line on stdout is a JSON summary. Errors raise :class:`AmiBuildError` (exit status 1) with a
message that says what to do; nothing is published unless every check passed.

Why not ``packerpy`` (PyPI ``packer.py``): see docs/amis.md; in short it buffers the whole output of a
build that runs for most of an hour, has no ``init``, and is 40 lines of ``subprocess.Popen``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools import ami_preflight

# Packer machine-readable output and the driver's error: tools/packer_output.py.
from tools.packer_output import AmiBuildError, BuildResult, parse_build_output, split_artifact_id
from tools.runtime_wheel import write_runtime_pyproject

LOG = logging.getLogger("ami_build")

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKER_DIR = REPO_ROOT / "packer"
AGENT_DIST_DIR = REPO_ROOT / "build" / "agent"
MANIFEST_PATH = PACKER_DIR / "manifest.json"
NODE_CATALOG_PATH = PACKER_DIR / "node-catalog-{flavor}.json"  # packer/build.pkr.hcl's file download
CATALOG_FLAVORS = ("cuda",)  # the flavours whose image runs ComfyUI
FLAVORS = ("cuda", "neuron")
SSM_PARAMETER = "/genai-fleet/ami/{flavor}/latest"
MIN_PACKER = (1, 10, 0)
REQUIRED_TAGS = ("Project", "Flavor", "Version", "GitRevision", "Name")
# Files the agent wheel is built from (what `git archive` exports); pyproject.toml gives its version and
# dependencies, and is replaced by the runtime-only metadata before the build.
WHEEL_INPUTS = ("pyproject.toml", "runtime")


# --- Manifest post-processor ---------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestBuild:
    name: str
    artifact_id: str
    run_uuid: str
    custom_data: dict[str, Any]

    @property
    def ami_ids(self) -> dict[str, str]:
        return split_artifact_id(self.artifact_id)


def read_manifest(path: Path, flavor: str) -> ManifestBuild:
    """The manifest entry of ``flavor`` from the last Packer run (the file accumulates runs)."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise AmiBuildError(f"Packer wrote no manifest at {path}: did the build reach its post-processor?") from exc
    except json.JSONDecodeError as exc:
        raise AmiBuildError(f"the Packer manifest {path} is not valid JSON: {exc}") from exc
    last = doc.get("last_run_uuid")
    for build in reversed(doc.get("builds", [])):
        if build.get("packer_run_uuid") == last and build.get("name") == flavor:
            return ManifestBuild(flavor, build["artifact_id"], last, dict(build.get("custom_data") or {}))
    raise AmiBuildError(f"the Packer manifest {path} has no {flavor!r} build from its last run ({last})")


# --- Checks and publishing (boto3 clients are passed in, so tests use moto) -----------------------


def check_image(ec2: Any, ami_id: str, expected_tags: dict[str, str]) -> dict[str, str]:
    """Check the AMI's tags, snapshot encryption and IMDSv2 setting; return its tags."""
    images = ec2.describe_images(ImageIds=[ami_id])["Images"]
    if not images:
        raise AmiBuildError(f"{ami_id} was not found in this account and region")
    image = images[0]
    tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    problems = [f"tag {key} is missing" for key in REQUIRED_TAGS if key not in tags]
    problems += [
        f"tag {key} is {tags[key]!r}, expected {value!r}"
        for key, value in expected_tags.items()
        if key in tags and tags[key] != value
    ]
    for mapping in image.get("BlockDeviceMappings", []):
        ebs = mapping.get("Ebs")
        if ebs is not None and not ebs.get("Encrypted", False):
            problems.append(f"volume {mapping.get('DeviceName')} ({ebs.get('SnapshotId')}) is not encrypted")
    imds = image.get("ImdsSupport")
    if imds != "v2.0":
        problems.append(f"ImdsSupport is {imds!r}, expected 'v2.0'")
    if problems:
        raise AmiBuildError(f"{ami_id} does not look like a genai-fleet AMI: " + "; ".join(problems))
    return tags


def publish_ami(ssm: Any, flavor: str, ami_id: str, tags: dict[str, str]) -> str:
    """Write the AMI id to ``/genai-fleet/ami/<flavor>/latest``; return the parameter name."""
    name = SSM_PARAMETER.format(flavor=flavor)
    ssm.put_parameter(
        Name=name,
        Value=ami_id,
        Type="String",
        DataType="aws:ec2:image",
        Overwrite=True,
        Description=f"Newest genai-fleet {flavor} AMI ({tags.get('Version')}, {tags.get('GitRevision', '')[:12]})",
    )
    ssm.add_tags_to_resource(
        ResourceType="Parameter",
        ResourceId=name,
        Tags=[{"Key": k, "Value": tags[k]} for k in ("Project", "Flavor", "Version", "GitRevision") if k in tags],
    )
    return name


# --- Local steps: git, wheel, packer --------------------------------------------------------------


def _run(cmd: list[str], cwd: Path = REPO_ROOT, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    LOG.info("+ %s", " ".join(cmd))
    try:
        return subprocess.run(cmd, cwd=cwd, check=True, text=True, **kwargs)
    except FileNotFoundError as exc:
        raise AmiBuildError(f"{cmd[0]} is not installed or not on PATH") from exc
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or "").strip()
        suffix = f": {detail}" if detail else ""
        raise AmiBuildError(f"{' '.join(cmd)} failed with status {exc.returncode}{suffix}") from exc


def git_revision(allow_dirty: bool) -> str:
    rev = _run(["git", "rev-parse", "HEAD"], capture_output=True).stdout.strip()
    dirty = _run(["git", "status", "--porcelain", "--", *WHEEL_INPUTS, "packer"], capture_output=True).stdout.strip()
    if dirty and not allow_dirty:
        raise AmiBuildError(
            "uncommitted changes under runtime/, pyproject.toml or packer/: commit them so the AMI matches its "
            "GitRevision tag, or pass --allow-dirty for a throwaway build"
        )
    return rev


def build_agent_wheel(revision: str, use_worktree: bool, out_dir: Path = AGENT_DIST_DIR) -> Path:
    """Build the runtime wheel from ``revision`` (or the working tree) into an emptied ``out_dir``.

    pip builds it in an isolated environment with the build backend pyproject.toml names, from the runtime-only
    metadata ``tools/runtime_wheel.py`` writes (no entry point into a package the AMI does not hold).
    """
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="genai-agent-src-") as tmp:
        src = Path(tmp)
        if use_worktree:
            for name in WHEEL_INPUTS:
                path = REPO_ROOT / name
                if path.is_dir():
                    shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    shutil.copy2(path, src / name)
        else:
            archive = src / "src.tar"
            _run(["git", "archive", "--format=tar", "-o", str(archive), revision, *WHEEL_INPUTS])
            with tarfile.open(archive) as tar:
                tar.extractall(src, filter="data")
            archive.unlink()
        write_runtime_pyproject(src)
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out_dir), str(src)],
             capture_output=True)
    wheels = sorted(out_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise AmiBuildError(f"expected one agent wheel in {out_dir}, found {len(wheels)}")
    return wheels[0]


def packer_version(packer: str) -> tuple[int, int, int]:
    out = _run([packer, "version"], capture_output=True).stdout
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise AmiBuildError(f"cannot read the Packer version from {out!r}")
    return int(match[1]), int(match[2]), int(match[3])


def check_packer_version(version: tuple[int, int, int]) -> None:
    if version < MIN_PACKER:
        have = ".".join(map(str, version))
        need = ".".join(map(str, MIN_PACKER))
        raise AmiBuildError(
            f"packer {have} is too old to build these templates (they need >= {need} for `packer init`, "
            "required_plugins, metadata_options and imds_support; Debian's packer 1.6.6 can only `packer fmt` "
            "them). Install Packer from https://developer.hashicorp.com/packer/install"
        )


def packer_build_command(packer: str, flavor: str, region: str, revision: str, extra_vars: list[str]) -> list[str]:
    cmd = [
        packer, "build", "-machine-readable", "-color=false", f"-only=amazon-ebs.{flavor}",
        "-var", f"region={region}", "-var", f"git_revision={revision}", "-var", f"agent_dist_dir={AGENT_DIST_DIR}",
    ]
    for item in extra_vars:
        cmd += ["-var", item]
    return [*cmd, "."]


def run_packer_build(cmd: list[str]) -> BuildResult:
    """Run the build, echoing Packer's messages to stderr as they come (a build takes most of an hour)."""
    LOG.info("+ %s", " ".join(cmd))

    def echo(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        proc = subprocess.Popen(cmd, cwd=PACKER_DIR, stdout=subprocess.PIPE, text=True, bufsize=1)
    except FileNotFoundError as exc:
        raise AmiBuildError(f"{cmd[0]} is not installed or not on PATH") from exc
    assert proc.stdout is not None
    result = parse_build_output(proc.stdout, echo=echo)
    status = proc.wait()
    if status != 0:
        detail = "; ".join(result.errors[-3:]) or "see the messages above"
        raise AmiBuildError(f"packer build failed with status {status}: {detail}")
    return result


# --- AWS session ----------------------------------------------------------------------------------


def aws_session(region: str | None) -> Any:
    """A boto3 session with credentials and a region, or a clear error saying how to provide them."""
    import boto3  # local import: --help and the parsing tests do not need boto3 configured
    import botocore.exceptions

    session = boto3.session.Session(region_name=region) if region else boto3.session.Session()
    if session.region_name is None:
        raise AmiBuildError("no AWS region: pass --region or set AWS_REGION")
    if session.get_credentials() is None:
        raise AmiBuildError(
            "no AWS credentials found: `make ami` builds in your AWS account. Configure credentials "
            "(aws configure / aws sso login / AWS_PROFILE / an instance role) and try again"
        )
    try:
        session.client("sts").get_caller_identity()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise AmiBuildError(f"the AWS credentials do not work: {exc}") from exc
    return session


# --- Main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flavor", choices=FLAVORS, help="which AMI to build (required unless --wheel-only)")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
                        help="AWS region to build in (default: AWS_REGION)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands and checks, build and publish nothing, need no credentials")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="build the agent from the working tree even with uncommitted changes")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="extra Packer variable, e.g. --var install_a1111=true (repeatable)")
    parser.add_argument("--wheel-only", action="store_true",
                        help=f"only build the runtime wheel into {AGENT_DIST_DIR} (for a hand-run packer build); "
                             "needs no credentials or packer")
    parser.add_argument("--packer", default=os.environ.get("PACKER", "packer"), help="packer executable")
    return parser.parse_args(argv)


def dry_run(args: argparse.Namespace) -> dict[str, Any]:
    region = args.region or "<region>"
    cmd = packer_build_command(args.packer, args.flavor, region, "<git HEAD>", args.var)
    values = ami_preflight.packer_values(args.var)
    query = ami_preflight.source_image_query(args.flavor, values)
    build_type = ami_preflight.build_instance_type(args.flavor, values)
    plan = {
        "dry_run": True,
        "flavor": args.flavor,
        "region": region,
        "steps": [
            "sts get-caller-identity (credentials)",
            f"ec2 describe-images ({query.describe()}): the source image must exist",
            f"ec2 describe-instance-types {build_type} + service-quotas get-service-quota: its family's "
            "on-demand vCPU quota must allow one build instance",
            f"git archive HEAD {' '.join(WHEEL_INPUTS)} | runtime-only pyproject | pip wheel --no-deps -w "
            f"{AGENT_DIST_DIR}",
            f"(cd {PACKER_DIR} && {args.packer} init .)",
            f"(cd {PACKER_DIR} && {' '.join(cmd)})",
            f"read {MANIFEST_PATH}",
            "ec2 describe-images: tags " + ", ".join(REQUIRED_TAGS) + ", encryption, ImdsSupport v2.0",
            *([f"s3 put-object {NODE_CATALOG_PATH.name.format(flavor=args.flavor)} -> "
               "s3://genai-fleet-amis-<account>-<region>/node-catalogs/" + args.flavor + "/<ami-id>.json"]
              if args.flavor in CATALOG_FLAVORS else []),
            f"ssm put-parameter {SSM_PARAMETER.format(flavor=args.flavor)}",
        ],
    }
    if shutil.which(args.packer) is None:
        plan["warning"] = f"{args.packer} is not on PATH"
    else:
        try:
            check_packer_version(packer_version(args.packer))
        except AmiBuildError as exc:
            plan["warning"] = str(exc)
    return plan


def wheel_only(args: argparse.Namespace) -> dict[str, Any]:
    """The agent wheel alone, built exactly as ``build`` builds it (packer's ``agent_dist_dir``)."""
    revision = git_revision(args.allow_dirty)
    wheel = build_agent_wheel(revision, use_worktree=args.allow_dirty)
    return {"agent_wheel": str(wheel), "git_revision": revision}


def build(args: argparse.Namespace) -> dict[str, Any]:
    session = aws_session(args.region)
    region = session.region_name
    checked = ami_preflight.preflight(session, args.flavor, args.var)  # the account, before anything is built
    check_packer_version(packer_version(args.packer))
    revision = git_revision(args.allow_dirty)
    wheel = build_agent_wheel(revision, use_worktree=args.allow_dirty)
    LOG.info("agent wheel %s (revision %s)", wheel.name, revision)
    _run([args.packer, "init", "."], cwd=PACKER_DIR)
    result = run_packer_build(packer_build_command(args.packer, args.flavor, region, revision, args.var))
    built = result.ami_ids(f"amazon-ebs.{args.flavor}")
    manifest = read_manifest(MANIFEST_PATH, args.flavor)
    if built and built != manifest.ami_ids:
        raise AmiBuildError(f"packer reported {built} but the manifest says {manifest.ami_ids}")
    ami_id = manifest.ami_ids.get(region)
    if ami_id is None:
        raise AmiBuildError(f"the build made no AMI in {region}: {manifest.ami_ids}")
    expected = {"Project": "genai-fleet", "Flavor": args.flavor, "GitRevision": revision}
    tags = check_image(session.client("ec2"), ami_id, expected)
    catalog = None
    if args.flavor in CATALOG_FLAVORS:
        from tools.node_catalog_publish import publish_node_catalog

        account = session.client("sts").get_caller_identity()["Account"]
        catalog = publish_node_catalog(session.client("s3"), account, region, args.flavor, ami_id,
                                       Path(str(NODE_CATALOG_PATH).format(flavor=args.flavor)), revision)
    parameter = publish_ami(session.client("ssm"), args.flavor, ami_id, tags)
    return {"flavor": args.flavor, "region": region, "ami_id": ami_id, "ssm_parameter": parameter,
            "node_catalog": catalog, "version": tags.get("Version"), "git_revision": revision, **checked}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s ami_build: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    try:
        if args.wheel_only:
            summary = wheel_only(args)
        elif args.flavor is None:
            raise AmiBuildError("--flavor is required (cuda or neuron), unless --wheel-only")
        else:
            summary = dry_run(args) if args.dry_run else build(args)
    except AmiBuildError as exc:
        LOG.error("%s", exc)
        return 1
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
