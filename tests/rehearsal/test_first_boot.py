"""First-boot rehearsal (cuda flavour): the AMI's own files, the stack's own user data, systemd itself.

1. Build: a Debian root with the AMI's ``install-base.sh`` (cached, machine.py), then - in a booted
   container, as Packer's shell provisioner would - ``install-agent.sh`` (the agent wheel built from
   this checkout), ``install-comfyui.sh`` with a ComfyUI stand-in as COMFYUI_SOURCE and SKIP_TORCH=1
   (no GPU, no internet), ``install-comfyui-nodes.sh`` with one small pinned custom node pack from a local
   fixture git repository (the stand-in loads custom_nodes/* as ComfyUI does, and the build records the node
   catalog from its /object_info), ``install-a1111.sh`` as configured (install_a1111 = false). Not run here:
   check-imdsv2 / verify-cuda (need EC2 and a GPU), install-cloudwatch-agent (a download from AWS),
   cleanup.sh (cloud-init is not in the root).
2. Launch, per stack (dev: the spot template; prod: the on-demand template): a fresh layer over the
   AMI, booted; the user data that the Pulumi program renders (recording mocks) runs as root, as
   cloud-final would. The rehearsal adds only what EC2 gives an instance: a drop-in giving the agent
   units what an instance profile and the link-local addresses give (credentials, the local AWS
   endpoint (moto) and the fake IMDS: the SDKs' AWS_ENDPOINT_URL and AWS_EC2_METADATA_SERVICE_ENDPOINT
   variables), and an instance-store disk (a loop device, shown to the model-cache unit through its
   SYS_BLOCK_DIR / DEV_DIR hooks as "Amazon EC2 NVMe Instance Storage"). Dev's disk is blank; on prod's
   the base image has already mounted it at /opt/dlami/nvme, as the Deep Learning AMIs do (a stand-in
   dlami-nvme.service: format ext4 unless it is, mount; the real one puts LVM under it). In both the
   model cache must land on that disk.
3. A job submitted through the job API (fleetdev.local_server on the stack's table and queue)
   comes back as an image; the agent's and the backend's lines are in the files the CloudWatch agent
   config tails; units, users, folders and permissions are what the contract and the agent config say.
4. Drills: one of prod's hot models does not exist (a warning, the agent serves jobs; the agent config
   holds no webhook secret: the stack's functions send webhooks); then a broken agent config makes the
   agent crash-loop until systemd gives up, and OnFailure= marks the instance Unhealthy in the (moto)
   Auto Scaling group.

Skips with the reason when the machine cannot (not root, no systemd-nspawn / debootstrap / losetup /
network), and fails instead where GENAI_REHEARSAL_REQUIRED=1 (.ci/run sets it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest

from fleetdev.local.fake_imds import FakeIMDS
from fleetdev.local.processes import ManagedProcess, free_port, wait_for
from fleetdev.pulumi_mocks import run_stack
from runtime import agent_config
from runtime import instance_contract as ic
from runtime.api.auth import generate_key
from runtime.jobs.store import create_table
from runtime.model_store import upload
from tests.rehearsal import machine

# The first run builds the base root (debootstrap, a few minutes) inside the first test's setup.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = machine.REPO
REGION = "us-east-1"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
CHECKPOINT = b"rehearsal checkpoint " * 512


def _release_vars() -> dict[str, str]:
    text = (machine.PACKER / "release.auto.pkrvars.hcl").read_text()
    return dict(re.findall(r'^(\w+)\s*=\s*"([^"]*)"', text, re.M))


def _wheelhouse(log: Path) -> Path:
    """Wheels of the runtime's pinned dependencies (cached per requirements file)."""
    reqs = (REPO / "runtime-requirements.txt").read_bytes()
    target = machine.CACHE / f"wheels-{hashlib.sha256(reqs).hexdigest()[:16]}"
    if not (target / ".complete").exists():
        target.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-r", str(REPO / "runtime-requirements.txt"),
                               "-w", str(target)], capture_output=True, text=True, timeout=1800, check=False)
        if proc.returncode != 0:
            machine.give_up(f"cannot build the wheelhouse (package index unreachable?): {proc.stderr[-500:]}")
        (target / ".complete").write_text("ok\n")
    return target


