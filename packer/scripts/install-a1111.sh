#!/usr/bin/env bash
# Optional AUTOMATIC1111 WebUI (INSTALL_A1111=true) at a pinned release tag, API only
# (--api --nowebui) on 127.0.0.1:7860, in its own venv.
set -Eeuo pipefail
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

readonly INSTALL_A1111="${INSTALL_A1111:-false}"
readonly A1111_VERSION="${A1111_VERSION:?A1111_VERSION is required (a release tag)}"
readonly AGENT_PYTHON="${AGENT_PYTHON:-python3.11}"
readonly TORCH_VERSION="${TORCH_VERSION:?TORCH_VERSION is required}"
readonly TORCH_INDEX_URL="${TORCH_INDEX_URL:?TORCH_INDEX_URL is required}"
readonly FILES_DIR="${FILES_DIR:-/tmp/genai-fleet/files}"
# shellcheck source=/dev/null
source "${FILES_DIR}/instance-contract.sh"
readonly DIR="${A1111_DIR}"

if [[ "${INSTALL_A1111}" != "true" ]]; then
  echo "install-a1111: install_a1111 is false, skipping" >&2
  exit 0
fi

rm -rf "${DIR}"
git clone --quiet --depth 1 --branch "${A1111_VERSION}" https://github.com/AUTOMATIC1111/stable-diffusion-webui.git "${DIR}"
[[ "$(git -C "${DIR}" describe --tags --exact-match)" == "${A1111_VERSION}" ]]

# torch is installed first (launch.py then skips it); launch.py installs the WebUI's pinned requirements into the venv once, here, at build time; the
# service then starts with --skip-prepare-environment and never downloads at boot.
"${AGENT_PYTHON}" -m venv "${DIR}/venv"
"${DIR}/venv/bin/pip" install --quiet "torch==${TORCH_VERSION}" torchvision --index-url "${TORCH_INDEX_URL}"
(cd "${DIR}" && "${DIR}/venv/bin/python" launch.py --exit --skip-torch-cuda-test)

install -d -m 0755 -o "${SERVICE_USER}" -g "${SERVICE_GROUP}" "${A1111_STATE_DIR}" "${A1111_MODEL_DIR}"
chown -R "${SERVICE_USER}:${SERVICE_GROUP}" "${DIR}/repositories" "${DIR}/extensions" 2>/dev/null || true
render_template "${FILES_DIR}/a1111.service" "/etc/systemd/system/${A1111_UNIT}"
systemctl daemon-reload
systemctl enable "${A1111_UNIT}"
