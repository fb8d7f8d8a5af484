"""Every part of an instance agrees with the instance contract (runtime/instance_contract.py).

The AMI's files (units, ComfyUI's extra-model-paths file) are rendered from the contract the way the
install scripts render them; the agent configs are the ones the Pulumi program writes into the dev and
prod launch templates; the CloudWatch agent config is the monitoring component's. A path, user, port
or unit setting that one of them changes alone fails here.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from components import monitoring
from fleetdev.pulumi_mocks import run_stack
from runtime import agent_config
from runtime import instance_contract as ic
from tests.unit.component_harness import stack_fleet

FILES = Path(__file__).resolve().parents[2] / "packer" / "files"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def rendered(name: str) -> str:
    return ic.render_template((FILES / name).read_text())


def directives(unit: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", unit, re.M)


def one(unit: str, key: str) -> str:
    values = directives(unit, key)
    assert len(values) == 1, f"{key}= appears {len(values)} times"
    return values[0]


def _flag(command: str, flag: str) -> str:
    match = re.search(rf"{flag} (\S+)", command)
    assert match, f"{flag} missing from {command}"
    return match.group(1)


@pytest.fixture(scope="module", params=["dev", "prod"])
def agent_configs(request) -> list[agent_config.AgentConfig]:
    """The agent configs written by the stack's launch templates (user data, as the program renders it)."""
    rec = run_stack(request.param)
    configs = []
    for lt in rec.resources:
        if lt.type != LAUNCH_TEMPLATE:
            continue
        script = base64.b64decode(lt.inputs["userData"]).decode()
        body = script.split("<<'GENAI_FLEET_AGENT_JSON'\n", 1)[1].split("\nGENAI_FLEET_AGENT_JSON\n", 1)[0]
        configs.append(agent_config.parse(json.loads(body)))
        assert f"> {ic.CONFIG_PATH}.tmp" in script and f"mv -f {ic.CONFIG_PATH}.tmp {ic.CONFIG_PATH}" in script
    assert configs, "the program declared no launch template"
    return configs


def test_generated_env_file_is_current():
    assert ic.ENV_FILE.read_text() == ic.render_env(), "run: python -m runtime.instance_contract --write"
    assert ic.main([]) == 0


@pytest.mark.parametrize("name", sorted(p.name for p in FILES.iterdir()
                                        if p.suffix in (".service", ".path", ".yaml", ".logrotate")))
def test_every_template_renders_completely(name):
    assert not re.search(r"@[A-Z][A-Z0-9_]*@", rendered(name)), f"{name} uses a name the contract lacks"


def test_agent_unit_runs_the_contract_binary_as_the_service_user():
    unit = rendered(ic.AGENT_UNIT)
    assert one(unit, "User") == ic.SERVICE_USER and one(unit, "Group") == ic.SERVICE_GROUP
    assert one(unit, "ExecStart") == f"{ic.AGENT_BIN} run --config {ic.CONFIG_PATH}"
    assert one(unit, "ExecStartPre") == f"{ic.AGENT_BIN} self-check --config {ic.CONFIG_PATH}"
    assert one(unit, "ConditionPathExists") == ic.CONFIG_PATH
    assert one(unit, "Restart") == "always"
    assert one(unit, "OnFailure") == ic.UNHEALTHY_UNIT
    assert one(unit, "Type") == "notify" and one(unit, "WatchdogSec") == str(ic.WATCHDOG_SECONDS)
    assert int(one(unit, "StartLimitBurst")) >= 3
    assert one(unit, "StandardOutput") == one(unit, "StandardError") == f"append:{ic.AGENT_LOG}"
    assert one(unit, "RuntimeDirectory") == Path(ic.RUN_DIR).name
    assert one(unit, "ProtectSystem") == "full"
    path_unit = rendered(ic.AGENT_PATH_UNIT)
    assert one(path_unit, "PathExists") == ic.CONFIG_PATH and one(path_unit, "Unit") == ic.AGENT_UNIT


def test_unhealthy_unit_marks_the_instance():
    unit = rendered(ic.UNHEALTHY_UNIT)
    assert one(unit, "ExecStart").startswith(f"{ic.AGENT_BIN} mark-unhealthy --config {ic.CONFIG_PATH}")
    assert one(unit, "User") == ic.SERVICE_USER


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def test_every_path_the_agent_writes_is_writable_under_its_unit(agent_configs):
    unit = rendered(ic.AGENT_UNIT)
    writable = one(unit, "ReadWritePaths").split()
    runtime_dir = f"/run/{one(unit, 'RuntimeDirectory')}"
    for config in agent_configs:
        assert _under(config.model_cache.cache_dir, writable), config.model_cache.cache_dir
        assert config.backend_model_dir and _under(config.backend_model_dir, writable)
        assert config.heartbeat_file and _under(config.heartbeat_file, [runtime_dir])
        assert not _under(config.model_cache.cache_dir, [config.backend_model_dir])


