#!/usr/bin/env bash
# Installs the genai-fleet worker agent (this repository's runtime package, `genai-worker`) into a
# virtual environment at PREFIX, renders its systemd units and installs the boot scripts.
#
# Runs at AMI build time as root (packer/build.pkr.hcl). The integration test
# (tests/integration/test_agent_install.py) runs it unprivileged into a temporary directory with
# SKIP_SYSTEMD=1, so a broken install step shows up here and not on AWS.
#
# Environment ([default]):
#   AGENT_SOURCE        wheel, sdist, source tree, or a directory holding exactly one wheel (required)
#   PREFIX              virtual environment of the agent [contract AGENT_PREFIX]; PREFIX/bin/genai-worker
#   DESTDIR             staging root for /etc, /var and /usr/local/libexec files [empty: the real root]
#   PYTHON              interpreter that creates the venv [python3.11]
#   CONSTRAINTS         pip constraints file pinning the runtime's dependencies [none]
#   EXTRA_PIP_PACKAGES  space-separated extra requirements, e.g. the Neuron backend [none]
#   EXTRA_INDEX_URL     extra pip index for them [none]
#   SITE_PACKAGES_FROM  python whose site-packages the venv reuses through a .pth file, so pip finds
#                       dependencies already installed (tests; must be the same Python version) [none]
#   PIP_OFFLINE         1: never contact a package index [0]
#   FILES_DIR           systemd units to render and the instance contract [<this script's dir>/../files]
#   BOOT_SCRIPTS_DIR    boot-time scripts [<this script's dir>/boot]
#   SKIP_SYSTEMD        1: do not call systemctl (tests, chroots) [0]
#   FLAVOR, GIT_REVISION, AMI_VERSION   recorded in /etc/genai-fleet/release.json
set -Eeuo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly script_dir
readonly FILES_DIR="${FILES_DIR:-${script_dir}/../files}"
# Paths, units and the service user: the instance contract (runtime/instance_contract.py).
# shellcheck source=/dev/null
source "${FILES_DIR}/instance-contract.sh"
readonly PREFIX="${PREFIX:-${AGENT_PREFIX}}"
# Units point at this install (tests install into a temporary prefix); render_template reads these.
# shellcheck disable=SC2034
AGENT_PREFIX="${PREFIX}"
# shellcheck disable=SC2034
AGENT_BIN="${PREFIX}/bin/genai-worker"
readonly DESTDIR="${DESTDIR:-}"
readonly PYTHON="${PYTHON:-python3.11}"
readonly CONSTRAINTS="${CONSTRAINTS:-}"
readonly EXTRA_PIP_PACKAGES="${EXTRA_PIP_PACKAGES:-}"
readonly EXTRA_INDEX_URL="${EXTRA_INDEX_URL:-}"
readonly SITE_PACKAGES_FROM="${SITE_PACKAGES_FROM:-}"
readonly PIP_OFFLINE="${PIP_OFFLINE:-0}"
readonly BOOT_SCRIPTS_DIR="${BOOT_SCRIPTS_DIR:-${script_dir}/boot}"
readonly SKIP_SYSTEMD="${SKIP_SYSTEMD:-0}"
readonly FLAVOR="${FLAVOR:-unknown}"
readonly GIT_REVISION="${GIT_REVISION:-unknown}"
readonly AMI_VERSION="${AMI_VERSION:-unknown}"

readonly UNITS=("${AGENT_UNIT}" "${AGENT_PATH_UNIT}" "${UNHEALTHY_UNIT}" "${MODEL_CACHE_UNIT}" "${BOOT_TIMING_UNIT}"
  "${BACKEND_RESTART_PATH_UNIT}" "${BACKEND_RESTART_UNIT}")
readonly BOOT_SCRIPTS=(setup-model-cache.sh record-boot-timing.sh)

