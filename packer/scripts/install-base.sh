#!/usr/bin/env bash
# OS packages every flavour needs, the agent's Python, the service user and its directories.
set -Eeuo pipefail
export DEBIAN_FRONTEND=noninteractive

readonly AGENT_PYTHON="${AGENT_PYTHON:-python3.11}"
readonly FILES_DIR="${FILES_DIR:-/tmp/genai-fleet/files}"
# Paths, user and folders: the instance contract (runtime/instance_contract.py).
# shellcheck source=/dev/null
source "${FILES_DIR}/instance-contract.sh"

# The DLAMIs run unattended-upgrades at first boot; wait for apt's lock instead of racing it.
echo "install-base: waiting for cloud-init and apt locks" >&2
cloud-init status --wait >/dev/null 2>&1 || true
systemctl stop unattended-upgrades.service apt-daily.service apt-daily-upgrade.service 2>/dev/null || true
apt_get() {
  apt-get -o DPkg::Lock::Timeout=600 -y -q "$@"
}

# Security updates from the Ubuntu archive; the kernel and the NVIDIA / Neuron packages stay as the
# DLAMI ships them (held, so that a kernel / kernel-module mismatch cannot be baked in).
dpkg-query -W -f='${Package}\n' \
  | { grep -E '^(linux-(image|headers|modules|aws)|nvidia-|libnvidia-|cuda-|aws-neuronx-)' || true; } \
  | xargs -r apt-mark hold >/dev/null
apt_get update
apt_get upgrade
# Model cache (mdadm, xfsprogs, nvme-cli), backends (git), the agent's Python, signature checks (gnupg).
apt_get install --no-install-recommends \
  ca-certificates curl git gnupg jq mdadm nvme-cli xfsprogs \
  "${AGENT_PYTHON}" "${AGENT_PYTHON}-venv" "${AGENT_PYTHON}-dev"

# The agent and the local backends run as an unprivileged system user.
if ! id "${SERVICE_USER}" >/dev/null 2>&1; then
  useradd --system --user-group --create-home --home-dir "${STATE_DIR}" --shell /usr/sbin/nologin "${SERVICE_USER}"
fi
# Video/render groups give the user access to the GPU device nodes on the CUDA flavour.
for group in video render; do
  if getent group "${group}" >/dev/null; then
    usermod -aG "${group}" "${SERVICE_USER}"
  fi
done
# Writable by the service user (the agent unit's ReadWritePaths): state, model cache, backend model
# links (one folder per ComfyUI model type), logs. The config folder stays root-owned.
install -d -m 0755 -o "${SERVICE_USER}" -g "${SERVICE_GROUP}" "${STATE_DIR}" "${CACHE_ROOT}" "${MODEL_CACHE_DIR}" \
  "${BACKEND_MODELS_DIR}" "${LOG_DIR}"
for folder in ${COMFYUI_MODEL_FOLDERS}; do
  install -d -m 0755 -o "${SERVICE_USER}" -g "${SERVICE_GROUP}" "${BACKEND_MODELS_DIR}/${folder}"
done
install -d -m 0755 "${CONFIG_DIR}"
