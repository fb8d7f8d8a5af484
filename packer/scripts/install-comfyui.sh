#!/usr/bin/env bash
# ComfyUI at a pinned release tag in its own venv (its PyTorch never touches the agent's venv),
# as a systemd service bound to loopback. Models come only through the extra-model-paths file, which
# names the contract's backend model folder (links the agent makes into the model cache).
#
# Environment: COMFYUI_VERSION, AGENT_PYTHON, TORCH_VERSION, TORCH_INDEX_URL, FILES_DIR (Packer), and
# for machines without a GPU or the internet (the first-boot rehearsal, tests/rehearsal/):
#   COMFYUI_SOURCE  a local directory to install instead of cloning the release tag [clone]
#   SKIP_TORCH      1: install no PyTorch and skip the CUDA check [0]
#   SKIP_SYSTEMD    1: do not call systemctl [0]
set -Eeuo pipefail
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

readonly COMFYUI_VERSION="${COMFYUI_VERSION:?COMFYUI_VERSION is required (a release tag)}"
readonly AGENT_PYTHON="${AGENT_PYTHON:-python3.11}"
readonly TORCH_VERSION="${TORCH_VERSION:?TORCH_VERSION is required}"
readonly TORCH_INDEX_URL="${TORCH_INDEX_URL:?TORCH_INDEX_URL is required}"
readonly FILES_DIR="${FILES_DIR:-/tmp/genai-fleet/files}"
readonly COMFYUI_SOURCE="${COMFYUI_SOURCE:-}"
readonly SKIP_TORCH="${SKIP_TORCH:-0}"
readonly SKIP_SYSTEMD="${SKIP_SYSTEMD:-0}"
# shellcheck source=/dev/null
source "${FILES_DIR}/instance-contract.sh"
readonly DIR="${COMFYUI_DIR}"

# Source at the release tag only (shallow); the tag is checked, so a moved branch cannot sneak in.
rm -rf "${DIR}"
if [[ -n "${COMFYUI_SOURCE}" ]]; then
  echo "install-comfyui: installing ${COMFYUI_SOURCE} instead of ComfyUI ${COMFYUI_VERSION}" >&2
  cp -a "${COMFYUI_SOURCE}" "${DIR}"
else
  git clone --quiet --depth 1 --branch "${COMFYUI_VERSION}" https://github.com/comfyanonymous/ComfyUI.git "${DIR}"
  [[ "$(git -C "${DIR}" describe --tags --exact-match)" == "${COMFYUI_VERSION}" ]]
  rm -rf "${DIR}/.git"
fi
chown -R root:root "${DIR}"

# PyTorch for the DLAMI's CUDA first, then ComfyUI's own requirements against it.
"${AGENT_PYTHON}" -m venv "${DIR}/venv"
if [[ "${SKIP_TORCH}" != "1" ]]; then
  "${DIR}/venv/bin/pip" install --quiet "torch==${TORCH_VERSION}" torchvision torchaudio --index-url "${TORCH_INDEX_URL}"
fi
"${DIR}/venv/bin/pip" install --quiet -r "${DIR}/requirements.txt" --extra-index-url "${TORCH_INDEX_URL}"
if [[ "${SKIP_TORCH}" != "1" ]]; then
  "${DIR}/venv/bin/python" -c 'import torch; assert torch.cuda.is_available(), "CUDA is not available to PyTorch"; print("torch", torch.__version__, torch.version.cuda)'
fi

# Writable state lives under the contract's state folder; the code tree stays root-owned.
install -d -m 0755 -o "${SERVICE_USER}" -g "${SERVICE_GROUP}" "${COMFYUI_STATE_DIR}" \
  "${COMFYUI_OUTPUT_DIR}" "${COMFYUI_INPUT_DIR}" "${COMFYUI_TEMP_DIR}" "${COMFYUI_STATE_DIR}/user"
render_template "${FILES_DIR}/comfyui-extra-model-paths.yaml" "${COMFYUI_EXTRA_MODEL_PATHS}"
render_template "${FILES_DIR}/comfyui.service" "/etc/systemd/system/${COMFYUI_UNIT}"
if [[ "${SKIP_SYSTEMD}" != "1" ]]; then
  systemctl daemon-reload
  systemctl enable "${COMFYUI_UNIT}"
fi