log() {
  printf '%s install-agent: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

die() {
  log "ERROR: $*"
  exit 1
}

# Prints the pip argument for AGENT_SOURCE: a wheel or sdist file, a source tree, or the single
# wheel inside a directory (what tools/ami_build.py uploads).
resolve_source() {
  local source="${AGENT_SOURCE:-}"
  [[ -n "${source}" ]] || die "AGENT_SOURCE is not set (a wheel, an sdist or a source tree of genai-fleet)"
  [[ -e "${source}" ]] || die "AGENT_SOURCE ${source} does not exist"
  if [[ -d "${source}" && ! -f "${source}/pyproject.toml" ]]; then
    local wheels=()
    local wheel
    for wheel in "${source}"/*.whl; do
      [[ -e "${wheel}" ]] && wheels+=("${wheel}")
    done
    ((${#wheels[@]} == 1)) || die "AGENT_SOURCE ${source} must hold exactly one wheel, found ${#wheels[@]}"
    source="${wheels[0]}"
  fi
  printf '%s\n' "${source}"
}

# Makes the venv see another interpreter's site-packages (after its own), so that pip treats the
# dependencies installed there as satisfied. Both interpreters must be the same Python version.
link_site_packages() {
  local venv_python="$1"
  local ours theirs
  ours="$("${venv_python}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  theirs="$("${SITE_PACKAGES_FROM}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [[ "${ours}" == "${theirs}" ]] || die "SITE_PACKAGES_FROM is Python ${theirs}, the venv is Python ${ours}"
  local venv_site
  venv_site="$("${venv_python}" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
  "${SITE_PACKAGES_FROM}" -c 'import sysconfig; print(sysconfig.get_path("purelib")); print(sysconfig.get_path("platlib"))' \
    | sort -u >"${venv_site}/genai-fleet-shared.pth"
  log "reusing packages of ${SITE_PACKAGES_FROM} through ${venv_site}/genai-fleet-shared.pth"
}

install_venv() {
  local source="$1"
  log "creating the agent venv at ${PREFIX} with ${PYTHON}"
  command -v "${PYTHON}" >/dev/null 2>&1 || die "${PYTHON} not found (install-base.sh installs it)"
  "${PYTHON}" -m venv "${PREFIX}"
  if [[ -n "${SITE_PACKAGES_FROM}" ]]; then
    link_site_packages "${PREFIX}/bin/python"
  fi

  local pip_args=(install --no-input --disable-pip-version-check --no-cache-dir)
  [[ "${PIP_OFFLINE}" == "1" ]] && pip_args+=(--no-index)
  [[ -n "${CONSTRAINTS}" ]] && pip_args+=(--constraint "${CONSTRAINTS}")
  [[ -n "${EXTRA_INDEX_URL}" ]] && pip_args+=(--extra-index-url "${EXTRA_INDEX_URL}")
  pip_args+=("${source}")
  local extra=()
  # Word splitting is wanted: EXTRA_PIP_PACKAGES is a space-separated list of requirements.
  read -r -a extra <<<"${EXTRA_PIP_PACKAGES}"
  pip_args+=("${extra[@]}")
  log "pip ${pip_args[*]}"
  "${PREFIX}/bin/python" -m pip "${pip_args[@]}"

  [[ -x "${PREFIX}/bin/genai-worker" ]] || die "the install did not create ${PREFIX}/bin/genai-worker"
  # The agent must run from this venv's copy, not from a source tree or a shared site-packages.
  local location venv_real
  location="$(cd / && "${PREFIX}/bin/python" -c 'import os, runtime; print(os.path.realpath(runtime.__file__))')"
  venv_real="$(cd "${PREFIX}" && pwd -P)"
  [[ "${location}" == "${venv_real}"/* ]] || die "runtime imports from ${location}, not from ${PREFIX}"
  # Every module must import on the image we bake, not only on the first instance that boots it.
  log "running genai-worker self-check"
  "${PREFIX}/bin/genai-worker" self-check >&2 || die "genai-worker self-check failed"
}

install_system_files() {
  local unit_dir="${DESTDIR}/etc/systemd/system"
  local name
  install -d -m 0755 "${unit_dir}" "${DESTDIR}${LIBEXEC_DIR}" "${DESTDIR}${CONFIG_DIR}" \
    "${DESTDIR}${STATE_DIR}" "${DESTDIR}${MODEL_CACHE_DIR}" "${DESTDIR}${BACKEND_MODELS_DIR}" "${DESTDIR}${LOG_DIR}"
  for name in "${UNITS[@]}"; do
    [[ -f "${FILES_DIR}/${name}" ]] || die "unit ${FILES_DIR}/${name} is missing"
    render_template "${FILES_DIR}/${name}" "${unit_dir}/${name}" || die "rendering ${name} failed"
  done
  install -d -m 0755 "${DESTDIR}/etc/logrotate.d"
  render_template "${FILES_DIR}/genai-fleet.logrotate" "${DESTDIR}/etc/logrotate.d/genai-fleet" \
    || die "rendering genai-fleet.logrotate failed"
  for name in "${BOOT_SCRIPTS[@]}"; do
    [[ -f "${BOOT_SCRIPTS_DIR}/${name}" ]] || die "boot script ${BOOT_SCRIPTS_DIR}/${name} is missing"
    install -m 0755 "${BOOT_SCRIPTS_DIR}/${name}" "${DESTDIR}${LIBEXEC_DIR}/${name}"
  done
  if [[ "$(id -u)" -eq 0 ]] && id "${SERVICE_USER}" >/dev/null 2>&1; then
    chown "${SERVICE_USER}:${SERVICE_GROUP}" "${DESTDIR}${STATE_DIR}" "${DESTDIR}${MODEL_CACHE_DIR}" \
      "${DESTDIR}${BACKEND_MODELS_DIR}" "${DESTDIR}${LOG_DIR}"
  fi
}

# What was baked, for the agent's self-report and for humans on the instance. No secrets here.
write_release_file() {
  local source="$1"
  local sha="directory"
  [[ -f "${source}" ]] && sha="$(sha256sum "${source}" | cut -d' ' -f1)"
  local python="${PREFIX}/bin/python"
  RELEASE_FLAVOR="${FLAVOR}" RELEASE_GIT_REVISION="${GIT_REVISION}" RELEASE_VERSION="${AMI_VERSION}" \
    RELEASE_ARTIFACT="$(basename "${source}")" RELEASE_SHA256="${sha}" RELEASE_PREFIX="${PREFIX}" \
    "${python}" - >"${DESTDIR}${RELEASE_FILE}" <<'PY'
import datetime
import json
import os
import sys

print(json.dumps({
    "flavor": os.environ["RELEASE_FLAVOR"],
    "version": os.environ["RELEASE_VERSION"],
    "git_revision": os.environ["RELEASE_GIT_REVISION"],
    "agent_artifact": os.environ["RELEASE_ARTIFACT"],
    "agent_sha256": os.environ["RELEASE_SHA256"],
    "agent_prefix": os.environ["RELEASE_PREFIX"],
    "python": "%d.%d.%d" % sys.version_info[:3],
    "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
}, indent=2, sort_keys=True))
PY
  chmod 0644 "${DESTDIR}${RELEASE_FILE}"
}

enable_units() {
  if [[ "${SKIP_SYSTEMD}" == "1" ]]; then
    log "SKIP_SYSTEMD=1: not enabling units"
    return 0
  fi
  systemctl daemon-reload
  # Enabled, not started: the build instance has no agent config, and the path unit starts the
  # agent on a launched instance once user data has written it.
  systemctl enable "${AGENT_PATH_UNIT}" "${MODEL_CACHE_UNIT}" "${BOOT_TIMING_UNIT}" "${BACKEND_RESTART_PATH_UNIT}"
}

main() {
  local source
  source="$(resolve_source)"
  log "installing ${source} (flavour ${FLAVOR}, revision ${GIT_REVISION}) into ${PREFIX}"
  install_venv "${source}"
  install_system_files
  write_release_file "${source}"
  enable_units
  log "done"
}

main "$@"
