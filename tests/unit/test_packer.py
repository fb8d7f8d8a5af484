"""Static checks of the Packer templates and provisioning scripts (what runs without an AWS account).

- ``packer fmt -check`` on every directory holding templates, and ``packer validate -syntax-only``;
  Debian's packer 1.6.6 rejects the ``packer { required_plugins }`` block, so plugins.pkr.hcl is left
  out of the syntax check there. Real ``packer init && packer validate`` belongs in the users' CI.
- a structural test over python-hcl2's parse: both flavours, IMDSv2, encryption, tags, ``only`` gating,
  every ``var.x`` / ``local.x`` declared, every script and file the build references present.
- ``shellcheck`` on every ``*.sh`` found under packer/ and tools/ (a recursive search, not globs).
- the boot script that sets up the model cache, run against a fake /sys/block in dry-run mode.

The packer and shellcheck binaries are required: missing ones FAIL the test (CI installs them with
tools/install_system_deps.sh), they are not skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKER = REPO / "packer"
TEMPLATES = sorted(PACKER.glob("*.pkr.hcl"))
FLAVORS = ("cuda", "neuron")
# Variables without a default that the driver passes on the command line (region is the user's).
DRIVER_VARS = {"region", "git_revision"}
PLUGINS_FILE = "plugins.pkr.hcl"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run tools/install_system_deps.sh (apt-get install {name})")
    return path


def _unq(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals: strip them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _load(path: Path) -> dict[str, Any]:
    with path.open() as fh:
        return hcl2.load(fh)


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict[str, Any]]:
    return {p.name: _load(p) for p in TEMPLATES}


@pytest.fixture(scope="module")
def sources(parsed) -> dict[str, dict[str, Any]]:
    """``{"cuda": {...}, "neuron": {...}}``: the amazon-ebs source blocks, with the file they live in."""
    found: dict[str, dict[str, Any]] = {}
    for fname, doc in parsed.items():
        for block in doc.get("source", []):
            for kind, named in block.items():
                assert _unq(kind) == "amazon-ebs", f"{fname}: unexpected source type {kind}"
                for name, body in named.items():
                    found[_unq(name)] = {**body, "__file__": fname}
    return found


@pytest.fixture(scope="module")
def build(parsed) -> dict[str, Any]:
    builds = [(f, b) for f, doc in parsed.items() for b in doc.get("build", [])]
    assert [f for f, _ in builds] == ["build.pkr.hcl"], "exactly one shared build block, in build.pkr.hcl"
    return builds[0][1]


def _provisioners(build: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(_unq(kind), body) for block in build["provisioner"] for kind, body in block.items()]


def _variables(parsed) -> dict[str, dict[str, Any]]:
    return {_unq(name): body for doc in parsed.values() for block in doc.get("variable", [])
            for name, body in block.items()}


def _locals(parsed) -> dict[str, Any]:
    return {k: v for doc in parsed.values() for block in doc.get("locals", []) for k, v in block.items()
            if not k.startswith("__")}


# --- packer and shellcheck ------------------------------------------------------------------------


def test_packer_fmt_check():
    packer = _tool("packer")
    dirs = sorted({p.parent for p in PACKER.rglob("*.hcl")})
    assert PACKER in dirs
    for d in dirs:  # packer 1.6.6 has no -recursive: check each directory
        proc = subprocess.run([packer, "fmt", "-check", "-diff", str(d)], capture_output=True, text=True)
        assert proc.returncode == 0, f"packer fmt -check {d} failed; run `packer fmt {d}`:\n{proc.stdout}{proc.stderr}"


def test_packer_syntax_check(tmp_path):
    packer = _tool("packer")
    version = subprocess.run([packer, "version"], capture_output=True, text=True, check=True).stdout
    major, minor = map(int, re.search(r"(\d+)\.(\d+)", version).groups())
    target = PACKER
    if (major, minor) < (1, 7):  # no required_plugins yet: check everything else
        target = tmp_path / "packer"
        target.mkdir()
        for path in PACKER.glob("*.hcl"):
            if path.name != PLUGINS_FILE:
                shutil.copy(path, target / path.name)
    proc = subprocess.run([packer, "validate", "-syntax-only", str(target)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _shell_scripts() -> list[Path]:
    found = []
    for root in (PACKER, REPO / "tools"):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in {"__pycache__", ".git"}]
            found += [Path(dirpath) / f for f in filenames if f.endswith(".sh")]
    return sorted(found)


def test_shellcheck_every_script():
    shellcheck = _tool("shellcheck")
    scripts = _shell_scripts()
    rel = {str(p.relative_to(REPO)) for p in scripts}
    # The search must reach nested directories (the model repo's globs missed its GPU/Neuron scripts).
    assert {"tools/install_system_deps.sh", "packer/scripts/install-agent.sh",
            "packer/scripts/boot/setup-model-cache.sh"} <= rel
    proc = subprocess.run([shellcheck, "--external-sources", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_script_conventions():
    for path in (PACKER / "scripts").rglob("*.sh"):
        text = path.read_text()
        assert text.startswith("#!/usr/bin/env bash\n"), path
        assert "set -Eeuo pipefail" in text, f"{path}: strict mode"
        assert os.access(path, os.X_OK), f"{path} is not executable"
    for path in (PACKER / "scripts" / "boot").glob("*.sh"):  # run on every boot
        text = path.read_text()
        assert "readonly " in text and "local " in text and 'main "$@"' in text, path
        assert re.search(r"date -u \+%Y-%m-%dT", text) and ">&2" in text, f"{path}: timestamped logs to stderr"


# --- structure ------------------------------------------------------------------------------------


def test_one_file_per_flavour_and_one_build(sources, build):
    assert set(sources) == set(FLAVORS)
    for flavor in FLAVORS:
        assert sources[flavor]["__file__"] == f"{flavor}.pkr.hcl"
    assert [_unq(s) for s in build["sources"]] == [f"source.amazon-ebs.{f}" for f in FLAVORS]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_source_ami_filter_is_owned_by_amazon(sources, flavor):
    ami_filter = sources[flavor]["source_ami_filter"][0]
    assert [_unq(o) for o in ami_filter["owners"]] == ["amazon"]
    assert ami_filter["most_recent"] is True
    assert ami_filter["filters"]["name"] == f"${{var.{flavor}_source_ami_name}}"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_imdsv2_on_the_build_instance_and_the_ami(sources, build, flavor):
    src = sources[flavor]
    metadata = src["metadata_options"][0]
    assert _unq(metadata["http_tokens"]) == "required"
    assert _unq(metadata["http_endpoint"]) == "enabled"
    assert _unq(src["imds_support"]) == "v2.0"
    # ... and the first provisioner proves it on the running build instance.
    kind, first = _provisioners(build)[0]
    assert kind == "shell" and _unq(first["script"]).endswith("/scripts/check-imdsv2.sh")
    assert "only" not in first


@pytest.mark.parametrize("flavor", FLAVORS)
def test_encrypted_gp3_root(sources, flavor):
    src = sources[flavor]
    (root,) = src["launch_block_device_mappings"]
    assert root["encrypted"] is True
    assert _unq(root["volume_type"]) == "gp3"
    assert root["delete_on_termination"] is True
    assert src["encrypt_boot"] is True


@pytest.mark.parametrize("flavor", FLAVORS)
def test_tags_on_ami_snapshot_and_build_resources(parsed, sources, flavor):
    src = sources[flavor]
    for key in ("tags", "snapshot_tags", "run_tags", "run_volume_tags"):
        assert src[key] == f"${{local.{flavor}_tags}}", key
    expr = _locals(parsed)[f"{flavor}_tags"]
    assert expr.startswith("${merge(var.tags, {"), "user tags first, so the genai-fleet tags win"
    for key, value in {"Project": '"genai-fleet"', "Flavor": f'"{flavor}"', "Version": "var.ami_version",
                       "GitRevision": "var.git_revision", "Name": f"local.{flavor}_ami_name"}.items():
        assert re.search(rf"\b{key} = {re.escape(value)}", expr), f"{flavor}: tag {key} = {value}"


def test_only_gating_names_real_sources(sources, build):
    flavour_steps = {"verify-cuda.sh": ["cuda"], "verify-neuron.sh": ["neuron"], "install-comfyui.sh": ["cuda"],
                     "install-a1111.sh": ["cuda"], "install-neuron-monitor.sh": ["neuron"]}
    install_agent = []
    for _, body in _provisioners(build):
        assert "except" not in body, "gate with `only`, one mechanism"
        only = [_unq(o) for o in body.get("only", [])]
        assert all(o in {f"amazon-ebs.{s}" for s in sources} for o in only), only
        script = Path(_unq(body.get("script", ""))).name
        if script in flavour_steps:
            assert only == [f"amazon-ebs.{f}" for f in flavour_steps[script]], script
        if script == "install-agent.sh":
            install_agent += only
        if script in {"cleanup.sh", "install-base.sh", "install-cloudwatch-agent.sh", "check-imdsv2.sh"}:
            assert only == [], f"{script} runs for every flavour"
    assert sorted(install_agent) == ["amazon-ebs.cuda", "amazon-ebs.neuron"]
    _, last = _provisioners(build)[-1]
    assert Path(_unq(last["script"])).name == "cleanup.sh", "cleanup is the last step"


def test_manifest_post_processor(build):
    (pp,) = [body for block in build["post-processor"] for kind, body in block.items() if _unq(kind) == "manifest"]
    assert _unq(pp["output"]) == "${path.root}/manifest.json"
    assert pp["strip_path"] is True
    assert "git_revision" in pp["custom_data"]


def test_every_variable_is_typed_described_declared_and_used(parsed):
    variables = _variables(parsed)
    for name, body in variables.items():
        assert "type" in body, f"variable {name} has no type"
        assert _unq(body.get("description", "")).strip(), f"variable {name} has no description"
    text = "\n".join(p.read_text() for p in TEMPLATES)
    referenced = set(re.findall(r"\bvar\.([A-Za-z0-9_]+)", text))
    assert referenced <= set(variables), f"undeclared: {referenced - set(variables)}"
    assert set(variables) <= referenced, f"declared but unused: {set(variables) - referenced}"
    # Validation conditions check the variable they belong to.
    for name, body in variables.items():
        for validation in body.get("validation", []):
            assert f"var.{name}" in validation["condition"], name


def test_every_local_is_declared(parsed):
    declared = set(_locals(parsed))
    text = "\n".join(p.read_text() for p in TEMPLATES)
    referenced = set(re.findall(r"\blocal\.([A-Za-z0-9_]+)", text))
    assert referenced <= declared, f"undeclared locals: {referenced - declared}"


def test_only_the_region_needs_choosing(parsed):
    variables = _variables(parsed)
    release = _load(PACKER / "release.auto.pkrvars.hcl")
    pinned = {k for k in release if not k.startswith("__")}
    assert pinned <= set(variables), f"release.auto.pkrvars.hcl sets undeclared {pinned - set(variables)}"
    without_default = {n for n, b in variables.items() if "default" not in b}
    assert without_default - pinned == DRIVER_VARS, "every other value is pinned or defaulted"


def _referenced_paths(build: dict[str, Any]) -> list[str]:
    paths: list[str] = []
    for _, body in _provisioners(build):
        if _unq(body.get("direction", "upload")) == "download":
            continue  # its source is on the build instance (the node catalog), its destination made by the build
        for key in ("script", "source"):
            if key in body:
                paths.append(_unq(body[key]))
        for key in ("scripts", "sources"):
            paths += [_unq(p) for p in body.get(key, [])]
    return paths


def test_every_referenced_script_and_file_exists(build):
    paths = _referenced_paths(build)
    assert paths
    for ref in paths:
        if ref.startswith("${var.agent_dist_dir}"):
            continue  # built by tools/ami_build.py; test_ami_build checks the two agree
        assert ref.startswith("${path.root}/"), f"{ref}: reference files relative to the template"
        path = PACKER / ref.removeprefix("${path.root}/")
        assert path.exists(), f"{ref} -> {path} is missing"


def test_every_script_and_file_is_used(build):
    text = "\n".join(_referenced_paths(build))
    # Unit names live in the instance contract; the scripts install them through its variables.
    scripts_text = "\n".join(p.read_text() for p in [*(PACKER / "scripts").rglob("*.sh"),
                                                     PACKER / "files" / "instance-contract.sh",
                                                     PACKER / "files" / "instance-contract.env"])
    for path in (PACKER / "scripts").glob("*.sh"):
        assert f"/scripts/{path.name}" in text, f"{path.name} is not run by the build"
    for path in (PACKER / "scripts" / "boot").glob("*.sh"):
        assert path.name in scripts_text, f"boot script {path.name} is not installed by any script"
    for path in (PACKER / "files").iterdir():
        assert path.name in scripts_text, f"{path.name} is not installed by any script"


# --- units ----------------------------------------------------------------------------------------


def _unit(name: str) -> str:
    """The unit as the AMI installs it: placeholders rendered from the instance contract."""
    from runtime import instance_contract

    return instance_contract.render_template((PACKER / "files" / name).read_text())


def test_agent_unit_contract():
    unit = _unit("genai-worker.service")
    assert "ExecStart=/opt/genai-fleet/bin/genai-worker run --config /etc/genai-fleet/agent.json" in unit
    assert "Restart=always" in unit
    assert "OnFailure=genai-worker-unhealthy.service" in unit
    assert re.search(r"^After=.*network-online\.target", unit, re.M)
    assert re.search(r"^After=.*comfyui\.service", unit, re.M)
    assert "PathExists=/etc/genai-fleet/agent.json" in _unit("genai-worker.path")
    assert not re.search(r"@[A-Z_]+@", unit)


def test_backends_bind_to_loopback():
    assert "--listen 127.0.0.1 --port 8188" in _unit("comfyui.service")
    a1111 = _unit("a1111.service")
    assert "--api --nowebui --server-name 127.0.0.1 --port 7860" in a1111
    assert "0.0.0.0" not in _unit("comfyui.service") + a1111


# --- the model-cache boot script --------------------------------------------------------------------


def _fake_sys_block(root: Path, models: dict[str, str]) -> Path:
    for name, model in models.items():
        (root / name / "device").mkdir(parents=True)
        (root / name / "device" / "model").write_text(model.ljust(40) + "\n")
    return root


@pytest.mark.parametrize(
    ("models", "expect", "absent"),
    [
        ({"nvme0n1": "Amazon Elastic Block Store"}, ["no instance-store NVMe disks"], ["mkfs.xfs", "mdadm"]),
        ({"nvme0n1": "Amazon Elastic Block Store", "nvme1n1": "Amazon EC2 NVMe Instance Storage"},
         ["+ mkfs.xfs -f -q -L genai-cache /dev/nvme1n1"], ["mdadm"]),
        ({"nvme0n1": "Amazon Elastic Block Store", "nvme1n1": "Amazon EC2 NVMe Instance Storage",
          "nvme2n1": "Amazon EC2 NVMe Instance Storage"},
         ["--level=0", "--raid-devices=2 /dev/nvme1n1 /dev/nvme2n1",
          "+ mkfs.xfs -f -q -L genai-cache /dev/md/genai-cache", "+ mount -o noatime,nodiratime /dev/md/genai-cache"],
         []),
    ],
    ids=["ebs-only", "one-disk", "raid0"],
)
def test_model_cache_boot_script(tmp_path, models, expect, absent):
    env = {"PATH": os.environ["PATH"], "DRY_RUN": "1", "SYS_BLOCK_DIR": str(_fake_sys_block(tmp_path / "sys", models)),
           "MODEL_CACHE_DIR": str(tmp_path / "models")}
    proc = subprocess.run([str(PACKER / "scripts" / "boot" / "setup-model-cache.sh")], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    for text in expect:
        assert text in proc.stderr
    for text in absent:
        assert text not in proc.stderr
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z setup-model-cache: ", proc.stderr, re.M)


def _release_values() -> dict[str, Any]:
    return {k: _unq(v) for k, v in _load(PACKER / "release.auto.pkrvars.hcl").items()}


def test_cuda_agent_gets_the_diffusers_group_at_versions_the_group_allows():
    """The CUDA AMI's agent runs the diffusers backend: every requirement of pyproject's `diffusers` group is
    installed, pinned to a version the group accepts (a bump of one side that the other refuses fails here)."""
    import tomllib

    from packaging.requirements import Requirement

    group = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["diffusers"]]
    pins = {Requirement(p).name: next(iter(Requirement(p).specifier)).version
            for p in map(_unq, _release_values()["cuda_agent_pip_packages"])}
    missing = {r.name for r in group} - set(pins)
    assert not missing, f"not installed on the CUDA AMI: {missing}"
    for requirement in group:
        assert requirement.specifier.contains(pins[requirement.name]), (requirement, pins[requirement.name])
    assert _release_values()["cuda_agent_pip_index_url"].startswith("https://download.pytorch.org/whl/cu")


def test_neuron_source_image_is_pinned_not_the_newest(sources):
    """optimum-neuron's pins match one Neuron SDK; a floating DLAMI pattern would bring another SDK's runtime.

    Decision (issue 31): keep Neuron SDK 2.20 (the DLAMI of 2024-10-27, optimum-neuron 0.0.28, neuronx-cc 2.15,
    torch-neuronx 2.1.2) and find the image with include_deprecated: AWS deprecates public AMIs at most two
    years after creation, and a deprecated image is hidden from other accounts' DescribeImages unless asked for.
    """
    name = _release_values()["neuron_source_ami_name"]
    assert "*" not in name and re.search(r"\d{8}$", name), name
    assert name == "Deep Learning AMI Neuron (Ubuntu 22.04) 20241027"
    assert "optimum-neuron[neuronx,diffusers]==0.0.28" in map(_unq, _release_values()["neuron_pip_packages"])
    assert sources["neuron"]["source_ami_filter"][0]["include_deprecated"] is True


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_pinned_source_image_is_looked_up_with_deprecated_images(sources, flavor):
    """A name without a wildcard names one image, which ages into deprecation; a pattern follows the newest."""
    pinned = "*" not in _release_values()[f"{flavor}_source_ami_name"]
    assert sources[flavor]["source_ami_filter"][0].get("include_deprecated", False) is pinned, flavor
