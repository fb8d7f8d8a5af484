#!/usr/bin/env bash
# Installs the system tools the checks use (packer for `packer fmt`, shellcheck; debootstrap and
# systemd-nspawn for the first-boot rehearsal, tests/rehearsal/) from Debian's packages when they
# are missing. Needs root (CI and these machines run as root); otherwise it
# says what to install and carries on, and the checks that need the tools report them missing.
set -Eeuo pipefail

# package:command it provides
readonly PACKAGES=(packer:packer shellcheck:shellcheck debootstrap:debootstrap systemd-container:systemd-nspawn)

main() {
  local missing=()
  local entry
  for entry in "${PACKAGES[@]}"; do
    command -v "${entry#*:}" >/dev/null 2>&1 || missing+=("${entry%%:*}")
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  if [[ "$(id -u)" -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps: please install ${missing[*]} (apt-get install ${missing[*]})" >&2
    return 0
  fi
  echo "install_system_deps: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

main "$@"
