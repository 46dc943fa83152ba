#!/usr/bin/env bash
# Turn a fresh Raspberry Pi OS Lite (Bookworm, 64-bit) into a scanstation.
#
#   sudo firmware-config/provision.sh [--profile checkout-lane|kiosk|conveyor|fleet]
#                                     [--src DIR | --pip-spec SPEC] [--volatile-journal]
#                                     [--no-start] [--dry-run]
#
# Idempotent: a second run changes nothing; run it again after a `git pull` to upgrade (the
# venv is reinstalled only when the source changed). It never overwrites an existing
# /etc/scanstation/scanstation.toml; it replaces the scanstation block in config.txt, the udev
# rules and the unit with the versions next to it.
#
# What it does, in order: refuses a 32-bit OS and Python < 3.11 (with what to do instead) ·
# apt packages (gcc, libc6-dev and python3-dev build evdev, which has no wheel; picamera2,
# libcamera and lgpio come from Raspberry Pi OS, not pip) · the scanstation user and its
# groups · /opt/scanstation/venv with system site packages and `pip install scanstation[pi]` ·
# /usr/local/bin/scanstation (on every login shell's PATH) · /etc/scanstation/scanstation.toml
# from an example · config.txt fragment · udev rules · hardware watchdog · the systemd unit,
# enabled and started.
#
# Where systemd is not running (an SD-card image built in a chroot with pi-gen or sdm, a
# container), the unit is enabled without being started, the udev rules are installed without
# a reload, and the script says what it skipped: the first boot starts everything.

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
LINK="/usr/local/bin/scanstation"
SOURCE_STAMP="${PREFIX}/installed-source.sha256"
UDEV_RULES="/etc/udev/rules.d/99-scanstation.rules"
WATCHDOG_CONF="/etc/systemd/system.conf.d/scanstation-watchdog.conf"
JOURNAL_CONF="/etc/systemd/journald.conf.d/scanstation-volatile.conf"

# From Debian (Raspberry Pi OS is Debian plus its own archive).
APT_PACKAGES=(
  python3-venv             # the virtualenv
  python3-pip
  gcc                      # evdev has no wheel on PyPI: pip builds it with these three
  libc6-dev
  python3-dev
  python3-gpiozero
  mosquitto-clients        # mosquitto_sub: watch what a station publishes
  sqlite3                  # look into /var/lib/scanstation/scanstation.db
)
# From Raspberry Pi OS's own archive only; elsewhere (plain Debian arm64, a PC) they are
# skipped with a note: camera modules and GPIO need them, USB cameras and scanners do not.
RPI_PACKAGES=(
  python3-picamera2        # CSI cameras (with python3-libcamera); built for this kernel
  python3-libcamera
  python3-lgpio            # gpiozero's pin library on Bookworm (Pi 5 included)
  rpicam-apps-lite         # rpicam-hello: check a camera before blaming scanstation
)

# systemd runs as PID 1 (not in a chroot, an image build or most containers).
SYSTEMD_RUNNING=0
[[ -d /run/systemd/system ]] && SYSTEMD_RUNNING=1
SKIPPED=()

usage() {
  sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed -e '/^$/d' -e 's/^# \{0,1\}//'
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
    SRC="$(cd "${SRC}" && pwd)"
  fi
}

# What the OS must be: 64-bit userland (Raspberry Pi OS 64-bit, or any arm64/amd64 Debian).
# dpkg, not uname: 32-bit Raspberry Pi OS runs a 64-bit kernel on a Pi 4 or 5.
check_architecture() {
  local arch
  arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
  case "${arch}" in
    arm64 | aarch64 | amd64 | x86_64) ;;
    armhf | armel | armv7l | armv6l | i386)
      cat >&2 <<END
