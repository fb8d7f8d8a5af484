# Shell side of the instance contract (runtime/instance_contract.py), sourced by the provisioning
# scripts: loads instance-contract.env (generated from the contract) and renders templates whose
# @NAME@ placeholders name contract variables. Not executable on its own.
# shellcheck shell=bash

contract_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly CONTRACT_ENV="${contract_dir}/instance-contract.env"
[[ -f "${CONTRACT_ENV}" ]] || { echo "instance-contract: ${CONTRACT_ENV} is missing" >&2; exit 1; }
# shellcheck source=/dev/null
source "${CONTRACT_ENV}"

# render_template SRC DEST [MODE]: writes SRC with every @NAME@ replaced by the contract's NAME;
# fails when a placeholder is left (a name the contract does not define).
render_template() {
  local src="$1" dest="$2" mode="${3:-0644}"
  local args=() key
  while IFS='=' read -r key _; do
    [[ "${key}" =~ ^[A-Z][A-Z0-9_]*$ ]] || continue
    args+=(-e "s|@${key}@|${!key}|g")
  done <"${CONTRACT_ENV}"
  sed "${args[@]}" "${src}" >"${dest}"
  chmod "${mode}" "${dest}"
  if grep -q '@[A-Z][A-Z0-9_]*@' "${dest}"; then
    echo "instance-contract: unrendered placeholder left in ${dest}: $(grep -o '@[A-Z][A-Z0-9_]*@' "${dest}" | sort -u | tr '\n' ' ')" >&2
    return 1
  fi
}
