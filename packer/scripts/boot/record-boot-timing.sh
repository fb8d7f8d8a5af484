#!/usr/bin/env bash
# Boot script (genai-fleet-boot-timing.service): waits for boot to finish, then writes the
# boot-phase timings to a JSON file that the worker agent reports with its metrics: firmware,
# loader, kernel, initrd and userspace durations from systemd, and the time (seconds since the
# kernel started) at which each genai-fleet-relevant unit became active.
set -Eeuo pipefail

readonly OUTPUT="${BOOT_TIMING_FILE:-/var/lib/genai-fleet/boot-timing.json}"
readonly WAIT_SECONDS="${BOOT_TIMING_WAIT_SECONDS:-25}"
readonly UNITS=(
  cloud-init-local.service cloud-init.service cloud-config.service cloud-final.service
  network-online.target genai-fleet-model-cache.service comfyui.service a1111.service
  neuron-monitor.service genai-worker.service multi-user.target
)

log() {
  printf '%s record-boot-timing: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$*" >&2
}

# Waits (bounded) until systemd reports the boot finished; Type=exec keeps this off the boot path.
wait_for_boot() {
  local state deadline=$((SECONDS + WAIT_SECONDS))
  while ((SECONDS < deadline)); do
    state="$(systemctl is-system-running 2>/dev/null || true)"
    case "${state}" in
      running | degraded) return 0 ;;
    esac
    sleep 1
  done
  log "boot not finished after ${WAIT_SECONDS}s (state ${state:-unknown}); recording what is known"
}

# Prints `"name": seconds` for a unit's activation, or null when it did not (yet) become active.
unit_entry() {
  local unit="$1" usec
  usec="$(systemctl show --property=ActiveEnterTimestampMonotonic --value "${unit}" 2>/dev/null || true)"
  if [[ "${usec}" =~ ^[0-9]+$ ]] && ((usec > 0)); then
    printf '"%s": %d.%06d' "${unit}" $((usec / 1000000)) $((usec % 1000000))
  else
    printf '"%s": null' "${unit}"
  fi
}

# Prints `"name": seconds` for a systemd manager timestamp (microseconds, monotonic).
manager_entry() {
  local name="$1" property="$2" usec
  usec="$(systemctl show --property="${property}" --value 2>/dev/null || true)"
  [[ "${usec}" =~ ^[0-9]+$ ]] || usec=0
  printf '"%s": %d.%06d' "${name}" $((usec / 1000000)) $((usec % 1000000))
}

main() {
  wait_for_boot
  local analyze unit first=1
  analyze="$(systemd-analyze time 2>/dev/null | head -n 1 || true)"
  analyze="${analyze//\"/\'}"
  mkdir -p "$(dirname "${OUTPUT}")"
  {
    printf '{\n  "recorded_at": "%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf '  "systemd_analyze": "%s",\n' "${analyze}"
    printf '  "manager": {%s, %s, %s},\n' \
      "$(manager_entry userspace_started_s UserspaceTimestampMonotonic)" \
      "$(manager_entry initrd_started_s InitRDTimestampMonotonic)" \
      "$(manager_entry boot_finished_s FinishTimestampMonotonic)"
    printf '  "units_active_s": {'
    for unit in "${UNITS[@]}"; do
      ((first)) || printf ', '
      first=0
      unit_entry "${unit}"
    done
    printf '}\n}\n'
  } >"${OUTPUT}.tmp"
  mv "${OUTPUT}.tmp" "${OUTPUT}"
  log "wrote ${OUTPUT}: ${analyze:-systemd-analyze unavailable}"
}

main "$@"
