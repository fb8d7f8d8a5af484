#!/usr/bin/env bash
# Last build step: leave nothing instance-specific or secret in the image. Every launched instance
# then gets fresh host keys, a fresh machine-id and a first-boot cloud-init run (user data).
set -Eeuo pipefail

# 1. Nothing secret may be baked: the agent config comes from user data at launch, credentials
#    from the instance profile. Fail the build instead of shipping one.
for secret in /etc/genai-fleet/agent.json /root/.aws /home/ubuntu/.aws /var/lib/genai-fleet/.aws; do
  if [[ -e "${secret}" ]]; then
    echo "cleanup: ${secret} must not be baked into the AMI" >&2
    exit 1
  fi
done
if grep -rIlE '(AKIA|ASIA)[0-9A-Z]{16}' /etc/genai-fleet /opt/genai-fleet/bin 2>/dev/null; then
  echo "cleanup: an AWS access key id was found in the files above" >&2
  exit 1
fi

# 2. Build leftovers: staged files, package caches, pip caches.
rm -rf /tmp/genai-fleet
apt-get -y -q autoremove --purge
apt-get -y -q clean
rm -rf /var/lib/apt/lists/* /root/.cache /var/lib/genai-fleet/.cache /home/ubuntu/.cache

# 3. Identity of the build instance: SSH host keys (regenerated at boot), machine-id, the
#    packer key in authorized_keys, cloud-init state (so user data runs on every new instance).
rm -f /etc/ssh/ssh_host_*
rm -f /root/.ssh/authorized_keys /home/ubuntu/.ssh/authorized_keys
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id
cloud-init clean --logs --seed

# 4. Logs and shell history of the build.
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' \) -delete
find /var/log -type f -exec truncate -s 0 {} +
journalctl --rotate >/dev/null 2>&1 || true
journalctl --vacuum-time=1s >/dev/null 2>&1 || true
rm -f /root/.bash_history /home/ubuntu/.bash_history /root/.python_history /root/.lesshst
unset HISTFILE
sync
