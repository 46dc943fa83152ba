#!/usr/bin/env bash
# Turn a fresh Raspberry Pi OS Lite (Bookworm, 64-bit) into a scanstation.
#
#   sudo firmware-config/provision.sh [--profile checkout-lane|kiosk|conveyor|fleet]
#                                     [--src DIR | --pip-spec SPEC] [--volatile-journal]
#                                     [--no-start] [--dry-run]
#
# Idempotent: run it again after a `git pull` to upgrade. It never overwrites an existing
# /etc/scanstation/scanstation.toml; it replaces the scanstation block in config.txt, the udev
# rules and the unit with the versions next to it.
#
# What it does, in order: apt packages (picamera2 and libcamera come from Raspberry Pi OS, not
# pip) · the scanstation user and its groups · /opt/scanstation/venv with system site packages
# and `pip install scanstation[pi]` · /etc/scanstation/scanstation.toml from an example ·
# config.txt fragment · udev rules · hardware watchdog · the systemd unit, enabled and started.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "${SCRIPT_DIR}")"

PROFILE="kiosk"
SRC="${REPO_DIR}"
PIP_SPEC=""
VOLATILE_JOURNAL=0
START=1
DRY_RUN=0

APP_USER="scanstation"
GROUPS_NEEDED=(input video gpio dialout)
PREFIX="/opt/scanstation"
VENV="${PREFIX}/venv"
CONFIG_DIR="/etc/scanstation"
CONFIG_FILE="${CONFIG_DIR}/scanstation.toml"
STATE_DIR="/var/lib/scanstation"
UNIT_FILE="/etc/systemd/system/scanstation.service"
UDEV_RULES="/etc/udev/rules.d/99-scanstation.rules"
WATCHDOG_CONF="/etc/systemd/system.conf.d/scanstation-watchdog.conf"
JOURNAL_CONF="/etc/systemd/journald.conf.d/scanstation-volatile.conf"

APT_PACKAGES=(
  python3-venv             # the virtualenv
  python3-pip
  python3-picamera2        # CSI cameras (with python3-libcamera); built for this kernel
  python3-libcamera
  python3-lgpio            # gpiozero's pin library on Bookworm (Pi 5 included)
  python3-gpiozero
  rpicam-apps-lite         # rpicam-hello: check a camera before blaming scanstation
  mosquitto-clients        # mosquitto_sub: watch what a station publishes
  sqlite3                  # look into /var/lib/scanstation/scanstation.db
)

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
  echo "provision: $*" >&2
  exit 1
}

log() {
  echo "==> $*"
}

# Run a command, or only print it with --dry-run.
run() {
  if [[ ${DRY_RUN} -eq 1 ]]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# Write stdin to a file (mode, owner) unless it already has exactly that content.
install_text() {
  local target="$1" mode="$2" owner="$3" tmp
  tmp="$(mktemp)"
  cat >"${tmp}"
  if [[ -f "${target}" ]] && cmp -s "${tmp}" "${target}"; then
    rm -f "${tmp}"
    echo "    unchanged: ${target}"
    return 0
  fi
  if [[ ${DRY_RUN} -eq 1 ]]; then
    echo "+ write ${target} (mode ${mode}, owner ${owner}):"
    sed 's/^/    | /' "${tmp}"
    rm -f "${tmp}"
    return 0
  fi
  install -D -m "${mode}" -o "${owner%%:*}" -g "${owner##*:}" "${tmp}" "${target}"
  rm -f "${tmp}"
  echo "    wrote: ${target}"
}

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --profile)
        [[ $# -ge 2 ]] || { usage >&2; exit 2; }
        PROFILE="$2"
        shift 2
        ;;
      --src)
        [[ $# -ge 2 ]] || { usage >&2; exit 2; }
        SRC="$2"
        shift 2
        ;;
      --pip-spec)
        [[ $# -ge 2 ]] || { usage >&2; exit 2; }
        PIP_SPEC="$2"
        shift 2
        ;;
      --volatile-journal) VOLATILE_JOURNAL=1; shift ;;
      --no-start) START=0; shift ;;
      --dry-run) DRY_RUN=1; shift ;;
      -h | --help) usage; exit 0 ;;
      *)
        echo "provision: unknown option '$1'" >&2
        usage >&2
        exit 2
        ;;
    esac
  done
  case "${PROFILE}" in
    checkout-lane | kiosk | conveyor | fleet) ;;
    *)
      echo "provision: --profile '${PROFILE}': expected checkout-lane, kiosk, conveyor or fleet" >&2
      exit 2
      ;;
  esac
  EXAMPLE="${REPO_DIR}/docs/examples/${PROFILE}.toml"
  [[ -f "${EXAMPLE}" ]] || die "example config ${EXAMPLE} is missing (is this a full checkout?)"
  if [[ -z "${PIP_SPEC}" ]]; then
    [[ -f "${SRC}/pyproject.toml" ]] || die "--src ${SRC}: no pyproject.toml there"
    PIP_SPEC="${SRC}[pi]"
  fi
}