def _agent_wheel(out: Path) -> Path:
    """The agent wheel, built the way `make ami` builds it (tools/ami_build.py, from the working tree)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ami_build", REPO / "tools" / "ami_build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ami_build", module)
    spec.loader.exec_module(sys.modules["ami_build"])
    return sys.modules["ami_build"].build_agent_wheel("HEAD", use_worktree=True, out_dir=out)


def _standin(out: Path) -> Path:
    """The ComfyUI stand-in tree: main.py + the fake it serves with + ComfyUI-style requirements.txt."""
    here = Path(__file__).resolve().parent
    shutil.copytree(here / "comfyui_standin", out)
    fakes = out / "tests" / "fakes"
    fakes.mkdir(parents=True)
    (out / "tests" / "__init__.py").write_text("")
    for module in sorted((REPO / "tests" / "fakes").glob("*.py")):  # the fake and every module it imports
        shutil.copy(module, fakes / module.name)
    pins = [line for line in (REPO / "runtime-requirements.txt").read_text().splitlines()
            if line.startswith(("pillow==", "websockets=="))]  # what tests/fakes import beside the stdlib
    (out / "requirements.txt").write_text("\n".join(pins) + "\n")
    return out


NODE_PACK = REPO / "tests" / "fixtures" / "comfyui" / "node_packs" / "genai_fleet_nodes"


def _node_pack_repo(out: Path) -> list[dict[str, str]]:
    """The fixture custom node pack as a local git repository (builds here cannot reach GitHub), declared as
    packer's ``comfyui_custom_nodes`` declares packs: its path inside the build container and its commit."""
    shutil.copytree(NODE_PACK, out)
    git = ["git", "-C", str(out), "-c", "user.name=rehearsal", "-c", "user.email=rehearsal@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "genai_fleet_nodes"]):
        subprocess.run([*git, *args], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return [{"name": "genai_fleet_nodes", "repository": "/mnt/nodepack", "commit": commit}]


@pytest.fixture(scope="module")
def ami(tmp_path_factory):
    """The AMI: base root + the provisioning scripts, run in a booted container. Yields its layers."""
    reason = machine.unavailable()
    if reason:
        machine.give_up(reason)
    work = tmp_path_factory.mktemp("ami")
    log = work / "build.log"
    started = time.monotonic()
    try:
        base = machine.base_root(log)
    except machine.RehearsalUnavailable as exc:
        machine.give_up(str(exc))
    wheels = _wheelhouse(log)
    agent = _agent_wheel(work / "agent")
    standin = _standin(work / "standin")
    packs = _node_pack_repo(work / "nodepack")
    root = machine.InstanceRoot([base], work / "layer")
    release = _release_vars()
    box = machine.Container(root.path, log, binds={
        str(machine.PACKER): "/mnt/packer", str(wheels): "/mnt/wheels", str(agent.parent): "/mnt/agent",
        str(standin): "/mnt/standin", str(REPO / "runtime-requirements.txt"): "/mnt/constraints.txt",
        str(work / "nodepack"): "/mnt/nodepack"})
    try:
        box.wait_booted()
        common = {"FILES_DIR": "/mnt/packer/files", "AGENT_PYTHON": "python3.11", "PIP_NO_INDEX": "1",
                  "PIP_FIND_LINKS": "/mnt/wheels", "TORCH_VERSION": release["torch_version"],
                  "TORCH_INDEX_URL": release["torch_index_url"]}
        box.check("bash /mnt/packer/scripts/install-agent.sh", 900, env={
            **common, "AGENT_SOURCE": "/mnt/agent", "PYTHON": "python3.11", "PIP_OFFLINE": "1",
            "CONSTRAINTS": "/mnt/constraints.txt", "BOOT_SCRIPTS_DIR": "/mnt/packer/scripts/boot", "FLAVOR": "cuda",
            "GIT_REVISION": "0" * 40, "AMI_VERSION": "0.0.0"})
        box.check("bash /mnt/packer/scripts/install-comfyui.sh", 900, env={
            **common, "COMFYUI_VERSION": release["comfyui_version"], "COMFYUI_SOURCE": "/mnt/standin",
            "SKIP_TORCH": "1"})
        box.check("bash /mnt/packer/scripts/install-comfyui-nodes.sh", 600, env={
            **common, "COMFYUI_CUSTOM_NODES": json.dumps(packs)})
        box.check("bash /mnt/packer/scripts/install-a1111.sh", 300, env={
            **common, "INSTALL_A1111": "false", "A1111_VERSION": release["a1111_version"]})
    finally:
        box.stop()
        root.close()
    yield {"base": base, "ami_layer": root.upper, "build_seconds": time.monotonic() - started, "log": log}


def _launch_templates(stack: str) -> dict[str, str]:
    rec = run_stack(stack)
    return {r.name: base64.b64decode(r.inputs["userData"]).decode() for r in rec.resources
            if r.type == LAUNCH_TEMPLATE}


def _agent_json(script: str) -> dict:
    return json.loads(script.split("<<'GENAI_FLEET_AGENT_JSON'\n", 1)[1].split("\nGENAI_FLEET_AGENT_JSON\n", 1)[0])


class Cloud:
    """moto resources named as the stack's agent config names them, a real (moto) Auto Scaling group
    holding the instance the fake IMDS impersonates, the job API on the stack's table and queue."""

    def __init__(self, endpoint: str, config: agent_config.AgentConfig, work: Path) -> None:
        self.endpoint, self.config = endpoint, config
        c = self.client
        if config.job_table not in c("dynamodb").list_tables()["TableNames"]:
            create_table(c("dynamodb"), config.job_table)
        for bucket in (config.outputs.bucket, config.model_cache.store_bucket):
            c("s3").create_bucket(Bucket=bucket)
        c("sqs").create_queue(QueueName=config.queue.url.rsplit("/", 1)[1])
        checkpoint = work / "model.safetensors"
        checkpoint.write_bytes(CHECKPOINT)
        upload.upload(c("s3"), config.model_cache.store_bucket, upload.plan(config.hot_models[0], "checkpoint",
                                                                            [str(checkpoint)]), source="rehearsal")
        self.group, self.instance_id = self._group(work.name)
        self.api_key, _ = generate_key("rehearsal")
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_")}
        env.update({"GENAI_JOB_TABLE": config.job_table, "GENAI_QUEUE_URL": self._moto_queue_url(),
                    "GENAI_API_KEYS": self.api_key, "GENAI_AWS_ENDPOINT_URL": endpoint,
                    "GENAI_OUTPUTS_BASE_URL": config.outputs.cdn_base_url,  # the stack's CDN (issue 43)
                    "PYTHONPATH": str(REPO)})
        self.api = ManagedProcess("api", [sys.executable, "-m", "fleetdev.local_server", "--host", "127.0.0.1",
                                          "--port", str(port)], work / "api.log", env, cwd=REPO).start()
        wait_for(lambda: httpx.get(f"{self.api_url}/v1/health", timeout=2).status_code == 200, 60, "job API",
                 self.api.alive)

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def _moto_queue_url(self) -> str:
        return self.client("sqs").get_queue_url(QueueName=self.config.queue.url.rsplit("/", 1)[1])["QueueUrl"]

    def _group(self, suffix: str) -> tuple[str, str]:
        ec2, asg = self.client("ec2"), self.client("autoscaling")
        image = ec2.describe_images()["Images"][0]["ImageId"]
        name = f"rehearsal-{suffix}"
        ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={"ImageId": image,
                                                                                 "InstanceType": "g5.xlarge"})
        asg.create_auto_scaling_group(AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": name},
                                      MinSize=1, MaxSize=1, DesiredCapacity=1, AvailabilityZones=[f"{REGION}a"])
        instance = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
            "Instances"][0]["InstanceId"]
        return name, instance

    def health(self) -> str:
        found = self.client("autoscaling").describe_auto_scaling_instances(InstanceIds=[self.instance_id])
        return found["AutoScalingInstances"][0]["HealthStatus"].upper()  # AWS: HEALTHY, moto: Healthy

    def submit(self, model: str) -> str:
        body = {"model": model, "task": "txt2img", "inputs": {"prompt": "a lighthouse", "width": 64, "height": 64,
                                                               "seed": 7}}
        response = httpx.post(f"{self.api_url}/v1/jobs", json=body, headers={"x-api-key": self.api_key}, timeout=30)
        assert response.status_code in (200, 201, 202), response.text
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        return httpx.get(f"{self.api_url}/v1/jobs/{job_id}", headers={"x-api-key": self.api_key}, timeout=30).json()

    def close(self) -> None:
        self.api.stop()