def test_backends_read_models_from_the_folder_the_agent_links_into(agent_configs):
    comfy = rendered(ic.COMFYUI.unit)
    command = one(comfy, "ExecStart")
    assert command.startswith(f"{ic.COMFYUI.python} main.py")
    assert one(comfy, "WorkingDirectory") == ic.COMFYUI.install_dir
    assert _flag(command, "--port") == str(ic.COMFYUI.port) and _flag(command, "--listen") == "127.0.0.1"
    assert _flag(command, "--extra-model-paths-config") == ic.COMFYUI_EXTRA_MODEL_PATHS
    paths = rendered("comfyui-extra-model-paths.yaml")
    base = re.search(r"^\s+base_path: (\S+)$", paths, re.M).group(1)
    checkpoints = re.search(r"^\s+checkpoints: (\S+)$", paths, re.M).group(1)
    assert f"{base}/{checkpoints}" == ic.COMFYUI.model_dir
    a1111 = one(rendered(ic.A1111.unit), "ExecStart")
    assert _flag(a1111, "--ckpt-dir") == ic.A1111.model_dir and _flag(a1111, "--port") == str(ic.A1111.port)
    for config in agent_configs:
        install = ic.HTTP_BACKENDS[config.backend]
        assert config.backend_url == install.url
        assert config.backend_model_dir == install.model_dir


def test_the_tailed_log_files_are_rotated():
    rotated = rendered("genai-fleet.logrotate")
    assert re.search(rf"^{re.escape(ic.LOG_DIR)}/\*\.log {{$", rotated, re.M)
    assert "copytruncate" in rotated  # systemd keeps the append: files open


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_cloudwatch_agent_tails_the_files_the_units_write(stack):
    cfg = monitoring.cloudwatch_agent_config(stack_fleet(stack).identity, stack_fleet(stack).cluster)
    tailed = {f["file_path"] for f in cfg["logs"]["logs_collected"]["files"]["collect_list"]}
    written = {one(rendered(ic.AGENT_UNIT), "StandardOutput").removeprefix("append:")}
    written |= {one(rendered(b.unit), "StandardOutput").removeprefix("append:") for b in ic.HTTP_BACKENDS.values()}
    assert tailed == written == {ic.AGENT_LOG, ic.BACKEND_LOG}


def test_readme_shows_the_contract_table():
    readme = (FILES.parents[1] / "README.md").read_text()
    block = readme.split("<!-- instance-contract:begin -->\n", 1)[1].split("<!-- instance-contract:end -->", 1)[0]
    assert block == ic.table(), "run: python -m runtime.instance_contract --table and paste it into README.md"


def test_the_agent_deletes_job_files_in_the_folders_the_backend_unit_writes_to(agent_configs):
    """Issue 34: the adapter derived ComfyUI's folders from the model folder (/var/cache/genai-fleet/output)
    while comfyui.service wrote under /var/lib/genai-fleet/comfyui: no job file was ever deleted."""
    from runtime.backends.comfyui import ComfyUIBackend

    command = one(rendered(ic.COMFYUI.unit), "ExecStart")
    folders = {flag: _flag(command, flag) for flag in ("--output-directory", "--input-directory", "--temp-directory")}
    assert folders == {"--output-directory": ic.COMFYUI.output_dir, "--input-directory": ic.COMFYUI.input_dir,
                       "--temp-directory": ic.COMFYUI.temp_dir}
    for config in agent_configs:
        assert config.backend == "comfyui", config.backend  # the stacks' configs run ComfyUI
        assert (config.backend_output_dir, config.backend_input_dir, config.backend_temp_dir) == \
            (ic.COMFYUI.output_dir, ic.COMFYUI.input_dir, ic.COMFYUI.temp_dir)
        backend = ComfyUIBackend(config)
        try:
            assert str(backend.output_dir) == folders["--output-directory"]
            assert str(backend.input_dir) == folders["--input-directory"]
        finally:
            backend.close()
        assert _under(config.backend_output_dir, one(rendered(ic.AGENT_UNIT), "ReadWritePaths").split())


def test_the_agent_can_restart_exactly_its_backend_and_nothing_else(agent_configs):
    """Issue 34: a hung backend is restarted by the agent, which runs under NoNewPrivileges (no sudo): its config's
    command creates the request file in its own writable folder; a root path unit runs the restart unit, which
    try-restarts the backend units only and removes the request (the command waits for that)."""
    path_unit, restart_unit = rendered(ic.BACKEND_RESTART_PATH_UNIT), rendered(ic.BACKEND_RESTART_UNIT)
    assert one(path_unit, "PathExists") == ic.BACKEND_RESTART_REQUEST
    assert one(path_unit, "Unit") == ic.BACKEND_RESTART_UNIT
    assert one(restart_unit, "Type") == "oneshot" and not directives(restart_unit, "User")  # root, nothing else runs
    assert one(restart_unit, "ExecStart") == f"/bin/systemctl try-restart {ic.COMFYUI.unit} {ic.A1111.unit}"
    assert one(restart_unit, "ExecStopPost") == f"/bin/rm -f {ic.BACKEND_RESTART_REQUEST}"
    assert one(rendered(ic.AGENT_UNIT), "NoNewPrivileges") == "yes"
    assert _under(ic.BACKEND_RESTART_REQUEST, one(rendered(ic.AGENT_UNIT), "ReadWritePaths").split())
    install = (FILES.parent / "scripts" / "install-agent.sh").read_text()
    assert "${BACKEND_RESTART_PATH_UNIT}" in install.split("systemctl enable", 1)[1].splitlines()[0]
    for config in agent_configs:
        assert config.backend_restart_command == ic.BACKEND_RESTART_COMMAND
        assert f"touch {ic.BACKEND_RESTART_REQUEST}" in config.backend_restart_command[-1]
