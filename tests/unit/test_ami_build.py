"""The AMI build driver (tools/ami_build.py): parsing Packer's output and manifest, checking the AMI
and publishing it to SSM (against moto), and the errors a user without credentials or with an old
Packer sees. Packer itself never runs here: the build output is a fixture."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tools import packer_output

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def _load_driver() -> Any:
    spec = importlib.util.spec_from_file_location("ami_build", REPO / "tools" / "ami_build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ami_build"] = module
    spec.loader.exec_module(module)
    return module


ami_build = _load_driver()
REVISION = "0123456789abcdef0123456789abcdef01234567"


# --- machine-readable output ---------------------------------------------------------------------


def test_machine_line_unescapes_commas_and_newlines():
    line = packer_output.parse_machine_line("1764233340,amazon-ebs.cuda,artifact,0,string,a%!(PACKER_COMMA) b\\nc\n")
    assert line == packer_output.MachineLine(1764233340, "amazon-ebs.cuda", "artifact", ("0", "string", "a, b\nc"))


@pytest.mark.parametrize("text", ["", "plain text, not machine readable", "==> amazon-ebs.cuda: hello"])
def test_non_machine_lines_are_ignored(text):
    assert packer_output.parse_machine_line(text) is None


def test_recorded_build_output_yields_the_ami_and_echoes_messages():
    messages: list[str] = []
    lines = (FIXTURES / "packer_build_cuda.machine-readable.txt").read_text().splitlines()
    result = packer_output.parse_build_output(lines, echo=messages.append)
    assert result.ami_ids("amazon-ebs.cuda") == {"us-east-1": "ami-0123456789abcdef0"}
    assert result.ami_ids("amazon-ebs.neuron") == {}
    assert result.errors == []
    assert result.artifacts["amazon-ebs.cuda"]["0"]["builder-id"] == "mitchellh.amazonebs"
    assert any("Tesla A10G, 550.127.05" in m for m in messages)  # escaped commas restored


def test_failed_build_output_collects_errors_and_no_ami():
    lines = (FIXTURES / "packer_build_failed.machine-readable.txt").read_text().splitlines()
    result = packer_output.parse_build_output(lines)
    assert result.ami_ids("amazon-ebs.neuron") == {}
    assert any("No AMI was found matching filters" in e for e in result.errors)
    assert any('Name: "name",' in e for e in result.errors)


def test_bad_artifact_id_is_an_error():
    with pytest.raises(packer_output.AmiBuildError, match="region:ami-"):
        packer_output.split_artifact_id("us-east-1:snap-123")


# --- manifest -----------------------------------------------------------------------------------


def test_manifest_entry_comes_from_the_last_run():
    build = ami_build.read_manifest(FIXTURES / "packer_manifest.json", "cuda")
    assert build.ami_ids == {"us-east-1": "ami-0123456789abcdef0"}
    assert build.custom_data == {"git_revision": REVISION, "version": "0.1.0"}


def test_manifest_and_machine_output_agree():
    lines = (FIXTURES / "packer_build_cuda.machine-readable.txt").read_text().splitlines()
    assert packer_output.parse_build_output(lines).ami_ids("amazon-ebs.cuda") == ami_build.read_manifest(
        FIXTURES / "packer_manifest.json", "cuda"
    ).ami_ids


def test_manifest_without_the_flavour_is_an_error():
    with pytest.raises(ami_build.AmiBuildError, match="no 'neuron' build"):
        ami_build.read_manifest(FIXTURES / "packer_manifest.json", "neuron")


def test_missing_manifest_says_so(tmp_path):
    with pytest.raises(ami_build.AmiBuildError, match="no manifest"):
        ami_build.read_manifest(tmp_path / "manifest.json", "cuda")


# --- AMI checks and SSM publishing (moto) --------------------------------------------------------

GOOD_TAGS = {"Project": "genai-fleet", "Flavor": "cuda", "Version": "0.1.0", "GitRevision": REVISION,
             "Name": "genai-fleet-cuda-0.1.0-0123456789ab-20251127080000"}


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


def _register_ami(ec2: Any, tags: dict[str, str]) -> str:
    ami_id = ec2.register_image(Name=tags.get("Name", "genai-test"), RootDeviceName="/dev/sda1")["ImageId"]
    ec2.create_tags(Resources=[ami_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return ami_id


def _as_aws_reports(ec2: Any) -> None:
    """moto drops register_image's encryption and ImdsSupport: add what AWS reports for a Packer AMI."""

    def patch(parsed: dict[str, Any], **_: Any) -> None:
        for image in parsed.get("Images", []):
            image["ImdsSupport"] = "v2.0"
            for mapping in image.get("BlockDeviceMappings", []):
                mapping.setdefault("Ebs", {})["Encrypted"] = True

    ec2.meta.events.register("after-call.ec2.DescribeImages", patch)


def test_check_then_publish_to_ssm(aws):
    ec2, ssm = aws.client("ec2"), aws.client("ssm")
    _as_aws_reports(ec2)
    ami_id = _register_ami(ec2, GOOD_TAGS)
    tags = ami_build.check_image(ec2, ami_id, {"Project": "genai-fleet", "Flavor": "cuda", "GitRevision": REVISION})
    name = ami_build.publish_ami(ssm, "cuda", ami_id, tags)

    assert name == "/genai-fleet/ami/cuda/latest"
    param = ssm.get_parameter(Name=name)["Parameter"]
    assert param["Value"] == ami_id
    assert param["DataType"] == "aws:ec2:image"
    tag_list = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
    assert {t["Key"]: t["Value"] for t in tag_list} == {
        "Project": "genai-fleet", "Flavor": "cuda", "Version": "0.1.0", "GitRevision": REVISION}

    # A second build overwrites the parameter (a new version), the Pulumi program reads the newest.
    second = _register_ami(ec2, {**GOOD_TAGS, "Name": "genai-fleet-cuda-second"})
    ami_build.publish_ami(ssm, "cuda", second, GOOD_TAGS)
    param = ssm.get_parameter(Name=name)["Parameter"]
    assert (param["Value"], param["Version"]) == (second, 2)


