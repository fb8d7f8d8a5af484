#!/usr/bin/env bash
# Custom ComfyUI node packs, each at its pinned commit, then the image's node catalog.
#
# 1. Every declared pack (COMFYUI_CUSTOM_NODES: JSON list of {name, repository, commit}, from packer's
#    comfyui_custom_nodes) is cloned into ComfyUI's custom_nodes/<name> and checked out at its full commit
#    (a tag or branch could move); its .git is removed.
# 2. Its requirements.txt is installed into ComfyUI's venv with ComfyUI's own torch / torchvision / torchaudio /
#    numpy (as installed now) as pip constraints, so a pack that wants another version fails the build here
#    instead of silently replacing the CUDA build of torch.
# 3. ComfyUI is started once (runtime/node_catalog_record.py, the agent's venv) with a probe file in every model
#    folder; /object_info becomes the node catalog at COMFYUI_NODE_CATALOG (the contract's path), which the
#    driver publishes beside the AMI id (docs/amis.md "Node catalog"). A pack that fails to import (ComfyUI logs
#    it and leaves its nodes out of /object_info) stops the build naming the pack and the error.
#
# Environment: COMFYUI_CUSTOM_NODES ([] installs none, the catalog is still recorded), FILES_DIR (Packer), and
# CATALOG_COPY (a second copy for Packer's file download to fetch) [none], and
# for tests: DESTDIR (a staging root) [none], CATALOG_PYTHON (interpreter with the runtime package)
# [the agent's venv], COMFYUI_PYTHON (ComfyUI's interpreter) [its venv].
set -Eeuo pipefail
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 GIT_TERMINAL_PROMPT=0

readonly FILES_DIR="${FILES_DIR:-/tmp/genai-fleet/files}"
readonly COMFYUI_CUSTOM_NODES="${COMFYUI_CUSTOM_NODES:-[]}"
readonly DESTDIR="${DESTDIR:-}"
# shellcheck source=/dev/null
source "${FILES_DIR}/instance-contract.sh"
readonly DIR="${DESTDIR}${COMFYUI_DIR}"
readonly NODES_DIR="${DIR}/custom_nodes"
readonly COMFY_PY="${COMFYUI_PYTHON:-${DIR}/venv/bin/python}"
readonly CATALOG_PY="${CATALOG_PYTHON:-${DESTDIR}${AGENT_PREFIX}/bin/python}"
readonly CATALOG_OUT="${DESTDIR}${COMFYUI_NODE_CATALOG}"
readonly CATALOG_COPY="${CATALOG_COPY:-}"

log() {
  printf '%s install-comfyui-nodes: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

fail() {
  log "$*"
  exit 1
}

# The declared packs as "name<TAB>repository<TAB>commit" lines (the variable's validation already checked them;
# checked again here because the script can be run on its own).
packs() {
  "${CATALOG_PY}" -c '
import json, re, sys
packs = json.loads(sys.argv[1])
for p in packs:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", p["name"]) or not re.fullmatch(r"[0-9a-f]{40}", p["commit"]):
        sys.exit(f"install-comfyui-nodes: pack {p!r}: name must be a folder name, commit 40 hex digits")
    print(p["name"], p["repository"], p["commit"], sep="\t")
' "${COMFYUI_CUSTOM_NODES}"
}

install_pack() {
  local name="$1" repository="$2" commit="$3" constraints="$4"
  local target="${NODES_DIR}/${name}"
  log "pack ${name}: ${repository} at ${commit}"
  rm -rf "${target}"
  git clone --quiet --no-checkout "${repository}" "${target}" || fail "pack ${name}: cannot clone ${repository}"
  git -C "${target}" -c advice.detachedHead=false checkout --quiet "${commit}" \
    || fail "pack ${name}: commit ${commit} is not in ${repository}"
  [[ "$(git -C "${target}" rev-parse HEAD)" == "${commit}" ]] || fail "pack ${name}: HEAD is not ${commit}"
  rm -rf "${target}/.git"
  if [[ -f "${target}/requirements.txt" ]]; then
    "${COMFY_PY}" -m pip install --quiet -r "${target}/requirements.txt" -c "${constraints}" \
      || fail "pack ${name}: its requirements.txt cannot be installed with ComfyUI's pins ($(tr '\n' ' ' <"${constraints}"))"
  fi
}

main() {
  mkdir -p "${NODES_DIR}"
  local constraints
  constraints="$(mktemp)"
  # ComfyUI's own pins: what its venv holds now (torch from install-comfyui.sh, numpy from its requirements).
  "${COMFY_PY}" -m pip freeze --all | grep -iE '^(torch|torchvision|torchaudio|numpy)==' >"${constraints}" || true
  local name repository commit listed
  listed="$(packs)"
  while IFS=$'\t' read -r name repository commit; do
    [[ -n "${name}" ]] || continue
    install_pack "${name}" "${repository}" "${commit}" "${constraints}"
  done <<<"${listed}"
  rm -f "${constraints}"
  chown -R root:root "${NODES_DIR}" 2>/dev/null || true
  "${CATALOG_PY}" -m runtime.node_catalog_record --comfyui-dir "${DIR}" --python "${COMFY_PY}" \
    --packs "${COMFYUI_CUSTOM_NODES}" --out "${CATALOG_OUT}" || fail "recording the node catalog failed (above)"
  chmod 0644 "${CATALOG_OUT}"
  if [[ -n "${CATALOG_COPY}" ]]; then
    install -m 0644 "${CATALOG_OUT}" "${CATALOG_COPY}"
  fi
  log "node catalog written to ${CATALOG_OUT}"
}

main "$@"