provision: refusing: this is a 32-bit OS (${arch}).
  scanstation needs 64-bit Raspberry Pi OS: zxing-cpp, opencv-python-headless, numpy, pillow
  and evdev have no 32-bit ARM wheels on PyPI, and no TFLite (LiteRT) runtime exists for it.
  Flash "Raspberry Pi OS Lite (64-bit)" with Raspberry Pi Imager (a Pi Zero 2 W, 3, 4 or 5;
  the Pi 1, Zero and Zero W cannot run it) and run this script again.
  See docs/raspberry-pi.md.
END
      exit 1
      ;;
    *) echo "provision: warning: untested architecture ${arch} (tested: arm64, amd64)" >&2 ;;
  esac
}

# Python 3.11 or newer (Bookworm has 3.11.2). Checked before anything is installed when
# python3 is already there, and again once apt has installed it.
check_python() {
  command -v python3 >/dev/null 2>&1 || return 0
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    cat >&2 <<END
provision: refusing: $(python3 --version 2>&1) is too old; scanstation needs Python 3.11 or newer.
  Flash Raspberry Pi OS Lite (64-bit) "Bookworm" or newer, which ships Python 3.11, and run
  this script again. See docs/raspberry-pi.md.
END
    exit 1
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
  check_architecture
  check_python
  if [[ ${SYSTEMD_RUNNING} -eq 0 ]]; then
    echo "==> systemd is not running (a chroot, an image build or a container):" \
      "the unit is enabled but not started, udev is not reloaded"
  fi
}

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

has_candidate() {
  local candidate
  candidate="$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p')"
  [[ -n "${candidate}" && "${candidate}" != "(none)" ]]
}

