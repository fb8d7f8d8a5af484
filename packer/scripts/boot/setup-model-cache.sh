#!/usr/bin/env bash
# Boot script (genai-fleet-model-cache.service): puts the model cache on the instance-store NVMe
# disks when the instance type has them, RAID0 over several, XFS, mounted at the cache directory.
# Instance store is wiped on stop/start but kept on reboot, so a disk already labelled by this
# script is mounted as it is. With no instance store the cache stays on the EBS root volume.
#
# Test hooks: SYS_BLOCK_DIR (fake /sys/block) and DRY_RUN=1 (log the commands, change nothing).
set -Eeuo pipefail

readonly MOUNT_POINT="${MODEL_CACHE_DIR:?MODEL_CACHE_DIR is required (the unit sets it from the instance contract)}"
readonly OWNER="${MODEL_CACHE_OWNER:-genai}"
readonly FS_LABEL="genai-cache"
readonly MD_DEVICE="/dev/md/genai-cache"
readonly INSTANCE_STORE_MODEL="Amazon EC2 NVMe Instance Storage"
readonly SYS_BLOCK_DIR="${SYS_BLOCK_DIR:-/sys/block}"
readonly DEV_DIR="${DEV_DIR:-/dev}"
readonly DRY_RUN="${DRY_RUN:-0}"
readonly STATE_FILE="${MODEL_CACHE_STATE_FILE:-}"  # the unit sets it from the instance contract

log() {
  printf '%s setup-model-cache: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$*" >&2
}

run() {
  log "+ $*"
  if [[ "${DRY_RUN}" != "1" ]]; then
    "$@"
  fi
}

# Prints the instance-store NVMe devices, one per line (EBS volumes are NVMe too: the model
# string tells them apart).
find_instance_store() {
  local block model name
  for block in "${SYS_BLOCK_DIR}"/nvme*n1; do
    [[ -e "${block}/device/model" ]] || continue
    model="$(tr -s ' ' <"${block}/device/model")"
    model="${model% }"
    name="$(basename "${block}")"
    if [[ "${model}" == "${INSTANCE_STORE_MODEL}" ]]; then
      printf '%s/%s\n' "${DEV_DIR}" "${name}"
    fi
  done
}

write_state() {
  local kind="$1" device="$2" count="$3"
  [[ "${DRY_RUN}" == "1" ]] && return 0
  [[ -n "${STATE_FILE}" ]] || { log "MODEL_CACHE_STATE_FILE is not set"; return 1; }
  mkdir -p "$(dirname "${STATE_FILE}")"
  printf '{"kind": "%s", "device": "%s", "instance_store_disks": %d, "mount_point": "%s"}\n' \
    "${kind}" "${device}" "${count}" "${MOUNT_POINT}" >"${STATE_FILE}"
}

# Prints the block device to format: the one disk, or a RAID0 array over several.
prepare_device() {
  local devices=("$@")
  if ((${#devices[@]} == 1)); then
    printf '%s\n' "${devices[0]}"
    return 0
  fi
  if [[ "${DRY_RUN}" != "1" && -e "${MD_DEVICE}" ]]; then
    printf '%s\n' "${MD_DEVICE}"
    return 0
  fi
  run mdadm --create "${MD_DEVICE}" --run --force --level=0 --chunk=256 \
    --raid-devices="${#devices[@]}" "${devices[@]}" >&2
  printf '%s\n' "${MD_DEVICE}"
}

main() {
  if [[ "${DRY_RUN}" != "1" ]] && mountpoint -q "${MOUNT_POINT}"; then
    log "${MOUNT_POINT} is already mounted"
    return 0
  fi
  run mkdir -p "${MOUNT_POINT}"

  local devices=()
  mapfile -t devices < <(find_instance_store)
  if ((${#devices[@]} == 0)); then
    log "no instance-store NVMe disks: the model cache stays on the root volume at ${MOUNT_POINT}"
    run chown "${OWNER}:${OWNER}" "${MOUNT_POINT}"
    write_state "ebs" "" 0
    return 0
  fi
  log "instance-store disks: ${devices[*]}"

  local device
  if [[ "${DRY_RUN}" != "1" ]] && device="$(blkid -L "${FS_LABEL}" 2>/dev/null)"; then
    log "found the cache filesystem from before the reboot on ${device}"
  else
    device="$(prepare_device "${devices[@]}")"
    run mkfs.xfs -f -q -L "${FS_LABEL}" "${device}"
  fi
  run mount -o noatime,nodiratime "${device}" "${MOUNT_POINT}"
  run chown "${OWNER}:${OWNER}" "${MOUNT_POINT}"
  write_state "instance-store" "${device}" "${#devices[@]}"
  log "model cache on ${device} (${#devices[@]} disk(s)) mounted at ${MOUNT_POINT}"
}

main "$@"