check_system() {
  if [[ ${DRY_RUN} -eq 0 && ${EUID} -ne 0 ]]; then
    die "run as root (sudo $0 ...), or with --dry-run to see the plan"
  fi
  if [[ -r /etc/os-release ]]; then
    # shellcheck source=/dev/null
    . /etc/os-release
    [[ "${VERSION_CODENAME:-}" == "bookworm" || "${VERSION_CODENAME:-}" == "trixie" ]] ||
      echo "provision: warning: tested on Raspberry Pi OS Bookworm, this is ${PRETTY_NAME:-unknown}" >&2
  fi
}

install_packages() {
  log "apt packages"
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("${pkg}")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "    all installed"
    return 0
  fi
  run apt-get update
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

create_user() {
  log "user ${APP_USER} and groups ${GROUPS_NEEDED[*]}"
  local group
  for group in "${GROUPS_NEEDED[@]}"; do
    getent group "${group}" >/dev/null || run groupadd --system "${group}"
  done
  if ! id -u "${APP_USER}" >/dev/null 2>&1; then
    run useradd --system --user-group --home-dir "${STATE_DIR}" --no-create-home \
      --shell /usr/sbin/nologin --comment "scanstation daemon" "${APP_USER}"
  fi
  run usermod --append --groups "$(IFS=,; echo "${GROUPS_NEEDED[*]}")" "${APP_USER}"
}

install_venv() {
  log "virtualenv ${VENV} (system site packages: picamera2, libcamera, lgpio from apt)"
  if [[ ! -x "${VENV}/bin/python" ]]; then
    run mkdir -p "${PREFIX}"
    run python3 -m venv --system-site-packages "${VENV}"
  fi
  run "${VENV}/bin/pip" install --disable-pip-version-check --upgrade pip
  run "${VENV}/bin/pip" install --disable-pip-version-check --upgrade "${PIP_SPEC}"
}

install_config() {
  log "configuration ${CONFIG_FILE}"
  run install -d -m 0750 -o root -g "${APP_USER}" "${CONFIG_DIR}"
  if [[ -f "${CONFIG_FILE}" ]]; then
    echo "    kept the existing ${CONFIG_FILE} (example: ${EXAMPLE})"
  else
    install_text "${CONFIG_FILE}" 0640 "root:${APP_USER}" <"${EXAMPLE}"
    echo "    edit it, then: sudo systemctl restart scanstation"
  fi
  if [[ ${DRY_RUN} -eq 0 ]]; then
    "${VENV}/bin/scanstation" run --config "${CONFIG_FILE}" --check-config ||
      die "${CONFIG_FILE} does not validate; fix it and run this again"
  fi
}

install_firmware_config() {
  log "firmware config.txt fragment"
  local boot_config
  if [[ -f /boot/firmware/config.txt ]]; then
    boot_config=/boot/firmware/config.txt
  elif [[ -f /boot/config.txt ]]; then
    boot_config=/boot/config.txt
  else
    echo "    no /boot/firmware/config.txt: not a Raspberry Pi, skipped"
    return 0
  fi
  # Replace the block between the markers (or append it), leaving the rest untouched.
  {
    sed '/^# BEGIN scanstation$/,/^# END scanstation$/d' "${boot_config}"
    echo "# BEGIN scanstation"
    cat "${SCRIPT_DIR}/config.txt"
    echo "# END scanstation"
  } | install_text "${boot_config}" 0755 root:root
}

install_udev_rules() {
  log "udev rules"
  install_text "${UDEV_RULES}" 0644 root:root <"${SCRIPT_DIR}/99-scanstation.rules"
  run udevadm control --reload
  run udevadm trigger --subsystem-match=tty --subsystem-match=hidraw \
    --subsystem-match=input --subsystem-match=video4linux
}

install_watchdogs() {
  log "hardware watchdog (systemd feeds it; a hung kernel reboots)"
  install_text "${WATCHDOG_CONF}" 0644 root:root <<'EOF'
[Manager]
RuntimeWatchdogSec=15s
RebootWatchdogSec=2min
EOF
  if [[ ${VOLATILE_JOURNAL} -eq 1 ]]; then
    log "journal in RAM (fewer SD-card writes; logs are lost at reboot)"
    install_text "${JOURNAL_CONF}" 0644 root:root <<'EOF'
[Journal]
Storage=volatile
RuntimeMaxUse=64M
EOF
    run systemctl restart systemd-journald
  fi
}

install_unit() {
  log "systemd unit ${UNIT_FILE}"
  install_text "${UNIT_FILE}" 0644 root:root <"${REPO_DIR}/systemd/scanstation.service"
  run systemctl daemon-reload
  if [[ ${START} -eq 1 ]]; then
    run systemctl enable scanstation.service
    # restart, not start: a second run must load the upgraded code.
    run systemctl restart scanstation.service
    if [[ ${DRY_RUN} -eq 0 ]]; then
      systemctl --no-pager --lines=5 status scanstation.service || true
    fi
  else
    echo "    not started (--no-start): sudo systemctl enable --now scanstation"
  fi
}

main() {
  parse_args "$@"
  check_system
  install_packages
  create_user
  install_venv
  install_config
  install_firmware_config
  install_udev_rules
  install_watchdogs
  install_unit
  log "done. The first run writes an API key to ${STATE_DIR}/initial-api-key.txt."
  log "Reboot once if config.txt changed (camera overlays, watchdog)."
}

main "$@"
