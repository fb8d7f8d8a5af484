#!/usr/bin/env bash
# The source DLAMI's NVIDIA driver and CUDA toolkit must work on the build instance's GPU before
# anything is baked on top of them.
set -Eeuo pipefail

echo "verify-cuda: NVIDIA driver" >&2
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

echo "verify-cuda: CUDA toolkit" >&2
nvcc_bin="$(command -v nvcc || true)"
[[ -n "${nvcc_bin}" ]] || nvcc_bin="/usr/local/cuda/bin/nvcc"
if [[ ! -x "${nvcc_bin}" ]]; then
  echo "verify-cuda: nvcc not found on PATH or at /usr/local/cuda/bin/nvcc" >&2
  exit 1
fi
"${nvcc_bin}" --version | tail -n 2
