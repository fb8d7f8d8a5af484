#!/usr/bin/env bash
# Boot script (genai-fleet-model-cache.service): puts the model cache on the instance-store NVMe
# disks when the instance type has them, with no instance store the cache stays on the EBS root volume.
#
# Two ways the instance store can look when this runs (both rehearsed in tests/rehearsal/):
# - Already mounted by the AMI: the AWS Deep Learning AMIs that both flavours start from mount the instance
#   store themselves at DLAMI_NVME_DIR (/opt/dlami/nvme: their dlami-nvme.service makes one LVM volume over
#   every instance-store disk, ext4). The unit runs after that service, and this script *uses* that
#   filesystem: a folder on it (DLAMI_MODEL_CACHE_DIR) is bind-mounted at the cache directory. Formatting the
#   same disks again would pull them from under the DLAMI's mount (mkfs refuses a busy device anyway).
# - Blank disks (a base image that does not mount them): RAID0 when several, XFS, mounted at the cache
#   directory. Instance store is wiped on stop/start but kept on reboot, so a disk already labelled by this
#   script is mounted as it is.
# A disk that is in use (mounted, or held by LVM / md) while nothing is mounted at DLAMI_NVME_DIR is left
# alone: the script fails naming it rather than format it.
#
# Test hooks: SYS_BLOCK_DIR (fake /sys/block), DEV_DIR (where the disks' nodes are), MOUNTINFO (fake
# /proc/self/mountinfo) and DRY_RUN=1 (log the commands, change nothing).
set -Eeuo pipefail

readonly MOUNT_POINT="${MODEL_CACHE_DIR:?MODEL_CACHE_DIR is required (the unit sets it from the instance contract)}"
readonly OWNER="${MODEL_CACHE_OWNER:-genai}"
readonly FS_LABEL="genai-cache"
readonly MD_DEVICE="/dev/md/genai-cache"
readonly INSTANCE_STORE_MODEL="Amazon EC2 NVMe Instance Storage"
readonly SYS_BLOCK_DIR="${SYS_BLOCK_DIR:-/sys/block}"
readonly DEV_DIR="${DEV_DIR:-/dev}"
readonly MOUNTINFO="${MOUNTINFO:-/proc/self/mountinfo}"
readonly DRY_RUN="${DRY_RUN:-0}"
readonly STATE_FILE="${MODEL_CACHE_STATE_FILE:-}"  # the unit sets it from the instance contract
readonly DLAMI_NVME_DIR="${DLAMI_NVME_DIR:-}"  # the unit sets both from the instance contract
readonly DLAMI_MODEL_CACHE_DIR="${DLAMI_MODEL_CACHE_DIR:-${DLAMI_NVME_DIR}/genai-fleet-models}"

log() {
  printf '%s setup-model-cache: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$*" >&2
}

run() {
  log "+ $*"
  if [[ "${DRY_RUN}" != "1" ]]; then
    "$@"
  fi
}

