#!/usr/bin/env bash
# Boot script (neuron-monitor.service): runs neuron-monitor with the genai-fleet config and pipes
# its JSON into the Neuron tools' CloudWatch publisher, in the instance's region (from IMDSv2).
set -Eeuo pipefail

readonly NEURON_BIN="/opt/aws/neuron/bin"
readonly CONFIG="/etc/genai-fleet/neuron-monitor.json"
readonly NAMESPACE="${NEURON_MONITOR_NAMESPACE:-GenAIFleet/Neuron}"
readonly IMDS="http://169.254.169.254"

log() {
  printf '%s run-neuron-monitor: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

imds_region() {
  local token
  token="$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "${IMDS}/latest/api/token")"
  curl -fsS -H "X-aws-ec2-metadata-token: ${token}" "${IMDS}/latest/meta-data/placement/region"
}

main() {
  local region
  region="$(imds_region)"
  log "publishing neuron-monitor metrics to CloudWatch namespace ${NAMESPACE} in ${region}"
  "${NEURON_BIN}/neuron-monitor" --config-file "${CONFIG}" \
    | "${NEURON_BIN}/neuron-monitor-cloudwatch.py" --namespace "${NAMESPACE}" --region "${region}"
}

main "$@"
