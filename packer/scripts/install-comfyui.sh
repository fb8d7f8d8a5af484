#!/usr/bin/env bash
# ComfyUI at a pinned release tag in its own venv (its PyTorch never touches the agent's venv),
# as a systemd service bound to 127.0.0.1:8188. Models come from the genai-fleet model cache.
set -Eeuo pipefail
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

readonly COMFYUI_VERSION="${COMFYUI_VERSION:?COMFYUI_VERSION is required (a release tag)}"
readonly AGENT_PYTHON="${AGENT_PYTHON:-python3.11}"
readonly TORCH_VERSION="${TORCH_VERSION:?TORCH_VERSION is required}"
readonly TORCH_INDEX_URL="${TORCH_INDEX_URL:?TORCH_INDEX_URL is required}"
readonly FILES_DIR="${FILES_DIR:-/tmp/genai-fleet/files}"
readonly DIR="/opt/comfyui"

# Source at the release tag only (shallow); the tag is checked, so a moved branch cannot sneak in.
rm -rf "${DIR}"
git clone --quiet --depth 1 --branch "${COMFYUI_VERSION}" https://github.com/comfyanonymous/ComfyUI.git "${DIR}"
[[ "$(git -C "${DIR}" describe --tags --exact-match)" == "${COMFYUI_VERSION}" ]]
rm -rf "${DIR}/.git"

# PyTorch for the DLAMI's CUDA first, then ComfyUI's own requirements against it.
"${AGENT_PYTHON}" -m venv "${DIR}/venv"
"${DIR}/venv/bin/pip" install --quiet "torch==${TORCH_VERSION}" torchvision torchaudio --index-url "${TORCH_INDEX_URL}"
"${DIR}/venv/bin/pip" install --quiet -r "${DIR}/requirements.txt" --extra-index-url "${TORCH_INDEX_URL}"
"${DIR}/venv/bin/python" -c 'import torch; assert torch.cuda.is_available(), "CUDA is not available to PyTorch"; print("torch", torch.__version__, torch.version.cuda)'

# Writable state lives under /var/lib; the code tree stays root-owned.
install -d -m 0755 -o genai -g genai /var/lib/genai-fleet/comfyui \
  /var/lib/genai-fleet/comfyui/output /var/lib/genai-fleet/comfyui/input /var/lib/genai-fleet/comfyui/temp
install -d -m 0755 -o genai -g genai "${DIR}/user"
install -m 0644 "${FILES_DIR}/comfyui-extra-model-paths.yaml" /etc/genai-fleet/comfyui-extra-model-paths.yaml
install -m 0644 "${FILES_DIR}/comfyui.service" /etc/systemd/system/comfyui.service
systemctl daemon-reload
systemctl enable comfyui.service