DROP_IN = """[Service]
# First-boot rehearsal only: what the instance profile and the link-local addresses give on EC2.
Environment=AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={region}
Environment=AWS_ENDPOINT_URL={endpoint} AWS_EC2_METADATA_SERVICE_ENDPOINT={imds}
"""

# The instance store as the model-cache unit sees it (its test hooks), and the DLAMI's own mount of it.
HARDWARE = "/var/lib/genai-fleet-rehearsal"
CACHE_DROP_IN = f"""[Service]
# First-boot rehearsal only: the instance-store disk (a loop device) where EC2 would show it.
Environment=SYS_BLOCK_DIR={HARDWARE}/sys-block DEV_DIR={HARDWARE}/dev
"""
DLAMI_UNIT = "dlami-nvme.service"  # the Deep Learning AMIs' unit (genai-fleet-model-cache.service runs after it)
DLAMI_STANDIN = f"""#!/bin/bash
# Rehearsal stand-in for the DLAMI's nvme_ephemeral_drives.sh: ext4 on the instance store, mounted at
# {ic.DLAMI_NVME_DIR} (the real script first builds one LVM volume over all instance-store disks).
set -euo pipefail
disk={HARDWARE}/dev/nvme1n1
if [[ "$(blkid -o value -s TYPE "$disk" || true)" != ext4 ]]; then mkfs.ext4 -F -q "$disk"; fi
mkdir -p {ic.DLAMI_NVME_DIR}
mountpoint -q {ic.DLAMI_NVME_DIR} || mount -t ext4 -o noatime,nodiratime "$disk" {ic.DLAMI_NVME_DIR}
chmod 1777 {ic.DLAMI_NVME_DIR}
"""
DLAMI_STANDIN_UNIT = """[Unit]
Description=Rehearsal stand-in: the DLAMI mounts the instance store
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/libexec/rehearsal-dlami-nvme.sh

[Install]
WantedBy=multi-user.target
"""
CHECKPOINT_FILE = f"-type f -size {len(CHECKPOINT)}c"

