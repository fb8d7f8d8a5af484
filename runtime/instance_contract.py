"""The instance contract: every path, user, unit, port and file a worker instance relies on, defined once.

The AMI (packer/), the user data and CloudWatch agent config (components/) and the agent all take
their values from here:

- ``packer/files/instance-contract.env`` is rendered from :func:`env` (``python -m
  runtime.instance_contract --write``; a unit test fails when the committed file differs). The
  provisioning scripts source it, and every ``@NAME@`` placeholder in the systemd units and the
  ComfyUI extra-model-paths file is rendered from it at build time (install scripts' ``render``).
- ``components/user_data.py`` writes the agent config with the model folders, log files and
  ports below; the agent config carries every path the agent needs.
- ``components/monitoring.py`` tails :data:`AGENT_LOG` and :data:`BACKEND_LOG`, the files the units
  append the agent's and the backend's output to (``StandardOutput=append:``).

Model folders: the cache stores ``<MODEL_CACHE_DIR>/<id>@<version>/...`` (the NVMe mount, or
:data:`EBS_MODEL_CACHE_DIR` with a warm pool). Backends never read the cache itself: the agent links
a cached checkpoint into :data:`BACKEND_MODELS_DIR`/checkpoints, the one folder ComfyUI's
extra-model-paths file and A1111's ``--ckpt-dir`` name. That folder lies outside the cache, so the
cache's eviction and torn-download walks never touch it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

SERVICE_USER = "genai"
SERVICE_GROUP = "genai"

AGENT_PREFIX = "/opt/genai-fleet"  # the agent's virtual environment
AGENT_BIN = f"{AGENT_PREFIX}/bin/genai-worker"
CONFIG_DIR = "/etc/genai-fleet"
CONFIG_PATH = f"{CONFIG_DIR}/agent.json"  # written by user data
RELEASE_FILE = f"{CONFIG_DIR}/release.json"  # written by install-agent.sh: what was baked
LIBEXEC_DIR = "/usr/local/libexec/genai-fleet"  # boot scripts
STATE_DIR = "/var/lib/genai-fleet"  # the service user's home; backends' writable state
CACHE_ROOT = "/var/cache/genai-fleet"
MODEL_CACHE_DIR = f"{CACHE_ROOT}/models"  # instance-store NVMe mount point (else a folder on the root volume)
EBS_MODEL_CACHE_DIR = f"{STATE_DIR}/models"  # warm-pool groups: hot models survive a stop
BACKEND_MODELS_DIR = f"{CACHE_ROOT}/backend-models"  # links the backends read; never evicted
CHECKPOINTS_DIR = f"{BACKEND_MODELS_DIR}/checkpoints"
LOG_DIR = "/var/log/genai-fleet"
AGENT_LOG = f"{LOG_DIR}/agent.log"
BACKEND_LOG = f"{LOG_DIR}/backend.log"
RUN_DIR = "/run/genai-fleet"  # RuntimeDirectory of the agent: heartbeat file
HEARTBEAT_FILE = f"{RUN_DIR}/heartbeat"
MODEL_CACHE_STATE_FILE = "/run/genai-fleet-cache/model-cache.json"
# Where the AWS Deep Learning AMIs mount the instance store themselves (their release notes' nvme_location).
# setup-model-cache.sh uses that filesystem when it is mounted instead of formatting the same disks again.
DLAMI_NVME_DIR = "/opt/dlami/nvme"
DLAMI_MODEL_CACHE_DIR = f"{DLAMI_NVME_DIR}/genai-fleet-models"  # bind-mounted at MODEL_CACHE_DIR

AGENT_UNIT = "genai-worker.service"
AGENT_PATH_UNIT = "genai-worker.path"
UNHEALTHY_UNIT = "genai-worker-unhealthy.service"  # OnFailure= of the agent: mark the instance unhealthy
MODEL_CACHE_UNIT = "genai-fleet-model-cache.service"
BOOT_TIMING_UNIT = "genai-fleet-boot-timing.service"
# The agent's one way to restart its backend (a node that ignores interrupts wedges it): it creates
# BACKEND_RESTART_REQUEST (in its own writable state folder); the root path unit then runs the restart unit,
# which restarts the backend units (try-restart: only the running one) and removes the file. The agent runs
# under NoNewPrivileges=yes, so sudo cannot work, and it gets no other right over systemd.
BACKEND_RESTART_REQUEST = f"{STATE_DIR}/backend-restart.request"
BACKEND_RESTART_UNIT = "genai-backend-restart.service"
BACKEND_RESTART_PATH_UNIT = "genai-backend-restart.path"
WATCHDOG_SECONDS = 120  # the agent pings systemd's watchdog; silence this long = hung agent

# The workers' only way out (components/launch_template.py's security group): TCP 443 to anywhere. The
# workers fetch input images themselves, so the API accepts image URLs on exactly that (local mode too),
# and the policy pack's input-urls-within-egress rule checks the security group against these values.
EGRESS_HTTPS_PORT = 443
INPUT_URL_SCHEMES = ("https",)
INPUT_URL_PORTS = (EGRESS_HTTPS_PORT,)

# Folders of the backend model tree (ComfyUI's folder names; A1111 reads checkpoints only).
COMFYUI_MODEL_FOLDERS = ("checkpoints", "loras", "vae", "clip", "controlnet", "upscale_models", "embeddings",
                         "diffusion_models", "text_encoders")


@dataclass(frozen=True)
class BackendInstall:
    """Where the AMI installs one HTTP backend and how the agent reaches it."""

    name: str
    unit: str
    install_dir: str  # code tree + venv (root-owned)
    state_dir: str  # writable by the service user
    port: int
    model_dir: str  # the folder the backend loads checkpoints from (agent links cached models here)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # The folders the backend writes job files to: the unit's command line, the agent config (the agent deletes
    # each attempt's files there) and the periodic sweep all read these, never a folder derived elsewhere.
    @property
    def output_dir(self) -> str:
        return f"{self.state_dir}/output"

    @property
    def input_dir(self) -> str:
        return f"{self.state_dir}/input"

    @property
    def temp_dir(self) -> str:
        return f"{self.state_dir}/temp"

    @property
    def python(self) -> str:
        return f"{self.install_dir}/venv/bin/python"


COMFYUI = BackendInstall("comfyui", "comfyui.service", "/opt/comfyui", f"{STATE_DIR}/comfyui", 8188, CHECKPOINTS_DIR)
A1111 = BackendInstall("a1111", "a1111.service", "/opt/a1111", f"{STATE_DIR}/a1111", 7860, CHECKPOINTS_DIR)
HTTP_BACKENDS = {b.name: b for b in (COMFYUI, A1111)}
COMFYUI_EXTRA_MODEL_PATHS = f"{CONFIG_DIR}/comfyui-extra-model-paths.yaml"
# The image's ComfyUI node catalog (runtime/node_catalog.py), recorded by install-comfyui-nodes.sh at AMI build
COMFYUI_NODE_CATALOG = f"{CONFIG_DIR}/comfyui-node-catalog.json"

# What the agent config names as its restart command: request, then wait until the restart unit removed the
# request (systemctl restart returns once the new process runs); the agent bounds the wait.
BACKEND_RESTART_COMMAND = ("/bin/sh", "-c", f"touch {BACKEND_RESTART_REQUEST} && "
                           f"while [ -e {BACKEND_RESTART_REQUEST} ]; do sleep 0.2; done")

# Folders the agent may write (its unit's ReadWritePaths); everything else is read-only to it.
AGENT_WRITABLE = (CACHE_ROOT, STATE_DIR, LOG_DIR)


def env() -> dict[str, str]:
    """The contract as shell variables (``packer/files/instance-contract.env``), placeholder names included."""
    values = {
        "SERVICE_USER": SERVICE_USER, "SERVICE_GROUP": SERVICE_GROUP, "AGENT_PREFIX": AGENT_PREFIX,
        "AGENT_BIN": AGENT_BIN, "CONFIG_DIR": CONFIG_DIR, "CONFIG_PATH": CONFIG_PATH, "RELEASE_FILE": RELEASE_FILE,
        "LIBEXEC_DIR": LIBEXEC_DIR, "STATE_DIR": STATE_DIR, "CACHE_ROOT": CACHE_ROOT,
        "MODEL_CACHE_DIR": MODEL_CACHE_DIR, "EBS_MODEL_CACHE_DIR": EBS_MODEL_CACHE_DIR,
        "BACKEND_MODELS_DIR": BACKEND_MODELS_DIR, "CHECKPOINTS_DIR": CHECKPOINTS_DIR, "LOG_DIR": LOG_DIR,
        "AGENT_LOG": AGENT_LOG, "BACKEND_LOG": BACKEND_LOG, "RUN_DIR": RUN_DIR, "HEARTBEAT_FILE": HEARTBEAT_FILE,
        "MODEL_CACHE_STATE_FILE": MODEL_CACHE_STATE_FILE, "DLAMI_NVME_DIR": DLAMI_NVME_DIR,
        "DLAMI_MODEL_CACHE_DIR": DLAMI_MODEL_CACHE_DIR, "AGENT_UNIT": AGENT_UNIT,
        "AGENT_PATH_UNIT": AGENT_PATH_UNIT, "UNHEALTHY_UNIT": UNHEALTHY_UNIT, "MODEL_CACHE_UNIT": MODEL_CACHE_UNIT,
        "BOOT_TIMING_UNIT": BOOT_TIMING_UNIT, "WATCHDOG_SECONDS": str(WATCHDOG_SECONDS),
        "BACKEND_RESTART_REQUEST": BACKEND_RESTART_REQUEST, "BACKEND_RESTART_UNIT": BACKEND_RESTART_UNIT,
        "BACKEND_RESTART_PATH_UNIT": BACKEND_RESTART_PATH_UNIT,
        "BACKEND_UNITS": " ".join(b.unit for b in HTTP_BACKENDS.values()),
        "AGENT_WRITABLE": " ".join(AGENT_WRITABLE), "COMFYUI_EXTRA_MODEL_PATHS": COMFYUI_EXTRA_MODEL_PATHS,
        "COMFYUI_MODEL_FOLDERS": " ".join(COMFYUI_MODEL_FOLDERS), "COMFYUI_NODE_CATALOG": COMFYUI_NODE_CATALOG,
    }
    for b in HTTP_BACKENDS.values():
        key = b.name.upper()
        values.update({f"{key}_UNIT": b.unit, f"{key}_DIR": b.install_dir, f"{key}_STATE_DIR": b.state_dir,
                       f"{key}_PORT": str(b.port), f"{key}_MODEL_DIR": b.model_dir,
                       f"{key}_OUTPUT_DIR": b.output_dir, f"{key}_INPUT_DIR": b.input_dir,
                       f"{key}_TEMP_DIR": b.temp_dir})
    return values


ENV_FILE = Path(__file__).resolve().parents[1] / "packer" / "files" / "instance-contract.env"


def render_env() -> str:
    lines = ["# Generated from runtime/instance_contract.py by `python -m runtime.instance_contract --write`.",
             "# Do not edit: the provisioning scripts source this file; a unit test checks it is current."]
    lines += [f"{k}='{v}'" for k, v in env().items()]
    return "\n".join(lines) + "\n"


def render_template(text: str) -> str:
    """Replace every ``@NAME@`` with the contract's value (the same rule as the install scripts' ``render``)."""
    for key, value in env().items():
        text = text.replace(f"@{key}@", value)
    return text


def table() -> str:
    """The contract as one Markdown table (README.md "Instance contract"; a test keeps them equal)."""
    rows = [
        ("service user / group", f"`{SERVICE_USER}` / `{SERVICE_GROUP}`", "install-base.sh",
         "every unit's User=/Group="),
        ("agent (venv, binary)", f"`{AGENT_PREFIX}`, `{AGENT_BIN}`", "install-agent.sh", "units' ExecStart="),
        ("agent config", f"`{CONFIG_PATH}`", "user data (components/user_data.py)",
         f"{AGENT_PATH_UNIT}, {AGENT_UNIT}, agent"),
        ("release record", f"`{RELEASE_FILE}`", "install-agent.sh", "humans, self-report"),
        ("boot scripts", f"`{LIBEXEC_DIR}`", "install-agent.sh", f"{MODEL_CACHE_UNIT}, {BOOT_TIMING_UNIT}"),
        ("model cache (entries `<id>@<version>`)", f"`{MODEL_CACHE_DIR}` (NVMe mount, or a bind mount of "
         f"`{DLAMI_MODEL_CACHE_DIR}` when the DLAMI mounted the instance store at `{DLAMI_NVME_DIR}`); warm pool: "
         f"`{EBS_MODEL_CACHE_DIR}`", "setup-model-cache.sh", "agent (`model_cache.cache_dir`)"),
        ("backend model links (never evicted)", f"`{BACKEND_MODELS_DIR}/<type>`; checkpoints: `{CHECKPOINTS_DIR}`",
         "install-base.sh; agent links", "ComfyUI extra-model-paths, A1111 `--ckpt-dir`, agent `backend_model_dir`"),
        ("ComfyUI", f"`{COMFYUI.install_dir}`, state `{COMFYUI.state_dir}`, `{COMFYUI.url}`, "
         f"`{COMFYUI_EXTRA_MODEL_PATHS}`", "install-comfyui.sh", f"{COMFYUI.unit}, agent `backend_url`"),
        ("ComfyUI node catalog", f"`{COMFYUI_NODE_CATALOG}`", "install-comfyui-nodes.sh (AMI build)",
         "genai-ami (published beside the AMI id), agent (workflow loader files)"),
        ("ComfyUI job files", f"output `{COMFYUI.output_dir}`, input `{COMFYUI.input_dir}`, temp `{COMFYUI.temp_dir}`",
         f"install-comfyui.sh; {COMFYUI.unit} (`--output-directory` ...)",
         "agent `backend_output_dir` / `backend_input_dir` / `backend_temp_dir` (per-attempt clean-up, sweep)"),
        ("A1111 (install_a1111)", f"`{A1111.install_dir}`, state `{A1111.state_dir}`, `{A1111.url}`",
         "install-a1111.sh", f"{A1111.unit}, agent `backend_url`"),
        ("agent log", f"`{AGENT_LOG}`", f"{AGENT_UNIT}, {UNHEALTHY_UNIT} (StandardOutput=append:)",
         "CloudWatch agent (components/monitoring.py)"),
        ("backend log", f"`{BACKEND_LOG}`", f"{COMFYUI.unit}, {A1111.unit} (StandardOutput=append:)",
         "CloudWatch agent"),
        ("heartbeat", f"`{HEARTBEAT_FILE}`, systemd watchdog {WATCHDOG_SECONDS} s", "agent (runtime/worker/health.py)",
         f"systemd; {UNHEALTHY_UNIT} on failure"),
        ("backend restart (hung backend)", f"request `{BACKEND_RESTART_REQUEST}`", "agent "
         "(`backend_restart_command`)", f"{BACKEND_RESTART_PATH_UNIT} -> {BACKEND_RESTART_UNIT} (root): "
         f"try-restart {', '.join(b.unit for b in HTTP_BACKENDS.values())}"),
        ("agent's writable paths", ", ".join(f"`{p}`" for p in AGENT_WRITABLE), f"{AGENT_UNIT} ReadWritePaths=",
         "ProtectSystem=full keeps the rest read-only"),
    ]
    lines = ["| What | Where | Written by | Read by |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render or check packer/files/instance-contract.env")
    parser.add_argument("--write", action="store_true", help="write the file (else: check it is current)")
    parser.add_argument("--table", action="store_true", help="print the contract as a Markdown table")
    args = parser.parse_args(argv)
    if args.table:
        print(table(), end="")
        return 0
    if args.write:
        ENV_FILE.write_text(render_env())
        return 0
    if not ENV_FILE.exists() or ENV_FILE.read_text() != render_env():
        print(f"{ENV_FILE} is stale: run python -m runtime.instance_contract --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
