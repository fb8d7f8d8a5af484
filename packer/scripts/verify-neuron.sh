#!/usr/bin/env bash
# The source DLAMI's Neuron driver, runtime and tools must see the build instance's Neuron devices
# before anything is baked on top of them.
set -Eeuo pipefail

readonly NEURON_BIN="/opt/aws/neuron/bin"

echo "verify-neuron: Neuron kernel driver" >&2
modinfo neuron | grep -E '^(version|filename):'
lsmod | grep -q '^neuron ' || { echo "verify-neuron: the neuron kernel module is not loaded" >&2; exit 1; }

echo "verify-neuron: Neuron runtime and tools" >&2
dpkg-query -W -f='${Package} ${Version}\n' aws-neuronx-runtime-lib aws-neuronx-tools aws-neuronx-dkms
for tool in neuron-ls neuron-top neuron-monitor; do
  [[ -x "${NEURON_BIN}/${tool}" ]] || { echo "verify-neuron: ${NEURON_BIN}/${tool} is missing" >&2; exit 1; }
done

echo "verify-neuron: devices" >&2
"${NEURON_BIN}/neuron-ls"
