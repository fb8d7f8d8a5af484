#!/usr/bin/env bash
# Static checks behind `make static-check` (and so `make test`): ruff, the config docs, the Packer
# templates (fmt, syntax validation) and shellcheck over every shell script in the repository.
# Packer and shellcheck come from tools/install_system_deps.sh; a missing one is reported and skipped
# here (tests/unit/test_packer.py fails on it, so CI cannot pass without them).
set -Eeuo pipefail

readonly PY="${PY:-.venv/bin/python}"
readonly PLUGINS_FILE="plugins.pkr.hcl"

log() {
  printf '%s static-check: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

check_python() {
  "${PY}" -m ruff check .
  "${PY}" tools/config_docs.py --check
}

# Packer 1.6.6 (Debian's) has no -recursive and does not know required_plugins (1.7+): each template
# directory is formatted on its own, and the syntax check leaves the plugins file out on old versions.
check_packer() {
  if ! command -v packer >/dev/null 2>&1; then
    log "packer not installed: skipping packer fmt and validate (tools/install_system_deps.sh installs it)"
    return 0
  fi
  local dir
  while IFS= read -r dir; do
    packer fmt -check -diff "${dir}"
  done < <(find packer -name '*.hcl' -printf '%h\n' | sort -u)

  local target="packer" tmp=""
  if packer version | grep -Eq 'v1\.[0-6]\.'; then
    tmp="$(mktemp -d)"
    find packer -maxdepth 1 -name '*.hcl' ! -name "${PLUGINS_FILE}" -exec cp {} "${tmp}/" \;
    target="${tmp}"
  fi
  local status=0
  packer validate -syntax-only "${target}" || status=$?
  [[ -z "${tmp}" ]] || rm -rf "${tmp}"
  return "${status}"
}

check_shell() {
  if ! command -v shellcheck >/dev/null 2>&1; then
    log "shellcheck not installed: skipping (tools/install_system_deps.sh installs it)"
    return 0
  fi
  local scripts=()
  mapfile -t scripts < <(find packer tools .ci -type f \( -name '*.sh' -o -path '.ci/run' \) | sort)
  ((${#scripts[@]} > 0)) || { log "no shell scripts found"; return 1; }
  log "shellcheck on ${#scripts[@]} scripts"
  shellcheck --external-sources "${scripts[@]}"
}

main() {
  cd "$(dirname "$0")/.."
  check_python
  check_packer
  check_shell
  log "ok"
}

main "$@"