install_packages() {
  log "apt packages"
  local missing=() unavailable=() pkg updated=0
  for pkg in "${APT_PACKAGES[@]}"; do
    is_installed "${pkg}" || missing+=("${pkg}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    run apt-get update
    updated=1
  fi
  for pkg in "${RPI_PACKAGES[@]}"; do
    if is_installed "${pkg}"; then
      continue
    elif has_candidate "${pkg}"; then
      missing+=("${pkg}")
    else
      unavailable+=("${pkg}")
    fi
  done
  if [[ ${#unavailable[@]} -gt 0 ]]; then
    echo "    not in this system's apt sources (not Raspberry Pi OS?): ${unavailable[*]}"
    echo "    skipped them: camera modules (picamera2) and lgpio need them; USB cameras and scanners do not"
  fi
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "    all installed"
    return 0
  fi
  [[ ${updated} -eq 1 ]] || run apt-get update
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  check_python
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
  local have missing=()
  have=" $(id -nG "${APP_USER}" 2>/dev/null || true) "
  for group in "${GROUPS_NEEDED[@]}"; do
    [[ "${have}" == *" ${group} "* ]] || missing+=("${group}")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    run usermod --append --groups "$(IFS=,; echo "${missing[*]}")" "${APP_USER}"
  else
    echo "    unchanged: ${APP_USER} is in ${GROUPS_NEEDED[*]}"
  fi
}

# A digest of the source tree (build leftovers excluded): pip reinstalls only when it changed.
source_digest() {
  local prune=(\( -name .git -o -name .venv -o -name build -o -name '*.egg-info' -o -name __pycache__
    -o -name .mypy_cache -o -name .ruff_cache -o -name .pytest_cache \) -prune)
  (
    cd "${SRC}" || exit 1
    find . "${prune[@]}" -o -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    find . "${prune[@]}" -o -type l -printf '%p -> %l\n' | LC_ALL=C sort
    printf 'spec %s\n' "${PIP_SPEC}"
  ) | sha256sum | cut -d' ' -f1
}

install_venv() {
  log "virtualenv ${VENV} (system site packages: picamera2, libcamera, lgpio from apt)"
  if [[ ! -x "${VENV}/bin/python" ]]; then
    run mkdir -p "${PREFIX}"
    run python3 -m venv --system-site-packages "${VENV}"
  fi
  if [[ -n "${PIP_SPEC}" ]]; then
    # A named release: pip itself leaves a satisfied requirement alone.
    run "${VENV}/bin/pip" install --disable-pip-version-check "${PIP_SPEC}"
    return 0
  fi
  # The [pi] extra (picamera2, lgpio) is satisfied by the apt packages through the system
  # site packages; without them (not Raspberry Pi OS) pip would try to build picamera2's
  # dependencies from source, so the plain package is installed instead.
  local spec="${SRC}" digest
  if is_installed python3-picamera2; then
    spec="${SRC}[pi]"
  else
    echo "    python3-picamera2 is not installed: installing without the [pi] extra"
  fi
  digest="$(PIP_SPEC="${spec}" source_digest)"
  if [[ -x "${VENV}/bin/scanstation" && -f "${SOURCE_STAMP}" ]] &&
    [[ "$(cat "${SOURCE_STAMP}")" == "${digest}" ]]; then
    echo "    unchanged: ${SRC} is what is installed ($("${VENV}/bin/scanstation" --version))"
    return 0
  fi
  run "${VENV}/bin/pip" install --disable-pip-version-check --upgrade "${spec}"
  if [[ ${DRY_RUN} -eq 0 ]]; then
    echo "${digest}" >"${SOURCE_STAMP}"
  fi
}

install_link() {
  log "${LINK} (scanstation on every login shell's PATH)"
  if [[ "$(readlink "${LINK}" 2>/dev/null)" == "${VENV}/bin/scanstation" ]]; then
    echo "    unchanged: ${LINK} -> ${VENV}/bin/scanstation"
    return 0
  fi
  run mkdir -p "$(dirname "${LINK}")"
  run ln -sfn "${VENV}/bin/scanstation" "${LINK}"
  echo "    linked: ${LINK} -> ${VENV}/bin/scanstation"
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
  if [[ ${SYSTEMD_RUNNING} -eq 0 ]] || ! command -v udevadm >/dev/null 2>&1; then
    echo "    skipped: udevadm control --reload and trigger (no running udev; the rules apply at boot)"
    SKIPPED+=("udev reload")
    return 0
  fi
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
    if [[ ${SYSTEMD_RUNNING} -eq 1 ]]; then
      run systemctl restart systemd-journald
    else
      echo "    skipped: systemctl restart systemd-journald (systemd is not running)"
      SKIPPED+=("journald restart")
    fi
  fi
}

install_unit() {
  log "systemd unit ${UNIT_FILE}"
  install_text "${UNIT_FILE}" 0644 root:root <"${REPO_DIR}/systemd/scanstation.service"
  if [[ ${SYSTEMD_RUNNING} -eq 0 ]]; then
    enable_offline
    echo "    skipped: systemctl daemon-reload and restart (systemd is not running; it starts at boot)"
    SKIPPED+=("unit start")
    return 0
  fi
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

# Enable the unit without a running systemd: systemctl works on the files alone there;
# without systemctl at all, the link it would make.
enable_offline() {
  local wants=/etc/systemd/system/multi-user.target.wants
  if [[ "$(readlink "${wants}/scanstation.service" 2>/dev/null)" == "${UNIT_FILE}" ]]; then
    echo "    unchanged: enabled (${wants}/scanstation.service)"
  elif command -v systemctl >/dev/null 2>&1; then
    run systemctl enable scanstation.service
  else
    run mkdir -p "${wants}"
    run ln -sfn "${UNIT_FILE}" "${wants}/scanstation.service"
    echo "    enabled: ${wants}/scanstation.service"
  fi
}

main() {
  parse_args "$@"
  check_system
  install_packages
  create_user
  install_venv
  install_link
  install_config
  install_firmware_config
  install_udev_rules
  install_watchdogs
  install_unit
  if [[ ${#SKIPPED[@]} -gt 0 ]]; then
    log "skipped without a running systemd: $(printf '%s, ' "${SKIPPED[@]}" | sed 's/, $//')" \
      "(the first boot does them)"
  fi
  log "done. The first run writes an API key to ${STATE_DIR}/initial-api-key.txt."
  log "Reboot once if config.txt changed (camera overlays, watchdog)."
}

main "$@"
