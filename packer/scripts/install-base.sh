#!/usr/bin/env bash
# OS packages every flavour needs, the agent's Python, the service user and its directories.
set -Eeuo pipefail
export DEBIAN_FRONTEND=noninteractive

readonly AGENT_PYTHON="${AGENT_PYTHON:-python3.11}"

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
  | grep -E '^(linux-(image|headers|modules|aws)|nvidia-|libnvidia-|cuda-|aws-neuronx-)' \
  | xargs -r apt-mark hold >/dev/null
apt_get update
apt_get upgrade
# Model cache (mdadm, xfsprogs, nvme-cli), backends (git), the agent's Python, signature checks (gnupg).
apt_get install --no-install-recommends \
  ca-certificates curl git gnupg jq mdadm nvme-cli xfsprogs \
  "${AGENT_PYTHON}" "${AGENT_PYTHON}-venv" "${AGENT_PYTHON}-dev"

# The agent and the local backends run as an unprivileged system user.
if ! id genai >/dev/null 2>&1; then
  useradd --system --create-home --home-dir /var/lib/genai-fleet --shell /usr/sbin/nologin genai
fi
# Video/render groups give the user access to the GPU device nodes on the CUDA flavour.
for group in video render; do
  getent group "${group}" >/dev/null && usermod -aG "${group}" genai
done
install -d -m 0755 -o genai -g genai /var/lib/genai-fleet /var/cache/genai-fleet /var/cache/genai-fleet/models
install -d -m 0755 /etc/genai-fleet