def test_wrong_tags_are_refused_before_publishing(aws):
    ec2, ssm = aws.client("ec2"), aws.client("ssm")
    _as_aws_reports(ec2)
    ami_id = _register_ami(ec2, {**GOOD_TAGS, "Flavor": "neuron"})
    with pytest.raises(ami_build.AmiBuildError, match="tag Flavor is 'neuron', expected 'cuda'"):
        ami_build.check_image(ec2, ami_id, {"Flavor": "cuda"})
    assert ssm.describe_parameters()["Parameters"] == []


class FakeEc2:
    def __init__(self, image: dict[str, Any]):
        self.image = image

    def describe_images(self, ImageIds: list[str]) -> dict[str, Any]:  # noqa: N803 (boto3 spelling)
        return {"Images": [self.image] if self.image else []}


def _image(**overrides: Any) -> dict[str, Any]:
    image = {
        "ImageId": "ami-0123456789abcdef0",
        "ImdsSupport": "v2.0",
        "Tags": [{"Key": k, "Value": v} for k, v in GOOD_TAGS.items()],
        "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": "snap-1", "Encrypted": True}},
                                {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}],
    }
    image.update(overrides)
    return image


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (_image(Tags=[{"Key": "Project", "Value": "genai-fleet"}]), "tag GitRevision is missing"),
        (_image(BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"SnapshotId": "snap-1", "Encrypted": False}}]),
         "not encrypted"),
        (_image(ImdsSupport=None), "ImdsSupport is None"),
        ({}, "was not found"),
    ],
)
def test_check_image_problems(image, message):
    with pytest.raises(ami_build.AmiBuildError, match=message):
        ami_build.check_image(FakeEc2(image), "ami-0123456789abcdef0", {"Flavor": "cuda"})


def test_check_image_accepts_a_good_image():
    assert ami_build.check_image(FakeEc2(_image()), "ami-0123456789abcdef0", {"Flavor": "cuda"}) == GOOD_TAGS


# --- command line, versions, credentials ---------------------------------------------------------


def test_build_command_gates_one_flavour_and_passes_the_revision():
    cmd = ami_build.packer_build_command("packer", "neuron", "eu-west-1", REVISION, ["install_a1111=true"])
    assert cmd[:3] == ["packer", "build", "-machine-readable"]
    assert "-only=amazon-ebs.neuron" in cmd
    pairs = {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-var"}
    assert {"region=eu-west-1", f"git_revision={REVISION}", "install_a1111=true",
            f"agent_dist_dir={ami_build.AGENT_DIST_DIR}"} <= pairs
    assert cmd[-1] == "."


def test_agent_dist_dir_matches_the_template_default():
    # build.pkr.hcl uploads var.agent_dist_dir; its default (relative to packer/) is where the driver builds.
    text = (REPO / "packer" / "variables.pkr.hcl").read_text()
    assert '"../build/agent"' in text
    assert (ami_build.PACKER_DIR / "../build/agent").resolve() == ami_build.AGENT_DIST_DIR


def test_old_packer_is_refused_with_an_explanation():
    with pytest.raises(ami_build.AmiBuildError, match=r"packer 1\.6\.6 is too old .*>= 1\.10\.0"):
        ami_build.check_packer_version((1, 6, 6))
    ami_build.check_packer_version((1, 11, 2))


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


def test_without_credentials_the_build_fails_clearly(no_credentials, caplog):
    assert ami_build.main(["--flavor", "cuda"]) == 1
    assert "no AWS credentials found" in caplog.text


def test_dry_run_needs_no_credentials(no_credentials, capsys):
    assert ami_build.main(["--flavor", "neuron", "--dry-run", "--region", "us-west-2"]) == 0
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert plan["dry_run"] is True and plan["region"] == "us-west-2"
    assert any("-only=amazon-ebs.neuron" in step for step in plan["steps"])
    assert any("/genai-fleet/ami/neuron/latest" in step for step in plan["steps"])


def test_unknown_flavour_is_rejected():
    with pytest.raises(SystemExit):
        ami_build.parse_args(["--flavor", "tpu"])


def test_without_a_flavour_only_the_wheel_can_be_built(no_credentials, caplog):
    assert ami_build.main([]) == 1
    assert "--flavor is required (cuda or neuron), unless --wheel-only" in caplog.text


def test_wheel_only_builds_the_agent_wheel_and_touches_no_aws(no_credentials, monkeypatch, capsys, tmp_path):
    built = []

    def fake_build(revision, use_worktree, out_dir=ami_build.AGENT_DIST_DIR):
        built.append((revision, use_worktree))
        return tmp_path / "genai_fleet_runtime-0.1.0-py3-none-any.whl"

    monkeypatch.setattr(ami_build, "build_agent_wheel", fake_build)
    monkeypatch.setattr(ami_build, "git_revision", lambda allow_dirty: "abc123")
    assert ami_build.main(["--wheel-only", "--allow-dirty"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert built == [("abc123", True)]
    assert summary == {"agent_wheel": str(tmp_path / "genai_fleet_runtime-0.1.0-py3-none-any.whl"),
                       "git_revision": "abc123"}