# (stack, launch template, instance store): blank disks, or disks the base image already mounted.
CASES = [("dev", "cluster-spot-lt", "blank"), ("prod", "cluster-ondemand-lt", "dlami-mounted")]


def _attach_instance_store(root: Path, disk: str, mode: str) -> None:
    """What EC2 and the base image give the instance: one instance-store NVMe disk (and the DLAMI's mount)."""
    hardware = root / HARDWARE.lstrip("/")
    for name, model in (("nvme0n1", "Amazon Elastic Block Store"), ("nvme1n1", "Amazon EC2 NVMe Instance Storage")):
        (hardware / "sys-block" / name / "device").mkdir(parents=True)
        (hardware / "sys-block" / name / "device" / "model").write_text(model.ljust(40) + "\n")  # sysfs pads it
    (hardware / "dev").mkdir()
    (hardware / "dev" / "nvme1n1").symlink_to(disk)
    units = root / "etc" / "systemd" / "system"
    (units / f"{ic.MODEL_CACHE_UNIT}.d").mkdir(parents=True)
    (units / f"{ic.MODEL_CACHE_UNIT}.d" / "rehearsal.conf").write_text(CACHE_DROP_IN)
    if mode == "dlami-mounted":
        script = root / "usr" / "local" / "libexec" / "rehearsal-dlami-nvme.sh"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(DLAMI_STANDIN)
        script.chmod(0o755)
        (units / DLAMI_UNIT).write_text(DLAMI_STANDIN_UNIT)
        (units / "multi-user.target.wants").mkdir(exist_ok=True)
        (units / "multi-user.target.wants" / DLAMI_UNIT).symlink_to(f"/etc/systemd/system/{DLAMI_UNIT}")


