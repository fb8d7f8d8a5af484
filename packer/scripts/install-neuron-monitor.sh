#!/usr/bin/env bash
# neuron-monitor (from the DLAMI's aws-neuronx-tools) as a service that publishes NeuronCore
# utilisation to CloudWatch: the Neuron flavour's scaling signal.
set -Eeuo pipefail

readonly FILES_DIR="${FILES_DIR:-/tmp/genai-fleet/files}"
readonly BOOT_SCRIPTS_DIR="${BOOT_SCRIPTS_DIR:-/tmp/genai-fleet/boot}"

for tool in neuron-monitor neuron-monitor-cloudwatch.py; do
  [[ -x "/opt/aws/neuron/bin/${tool}" ]] || { echo "install-neuron-monitor: /opt/aws/neuron/bin/${tool} is missing" >&2; exit 1; }
done
install -m 0644 "${FILES_DIR}/neuron-monitor.json" /etc/genai-fleet/neuron-monitor.json
install -D -m 0755 "${BOOT_SCRIPTS_DIR}/run-neuron-monitor.sh" /usr/local/libexec/genai-fleet/run-neuron-monitor.sh
install -m 0644 "${FILES_DIR}/neuron-monitor.service" /etc/systemd/system/neuron-monitor.service
systemctl daemon-reload
systemctl enable neuron-monitor.service