# Prints the source device and type of the filesystem mounted at exactly $1 ("SOURCE FSTYPE"; the last
# mount wins, as it hides the ones below), nothing when nothing is mounted there.
mounted_at() {
  local want="$1" line fields rest found=""
  while IFS= read -r line; do
    read -r -a fields <<<"${line%% - *}"
    [[ "$(printf '%b' "${fields[4]//\\/\\0}")" == "${want}" ]] || continue
    rest="${line#* - }"
    read -r -a fields <<<"${rest}"
    found="${fields[1]} ${fields[0]}"
  done <"${MOUNTINFO}"
  [[ -n "${found}" ]] && printf '%s\n' "${found}"
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

# Prints why a disk may not be formatted (held by LVM/md, or mounted), nothing when it is free.
in_use() {
  local device="$1" name holders
  name="$(basename "${device}")"
  holders="$(ls -A "${SYS_BLOCK_DIR}/${name}/holders" 2>/dev/null || true)"
  if [[ -n "${holders}" ]]; then
    printf 'held by %s\n' "${holders//$'\n'/ }"
  elif grep -Eq "( - [^ ]+ (${device}|$(readlink -f "${device}" 2>/dev/null || echo "${device}")) )" "${MOUNTINFO}"; then
    printf 'mounted\n'
  fi
}

write_state() {
  local kind="$1" device="$2" count="$3" mounted_by="$4"
  [[ "${DRY_RUN}" == "1" ]] && return 0
  [[ -n "${STATE_FILE}" ]] || { log "MODEL_CACHE_STATE_FILE is not set"; return 1; }
  mkdir -p "$(dirname "${STATE_FILE}")"
  printf '{"kind": "%s", "device": "%s", "instance_store_disks": %d, "mount_point": "%s", "mounted_by": "%s"}\n' \
    "${kind}" "${device}" "${count}" "${MOUNT_POINT}" "${mounted_by}" >"${STATE_FILE}"
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

# The DLAMI mounted the instance store: the cache is a folder on that filesystem, bind-mounted.
use_dlami_mount() {
  local source="$1" count="$2"
  log "the AMI mounted the instance store at ${DLAMI_NVME_DIR} (${source}): the model cache uses it"
  run mkdir -p "${DLAMI_MODEL_CACHE_DIR}"
  run chown "${OWNER}:${OWNER}" "${DLAMI_MODEL_CACHE_DIR}"
  run chmod 0755 "${DLAMI_MODEL_CACHE_DIR}"
  run mount --bind "${DLAMI_MODEL_CACHE_DIR}" "${MOUNT_POINT}"
  write_state "instance-store" "${source%% *}" "${count}" "dlami"
  log "model cache on ${DLAMI_MODEL_CACHE_DIR} (${source}) bind-mounted at ${MOUNT_POINT}"
}

main() {
  if mounted_at "${MOUNT_POINT}" >/dev/null; then
    log "${MOUNT_POINT} is already mounted"
    return 0
  fi
  run mkdir -p "${MOUNT_POINT}"

  local devices=()
  mapfile -t devices < <(find_instance_store)
  local dlami=""
  if [[ -n "${DLAMI_NVME_DIR}" ]] && dlami="$(mounted_at "${DLAMI_NVME_DIR}")"; then
    use_dlami_mount "${dlami}" "${#devices[@]}"
    return 0
  fi
  if ((${#devices[@]} == 0)); then
    log "no instance-store NVMe disks: the model cache stays on the root volume at ${MOUNT_POINT}"
    run chown "${OWNER}:${OWNER}" "${MOUNT_POINT}"
    write_state "ebs" "" 0 "none"
    return 0
  fi
  log "instance-store disks: ${devices[*]}"

  local device
  if [[ "${DRY_RUN}" != "1" ]] && device="$(blkid -L "${FS_LABEL}" 2>/dev/null)"; then
    log "found the cache filesystem from before the reboot on ${device}"
  else
    local busy
    for device in "${devices[@]}"; do
      busy="$(in_use "${device}")"
      if [[ -n "${busy}" ]]; then
        log "instance-store disk ${device} is in use (${busy}) and nothing is mounted at ${DLAMI_NVME_DIR:-<unset>}:" \
          "not formatting it; the model cache stays on the root volume"
        return 1
      fi
    done
    device="$(prepare_device "${devices[@]}")"
    run mkfs.xfs -f -q -L "${FS_LABEL}" "${device}"
  fi
  run mount -o noatime,nodiratime "${device}" "${MOUNT_POINT}"
  run chown "${OWNER}:${OWNER}" "${MOUNT_POINT}"
  write_state "instance-store" "${device}" "${#devices[@]}" "genai-fleet"
  log "model cache on ${device} (${#devices[@]} disk(s)) mounted at ${MOUNT_POINT}"
}

main "$@"