@pytest.mark.parametrize(("stack", "template", "instance_store"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_first_boot(ami, moto_endpoint, tmp_path, stack, template, instance_store):
    # The container shares the host's loopback: a port the instance's backends use must be free, or the agent's
    # jobs would reach another server (a ComfyUI already on 8188 answered "ckpt_name not in []").
    machine.refuse_taken_ports([b.port for b in ic.HTTP_BACKENDS.values()])
    templates = _launch_templates(stack)
    assert template in templates, sorted(templates)
    script = templates[template]
    config = agent_config.parse(_agent_json(script))
    cloud = Cloud(moto_endpoint, config, tmp_path)
    root = machine.InstanceRoot([ami["ami_layer"], ami["base"]], tmp_path / "layer")
    log = tmp_path / "boot.log"
    try:
        disk = machine.LoopDisk(tmp_path / "instance-store.img")
    except machine.RehearsalUnavailable as exc:
        root.close()
        cloud.close()
        machine.give_up(str(exc))
    with FakeIMDS(instance_id=cloud.instance_id, region=REGION, group_name=cloud.group) as imds:
        for unit in (ic.AGENT_UNIT, ic.UNHEALTHY_UNIT):
            drop_in = root.path / "etc" / "systemd" / "system" / f"{unit}.d"
            drop_in.mkdir(parents=True)
            (drop_in / "rehearsal.conf").write_text(DROP_IN.format(region=REGION, endpoint=moto_endpoint,
                                                                   imds=imds.url))
        _attach_instance_store(root.path, disk.path, instance_store)
        (root.path / "var" / "lib" / "cloud-user-data").write_text(script)
        box = machine.Container(root.path, log, devices=[disk.path])
        try:
            started = time.monotonic()
            box.wait_booted()
            box.check("bash /var/lib/cloud-user-data", 120)  # cloud-final: root runs the user data
            job_id = _check_first_boot(box, cloud, config, stack)
            boot_to_image = time.monotonic() - started
            _drill_backend_restart(box, config)
            _check_instance_store(box, config, disk.path, instance_store)
            _drill_crash_loop(box, cloud)
            _ledger(cloud, [job_id], f"rehearsal {stack} (first boot, drills: "
                    f"{'crash loop' if stack == 'dev' else 'missing hot model, crash loop'})")
        except BaseException:
            print(log.read_text(errors="replace")[-6000:])
            print(box.run(f"tail -n 40 {ic.AGENT_LOG} {ic.BACKEND_LOG}; systemctl --failed --no-pager", 60).stdout)
            raise
        finally:
            box.stop()
            root.close()
            disk.close()
            cloud.close()
    print(f"rehearsal {stack} ({instance_store} instance store): AMI build {ami['build_seconds']:.0f}s (cached "
          f"base), boot to first image {boot_to_image:.0f}s")


def _check_instance_store(box, config: agent_config.AgentConfig, disk: str, mode: str) -> None:
    """The model cache is on the instance-store disk, and the hot model the agent fetched is stored there."""
    cache = config.model_cache.cache_dir
    source, fstype = box.check(f"findmnt -n -o SOURCE,FSTYPE --mountpoint {cache}").split()
    files = box.check(f"find {cache} {CHECKPOINT_FILE}").split()
    assert files, box.check(f"find {cache} -ls")
    for path in files:
        assert box.check(f"df --output=source {path} | tail -n 1").strip() == disk, path
    state = json.loads(box.check(f"cat {ic.MODEL_CACHE_STATE_FILE}"))
    assert state["kind"] == "instance-store" and state["instance_store_disks"] == 1, state
    if mode == "blank":  # formatted and mounted by setup-model-cache.sh
        assert (source, fstype) == (disk, "xfs")
        assert box.check("blkid -L genai-cache").strip() == disk
        assert state["mounted_by"] == "genai-fleet", state
    else:  # the DLAMI's filesystem, used as it is: a folder on it bind-mounted at the cache
        assert (source, fstype) == (f"{disk}[/{Path(ic.DLAMI_MODEL_CACHE_DIR).name}]", "ext4")
        assert box.check(f"findmnt -n -o SOURCE --mountpoint {ic.DLAMI_NVME_DIR}").strip() == disk
        assert box.check(f"blkid -o value -s TYPE {disk}").strip() == "ext4"  # not formatted again
        assert box.check(f"find {ic.DLAMI_MODEL_CACHE_DIR} {CHECKPOINT_FILE}").split()
        assert box.check(f"systemctl is-active {DLAMI_UNIT} {ic.MODEL_CACHE_UNIT}").split() == ["active", "active"]
        assert state["mounted_by"] == "dlami", state


def _agent_lines(box) -> list[dict]:
    out = []
    for line in box.run(f"cat {ic.AGENT_LOG}", 60).stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _check_first_boot(box, cloud: Cloud, config: agent_config.AgentConfig, stack: str) -> None:
    wait_for(lambda: any(r.get("message") == "backend ready" for r in _agent_lines(box)), 240, "the agent to boot",
             lambda: box.proc.poll() is None)
    job_id = cloud.submit(config.hot_models[0])
    wait_for(lambda: cloud.job(job_id).get("status") in ("succeeded", "failed"), 120, "the job to finish",
             lambda: box.proc.poll() is None)
    view = cloud.job(job_id)
    assert view["status"] == "succeeded", view
    (output,) = view["outputs"]
    url = output["url"]
    assert url.startswith(config.outputs.cdn_base_url + "/"), url
    key = url[len(config.outputs.cdn_base_url) + 1:]
    image = cloud.client("s3").get_object(Bucket=config.outputs.bucket, Key=key)["Body"].read()
    assert image.startswith(b"\x89PNG"), image[:16]

    # Logs: the files the CloudWatch agent tails (components/monitoring.py reads the same contract).
    lines = _agent_lines(box)
    assert any(r.get("message") == "agent starting" for r in lines)
    assert any(r.get("message") == f"job {job_id} succeeded" for r in lines)
    assert "ComfyUI stand-in on 127.0.0.1:8188" in box.check(f"cat {ic.BACKEND_LOG}")

    # Custom nodes (issue 41): the pinned fixture pack the build installed is in the image's node catalog, and the
    # ComfyUI unit loaded it from custom_nodes/ at boot.
    catalog = json.loads(box.check(f"cat {ic.COMFYUI_NODE_CATALOG}"))
    assert {"GenaiFleetSolarize", "GenaiFleetStamp"} <= set(catalog["nodes"]), sorted(catalog["nodes"])[:20]
    assert [p["name"] for p in catalog["packs"]] == ["genai_fleet_nodes"]
    assert catalog["nodes"]["CheckpointLoaderSimple"] == {"ckpt_name": "checkpoints"}
    served = json.loads(box.check(f"curl -fsS {ic.COMFYUI.url}/object_info/GenaiFleetSolarize"))
    assert served["GenaiFleetSolarize"]["python_module"] == "custom_nodes.genai_fleet_nodes"
    messages = " | ".join(r.get("message", "") for r in lines)
    assert not [k for k in json.loads(box.check(f"cat {ic.CONFIG_PATH}")) if "webhook" in k]  # no webhook secret
    if stack == "prod":  # drill: a hot model not uploaded
        assert f"hot model {config.hot_models[1]} not preloaded" in messages
    else:
        assert "not readable" not in messages and "not preloaded" not in messages

    # Units as systemd parsed them, against the contract and the agent config.
    shown = dict(line.split("=", 1) for line in box.check(
        f"systemctl show {ic.AGENT_UNIT} -p User -p ProtectSystem -p ReadWritePaths -p Restart -p OnFailure "
        f"-p ActiveState -p NRestarts -p MainPID").splitlines())
    assert shown["User"] == ic.SERVICE_USER and shown["ActiveState"] == "active", shown
    assert shown["Restart"] == "always" and shown["OnFailure"] == ic.UNHEALTHY_UNIT, shown
    writable = shown["ReadWritePaths"].split()
    for path in (config.model_cache.cache_dir, config.backend_model_dir):
        assert any(path == w or path.startswith(w + "/") for w in writable), (path, writable)
    assert box.check(f"stat -c %U /proc/{shown['MainPID']}").strip() == ic.SERVICE_USER
    assert box.check(f"systemctl is-active {ic.COMFYUI.unit}").strip() == "active"
    comfy_pid = box.check(f"systemctl show -p MainPID --value {ic.COMFYUI.unit}").strip()
    assert box.check(f"stat -c %U /proc/{comfy_pid}").strip() == ic.SERVICE_USER

    # The job's files: ComfyUI's unit names the agent config's folders (one source: the instance contract), the
    # stand-in wrote the job's image there as ComfyUI does, and the agent deleted everything of the job after it.
    exec_start = box.check(f"systemctl show -p ExecStart --value {ic.COMFYUI.unit}")
    folders = (config.backend_output_dir, config.backend_input_dir, config.backend_temp_dir)
    for flag, folder in zip(("--output-directory", "--input-directory", "--temp-directory"), folders, strict=True):
        assert folder and f"{flag} {folder} " in exec_start, (flag, folder, exec_start)
    left = box.check(f"find {' '.join(folders)} -type f ! -name .written-by-comfyui").split()
    assert not left, f"files of job {job_id} left behind: {left}"

    # Folders: owned by the service user, the model link where ComfyUI's extra-model-paths file points.
    owners = box.check(f"stat -c '%U %a %n' {config.model_cache.cache_dir} {config.backend_model_dir} "
                       f"{ic.LOG_DIR} {ic.COMFYUI.state_dir}/output").splitlines()
    assert all(line.split()[0] == ic.SERVICE_USER for line in owners), owners
    links = box.check(f"find {config.backend_model_dir} -maxdepth 1 -type l -printf '%f -> %l\\n'").splitlines()
    assert links and all(target.split(" -> ")[1].startswith(config.model_cache.cache_dir + "/") for target in links)
    assert box.check(f"cat {config.heartbeat_file}").strip().isdigit()
    return job_id


def _ledger(cloud: Cloud, job_ids: list[str], title: str) -> None:
    """The drill's ledger line (the e2e drills' format): every submitted job final, none lost."""
    from fleetdev.local.audit import Report
    from tests.e2e._helpers import record

    views = [cloud.job(j) for j in job_ids]
    count = lambda status: sum(1 for v in views if v.get("status") == status)  # noqa: E731
    lost = len(views) - count("succeeded") - count("failed") - count("canceled")
    report = Report(submitted=len(job_ids), succeeded=count("succeeded"), failed=count("failed"),
                    canceled=count("canceled"), lost=lost, duplicated=0, extra_jobs=0, dlq=None,
                    redelivered=sum(1 for v in views if int(v.get("attempts") or 1) > 1))
    record(title, report)
    assert report.lost == 0 and report.succeeded == len(job_ids), report.line(title)


def _drill_backend_restart(box, config: agent_config.AgentConfig) -> None:
    """Issue 34: the agent's restart command, run in the agent unit's sandbox (its user, NoNewPrivileges, its
    writable paths), restarts ComfyUI through the AMI's path unit and returns once the request is taken."""
    before = box.check(f"systemctl show -p MainPID --value {ic.COMFYUI.unit}").strip()
    sandbox = " ".join(f"-p {shlex.quote(p)}" for p in (
        f"User={ic.SERVICE_USER}", "NoNewPrivileges=yes", "ProtectSystem=full",
        f"ReadWritePaths={' '.join(ic.AGENT_WRITABLE)}"))
    command = " ".join(shlex.quote(part) for part in config.backend_restart_command)
    box.check(f"systemd-run --wait --pipe --quiet {sandbox} {command}", 120)
    after = box.check(f"systemctl show -p MainPID --value {ic.COMFYUI.unit}").strip()
    assert after not in ("0", before), (before, after)
    assert box.run(f"test -e {ic.BACKEND_RESTART_REQUEST}", 30).returncode != 0  # the request was taken
    wait_for(lambda: box.run(f"curl -fsS {ic.COMFYUI.url}/system_stats", 30).returncode == 0, 60,
             "ComfyUI to answer after its restart", lambda: box.proc.poll() is None)


def _drill_crash_loop(box, cloud: Cloud) -> None:
    """A config the agent rejects: ExecStartPre fails on every start until the start limit, then OnFailure."""
    assert cloud.health() == "HEALTHY"
    box.check(f"jq '.backend = \"nope\"' {ic.CONFIG_PATH} > /tmp/bad.json && mv /tmp/bad.json {ic.CONFIG_PATH} "
              f"&& chmod 0644 {ic.CONFIG_PATH} && systemctl kill --signal=SIGKILL {ic.AGENT_UNIT}")
    wait_for(lambda: box.run(f"systemctl is-failed {ic.AGENT_UNIT}", 30).stdout.strip() == "failed", 180,
             "systemd to give up on the crash-looping agent", lambda: box.proc.poll() is None)
    wait_for(lambda: cloud.health() == "UNHEALTHY", 120, "OnFailure= to mark the instance unhealthy",
             lambda: box.proc.poll() is None)
    restarts = int(box.check(f"systemctl show -p NRestarts --value {ic.AGENT_UNIT}").strip() or 0)
    assert restarts >= 3, restarts
