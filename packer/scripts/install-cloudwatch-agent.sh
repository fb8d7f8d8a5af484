#!/usr/bin/env bash
# Installs the Amazon CloudWatch agent package after checking its GPG signature against the pinned
# key fingerprint. Installed only: at boot the monitoring component's SSM document writes the config
# (nvidia_smi or neuron metrics) and starts the agent.
set -Eeuo pipefail

readonly VERSION="${CWAGENT_VERSION:-latest}"
readonly FINGERPRINT="${CWAGENT_KEY_FINGERPRINT:?CWAGENT_KEY_FINGERPRINT is required}"
readonly BASE="https://amazoncloudwatch-agent.s3.amazonaws.com"

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

curl -fsSL --retry 3 -o "${work}/agent.deb" "${BASE}/ubuntu/amd64/${VERSION}/amazon-cloudwatch-agent.deb"
curl -fsSL --retry 3 -o "${work}/agent.deb.sig" "${BASE}/ubuntu/amd64/${VERSION}/amazon-cloudwatch-agent.deb.sig"
curl -fsSL --retry 3 -o "${work}/agent.gpg" "${BASE}/assets/amazon-cloudwatch-agent.gpg"

# Verify with a throwaway keyring holding only the pinned key.
export GNUPGHOME="${work}/gnupg"
install -d -m 0700 "${GNUPGHOME}"
gpg --batch --quiet --import "${work}/agent.gpg"
actual="$(gpg --batch --with-colons --fingerprint | awk -F: '/^fpr:/ {print $10; exit}')"
if [[ "${actual}" != "${FINGERPRINT}" ]]; then
  echo "install-cloudwatch-agent: signing key fingerprint ${actual} is not the pinned ${FINGERPRINT}" >&2
  exit 1
fi
gpg --batch --verify "${work}/agent.deb.sig" "${work}/agent.deb"

dpkg -i -E "${work}/agent.deb"
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a status || true
