#!/usr/bin/env bash
# Optional AUTOMATIC1111 WebUI (INSTALL_A1111=true) at a pinned release tag, API only
# (--api --nowebui) on 127.0.0.1:7860, in its own venv.
#
# Environment: INSTALL_A1111, A1111_VERSION, AGENT_PYTHON, TORCH_VERSION, TORCH_INDEX_URL, FILES_DIR, and the
# repositories launch.py clones, under launch.py's own names (release.auto.pkrvars.hcl pins them):
# STABLE_DIFFUSION_REPO / STABLE_DIFFUSION_COMMIT_HASH, STABLE_DIFFUSION_XL_REPO / STABLE_DIFFUSION_XL_COMMIT_HASH.
# For machines without a GPU or the internet (tests/unit/test_a1111_install.py):
#   A1111_SOURCE  a local directory to install instead of cloning the release tag [clone]
#   SKIP_TORCH    1: install no PyTorch [0]
#   SKIP_SYSTEMD  1: do not call systemctl [0]
#   DESTDIR       staging root for /opt, /var and /etc [empty: the real root]
set -Eeuo pipefail
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A repository that is gone (or private) makes git ask for credentials; without a terminal that prompt
# waits forever and the build hangs. Fail at once instead, here and in every clone launch.py makes.
export GIT_TERMINAL_PROMPT=0

readonly INSTALL_A1111="${INSTALL_A1111:-false}"
readonly A1111_VERSION="${A1111_VERSION:?A1111_VERSION is required (a release tag)}"
readonly AGENT_PYTHON="${AGENT_PYTHON:-python3.11}"
readonly TORCH_VERSION="${TORCH_VERSION:?TORCH_VERSION is required}"
readonly TORCH_INDEX_URL="${TORCH_INDEX_URL:?TORCH_INDEX_URL is required}"
readonly FILES_DIR="${FILES_DIR:-/tmp/genai-fleet/files}"
readonly A1111_SOURCE="${A1111_SOURCE:-}"
readonly SKIP_TORCH="${SKIP_TORCH:-0}"
readonly SKIP_SYSTEMD="${SKIP_SYSTEMD:-0}"
readonly DESTDIR="${DESTDIR:-}"
# launch.py's variables for what it clones; each must be pinned (its defaults name a repository that is gone).
readonly PINNED_REPOS=(STABLE_DIFFUSION_REPO STABLE_DIFFUSION_COMMIT_HASH STABLE_DIFFUSION_XL_REPO
  STABLE_DIFFUSION_XL_COMMIT_HASH)
# shellcheck source=/dev/null
source "${FILES_DIR}/instance-contract.sh"
readonly DIR="${DESTDIR}${A1111_DIR}"

if [[ "${INSTALL_A1111}" != "true" ]]; then
  echo "install-a1111: install_a1111 is false, skipping" >&2
  exit 0
fi
for name in "${PINNED_REPOS[@]}"; do
  if [[ -z "${!name:-}" ]]; then
    echo "install-a1111: ${name} is not set: pin it in packer/release.auto.pkrvars.hcl (a1111_stable_diffusion_*)" >&2
    exit 1
  fi
  export "${name?}"
done

rm -rf "${DIR}"
mkdir -p "$(dirname "${DIR}")"
if [[ -n "${A1111_SOURCE}" ]]; then
  echo "install-a1111: installing ${A1111_SOURCE} instead of A1111 ${A1111_VERSION}" >&2
  cp -a "${A1111_SOURCE}" "${DIR}"
else
  git clone --quiet --depth 1 --branch "${A1111_VERSION}" https://github.com/AUTOMATIC1111/stable-diffusion-webui.git "${DIR}"
  [[ "$(git -C "${DIR}" describe --tags --exact-match)" == "${A1111_VERSION}" ]]
fi

# The pins only work if this release's launch.py still reads them: an A1111 that renamed a variable
# would clone its own default again, silently.
for name in "${PINNED_REPOS[@]}"; do
  if ! grep -Eq "os\.environ\.get\(['\"]${name}['\"]" "${DIR}/modules/launch_utils.py"; then
    echo "install-a1111: A1111 ${A1111_VERSION}'s modules/launch_utils.py does not read ${name}: check the pins" >&2
    exit 1
  fi
done

# torch is installed first (launch.py then skips it); launch.py installs the WebUI's pinned requirements and
# clones its repositories into the venv and repositories/ once, here, at build time; the service then starts
# with --skip-prepare-environment and never downloads at boot.
"${AGENT_PYTHON}" -m venv "${DIR}/venv"
if [[ "${SKIP_TORCH}" != "1" ]]; then
  "${DIR}/venv/bin/pip" install --quiet "torch==${TORCH_VERSION}" torchvision --index-url "${TORCH_INDEX_URL}"
fi
(cd "${DIR}" && "${DIR}/venv/bin/python" launch.py --exit --skip-torch-cuda-test)

install -d -m 0755 "${DESTDIR}${A1111_STATE_DIR}" "${DESTDIR}${A1111_MODEL_DIR}" "${DESTDIR}/etc/systemd/system"
if [[ "$(id -u)" -eq 0 ]] && id "${SERVICE_USER}" >/dev/null 2>&1; then
  chown "${SERVICE_USER}:${SERVICE_GROUP}" "${DESTDIR}${A1111_STATE_DIR}" "${DESTDIR}${A1111_MODEL_DIR}"
  chown -R "${SERVICE_USER}:${SERVICE_GROUP}" "${DIR}/repositories" "${DIR}/extensions" 2>/dev/null || true
fi
render_template "${FILES_DIR}/a1111.service" "${DESTDIR}/etc/systemd/system/${A1111_UNIT}"
if [[ "${SKIP_SYSTEMD}" != "1" ]]; then
  systemctl daemon-reload
  systemctl enable "${A1111_UNIT}"
fi
