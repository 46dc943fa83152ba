#!/usr/bin/env bash
# arm64 smoke: scanstation on 64-bit Raspberry Pi OS's base (Debian bookworm arm64, Python
# 3.11.2), under qemu-user on this machine.
#
#   sudo scripts/arm64-smoke.sh [--keep]
#
# 1. host tools (qemu-user-static, mmdebstrap, binfmt-support: apt-installed when missing)
#    and binfmt_misc for aarch64; where binfmt cannot be enabled the smoke is SKIPPED (loudly,
#    exit 0);
# 2. an arm64 bookworm rootfs from mmdebstrap, cached as a tarball in
#    ${SCANSTATION_CI_CACHE:-/var/cache/scanstation-ci} between runs;
# 3. firmware-config/provision.sh run in it as on a fresh Pi (no systemd runs in a chroot: the
#    unit is enabled, not started), then run a second time, which must change nothing;
# 4. in the rootfs: `scanstation --version` from login shells' PATH (root and a user),
#    `decode` on the bundled images and `parse` on the sample scans, both byte-compared with
#    this machine's x86 output, `--check-config` on every example config, a classification
#    compared with x86, and a 60 s demo with /healthz polling and its peak RSS, isolated to
#    loopback in its own network namespace.
#
# Every step prints its duration; a summary closes the log. Mounts are undone on exit, and
# the rootfs is deleted (kept with --keep, for a look inside). Needs root. The only traffic
# beyond loopback is package installation from the Debian and PyPI mirrors this machine is
# configured with.

set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="${REPO_DIR}/scripts/arm64-smoke.sh"
SUITE=bookworm
ARCH=arm64
# Raspberry Pi OS Lite ships these; systemd and udev let provision.sh enable its unit offline.
INCLUDE="ca-certificates,python3,systemd,udev,sudo"
CACHE_DIR="${SCANSTATION_CI_CACHE:-/var/cache/scanstation-ci}"
DEMO_SECONDS="${SCANSTATION_SMOKE_DEMO_SECONDS:-60}"
DEMO_PORT=8080
# Where the project lives inside the rootfs: a user's clone, as the README's guide makes.
GUEST_SRC=/home/pi/scanstation
GUEST_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
KEEP=0
# The smoke's own settings are read above; no command it starts sees them (scanstation reads
# every SCANSTATION_* variable as a configuration override, and refuses unknown ones).
export -n SCANSTATION_CI_CACHE SCANSTATION_DEBIAN_MIRROR SCANSTATION_SMOKE_DEMO_SECONDS

# ---- the demo, inside its own network namespace (the script calls itself) -----------------

if [[ "${1:-}" == "--demo-in-netns" ]]; then
  rootfs="$2" out="$3" python="$4" DEMO_SECONDS="$5"
  ip link set lo up
  # The demo as the unprivileged user, with a clean environment: nothing from this machine.
  chroot --userspec=pi:pi "${rootfs}" /usr/bin/env -i HOME=/home/pi USER=pi LANG=C.UTF-8 \
    PATH="${GUEST_PATH}" scanstation demo --port "${DEMO_PORT}" --no-stdin \
    >"${out}.log" 2>&1 &
  demo_pid=$!
  rc=0
  "${python}" - "${demo_pid}" "${DEMO_PORT}" "${DEMO_SECONDS}" "${out}" <<'PY' || rc=$?
"""Poll /healthz of the demo: first answer within 240 s, then every 2 s for the demo's span."""
import json, sys, time, urllib.request

pid, port, seconds, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
url = f"http://127.0.0.1:{port}/healthz"


def status() -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except Exception:
        return 0


def memory() -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


start = time.monotonic()
first_ok = None
while time.monotonic() - start < 240:
    try:
        memory()
    except FileNotFoundError:
        break  # the demo died
    if status() == 200:
        first_ok = time.monotonic() - start
        break
    time.sleep(1)
polls, failures, peak_kb = 0, 0, 0
if first_ok is not None:
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        code = status()
        polls += 1
        failures += code != 200
        peak_kb = max(peak_kb, memory().get("VmHWM", 0))
        time.sleep(2)
result = {
    "first_healthz_s": None if first_ok is None else round(first_ok, 1),
    "polls": polls,
    "failed_polls": failures,
    "peak_rss_mb": round(peak_kb / 1024, 1),
}
with open(out, "w") as f:
    json.dump(result, f)
sys.exit(0 if first_ok is not None and polls > 0 and failures == 0 else 1)
PY
  kill -TERM "${demo_pid}" 2>/dev/null || true
  demo_rc=0
  wait "${demo_pid}" || demo_rc=$?
  echo "${demo_rc}" >"${out}.rc"
  exit "${rc}"
fi

while [[ $# -gt 0 ]]; do
  case "$1" in
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,22p' "${SELF}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "arm64-smoke: unknown option '$1' (expected --keep)" >&2; exit 2 ;;
  esac
done

# ---- steps, timing and the summary -------------------------------------------------------

SMOKE_START=${SECONDS}
STEP="" STEP_START=0
SUMMARY=()
MOUNTS=()
WORK=""

step() {
  STEP="$1"
  STEP_START=${SECONDS}
  echo
  echo "== arm64 smoke: ${STEP}"
}

pass() {
  local took=$((SECONDS - STEP_START))
  SUMMARY+=("PASS  ${STEP} (${took} s)${1:+: $1}")
  echo "-- ok: ${STEP} (${took} s)${1:+: $1}"
  STEP=""
}

print_summary() {
  local line
  echo
  echo "== arm64 smoke summary (total $((SECONDS - SMOKE_START)) s)"
  for line in "${SUMMARY[@]}"; do
    echo "   ${line}"
  done
}

mount_bind() {
  mount --bind "$1" "$2"
  MOUNTS+=("$2")
}

unmount_all() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true
  done
  MOUNTS=()
}

on_exit() {
  local rc=$?
  unmount_all
  if [[ -n "${WORK}" && -d "${WORK}" ]]; then
    if findmnt -rn -o TARGET | grep -q "^${WORK}/"; then
      echo "arm64-smoke: something is still mounted under ${WORK}; left it in place" >&2
    elif [[ ${KEEP} -eq 1 ]]; then
      echo "kept the rootfs: ${WORK}/rootfs"
    else
      rm -rf "${WORK}"
    fi
  fi
  if [[ -n "${STEP}" ]]; then
    SUMMARY+=("FAIL  ${STEP} (after $((SECONDS - STEP_START)) s)")
  fi
  if [[ ${#SUMMARY[@]} -gt 0 ]]; then
    print_summary
  fi
  if [[ ${rc} -ne 0 ]]; then
    echo "arm64 smoke: FAILED (exit ${rc})"
  fi
  exit "${rc}"
}
trap on_exit EXIT

skip() {
  echo
  echo "!! arm64 smoke SKIPPED: $*"
  echo "!! nothing was checked on arm64; run it where binfmt_misc can be enabled (as root)."
  STEP=""
  exit 0
}

# Run a command in the rootfs as root, with a clean environment (nothing of this machine's
# pip or proxy settings leaks in).
guest() {
  chroot "${ROOTFS}" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH="${GUEST_PATH}" "$@"
}

# ---- 1. host tools and binfmt --------------------------------------------------------------

step "host tools and binfmt for aarch64"
[[ ${EUID} -eq 0 ]] || skip "needs root (chroot, mounts, binfmt_misc); run it with sudo"
missing=()
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
# mmdebstrap asks arch-test whether this machine runs arm64 binaries.
command -v arch-test >/dev/null || missing+=(arch-test)
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
    skip "binfmt_misc cannot be mounted here (a container without the privilege?)"
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
  update-binfmts --import qemu-aarch64 2>/dev/null || true
fi
update-binfmts --enable qemu-aarch64 2>/dev/null || true
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null ||
  skip "the qemu-aarch64 binfmt handler cannot be enabled here"
# F: the kernel opens the interpreter at registration, so it works inside a chroot.
grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
  skip "the qemu-aarch64 handler lacks the F flag (qemu-user-static registers it with F)"
pass "$(qemu-aarch64-static --version | head -n 1)"

# ---- 2. the rootfs -------------------------------------------------------------------------

step "arm64 ${SUITE} rootfs"
mirror="${SCANSTATION_DEBIAN_MIRROR:-}"
if [[ -z "${mirror}" ]]; then
  mirror="$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null |
    head -n 1 || true)"
fi
if [[ -z "${mirror}" ]]; then
  mirror="$(awk '$1 == "deb" && $2 !~ /^\[/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null ||
    true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"
# CI speed only (a Pi writes its own SD card the normal way): dpkg without an fsync per file,
# no manual pages or their index (man-db's trigger runs after every apt transaction, under
# qemu). These settings stay in the rootfs, so provision.sh's apt-get benefits too.
DPKG_OPTS=(--dpkgopt='force-unsafe-io' --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright')
key="$(printf '%s %s minbase %s %s mmdebstrap v2' "${SUITE}" "${ARCH}" "${INCLUDE}" \
  "${DPKG_OPTS[*]}" | sha256sum | cut -c1-12)"
tarball="${CACHE_DIR}/rootfs-${SUITE}-${ARCH}-${key}.tar.zst"
WORK="$(mktemp -d /var/tmp/scanstation-arm64-smoke.XXXXXX)"
ROOTFS="${WORK}/rootfs"
if [[ -f "${tarball}" ]]; then
  mkdir -p "${ROOTFS}"
  tar -C "${ROOTFS}" --zstd -xpf "${tarball}"
  note="from the cache ${tarball}"
else
  # mmdebstrap, not debootstrap: one apt run instead of a shell script unpacking package by
  # package under emulation (241 s quiet, 803 s loaded with debootstrap here).
  echo "mmdebstrap ${SUITE} ${ARCH} from ${mirror} (first run: a few minutes under qemu)"
  # shellcheck disable=SC2016 # $1 is the hook's argument (the rootfs), expanded by mmdebstrap
  mmdebstrap --mode=root --arch="${ARCH}" --variant=minbase --include="${INCLUDE}" \
    "${DPKG_OPTS[@]}" --customize-hook='rm -f "$1/var/lib/man-db/auto-update"' \
    "${SUITE}" "${ROOTFS}" "${mirror}" >"${WORK}/mmdebstrap.log" 2>&1 || {
    tail -n 30 "${WORK}/mmdebstrap.log"
    exit 1
  }
  note="mmdebstrapped"
  if mkdir -p "${CACHE_DIR}" 2>/dev/null && [[ -w "${CACHE_DIR}" ]]; then
    tar -C "${ROOTFS}" --zstd -cpf "${tarball}.tmp" . && mv "${tarball}.tmp" "${tarball}"
    note+=", cached as ${tarball}"
  else
    note+=", not cached (${CACHE_DIR} is not writable)"
  fi
fi
arch="$(chroot "${ROOTFS}" /usr/bin/dpkg --print-architecture)"
[[ "${arch}" == arm64 ]] || { echo "rootfs architecture is ${arch}, expected arm64"; exit 1; }
pass "${note}; $(chroot "${ROOTFS}" /usr/bin/uname -m)"

# ---- 3. provision, as on a fresh Pi ------------------------------------------------------

step "mounts and the first user"
mount -t proc proc "${ROOTFS}/proc"
MOUNTS+=("${ROOTFS}/proc")
# Emulator artefact only: LiteRT's CPU detection crashes under qemu-user on the host's x86
# /proc/cpuinfo, so the guest sees a Cortex-A72's (a Raspberry Pi 4's).
cpuinfo="${WORK}/cpuinfo"
for cpu in $(seq 0 $(($(nproc) - 1))); do
  printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "${cpu}"
  printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n'
  printf 'CPU part\t: 0xd08\nCPU revision\t: 3\n\n'
done >"${cpuinfo}"
mount_bind "${cpuinfo}" "${ROOTFS}/proc/cpuinfo"
mount -t sysfs sysfs "${ROOTFS}/sys"
MOUNTS+=("${ROOTFS}/sys")
mount_bind /dev "${ROOTFS}/dev"
mount_bind /dev/pts "${ROOTFS}/dev/pts"
cp -L /etc/resolv.conf "${ROOTFS}/etc/resolv.conf"
# This machine reaches the package mirrors through its own certificate authorities; a Pi
# does not need this.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  # In the source folder, so a later update-ca-certificates in the guest keeps them; the
  # host's bundle (the same certificates) is copied as is, faster than rehashing under qemu.
  cp /usr/local/share/ca-certificates/*.crt "${ROOTFS}/usr/local/share/ca-certificates/"
  cp /etc/ssl/certs/ca-certificates.crt "${ROOTFS}/etc/ssl/certs/ca-certificates.crt"
fi
# Raspberry Pi Imager makes a first user; the guides are followed as that user.
guest useradd --create-home --shell /bin/bash --groups sudo pi
mkdir -p "${ROOTFS}${GUEST_SRC}"
git -C "${REPO_DIR}" ls-files -z --cached --others --exclude-standard |
  (cd "${REPO_DIR}" && tar --null -T - -cf -) | tar -C "${ROOTFS}${GUEST_SRC}" -xf -
# chown from this side, by number: the same result, without emulating chown per file.
chown -R "$(guest id -u pi):$(guest id -g pi)" "${ROOTFS}${GUEST_SRC}"
pass "/proc (ARM cpuinfo), /sys, /dev; user pi; the checkout in ${GUEST_SRC}"

step "provision.sh, first run"
guest "${GUEST_SRC}/firmware-config/provision.sh" --profile kiosk 2>&1 |
  tee "${WORK}/provision-1.log" | sed 's/^/   | /'
grep -q "systemd is not running" "${WORK}/provision-1.log" ||
  { echo "provision.sh did not say what it skipped without systemd"; exit 1; }
# Enabled without being started; the udev rules in place; the service user in its groups.
[[ -L "${ROOTFS}/etc/systemd/system/multi-user.target.wants/scanstation.service" ]] ||
  { echo "the unit is not enabled"; exit 1; }
[[ -f "${ROOTFS}/etc/udev/rules.d/99-scanstation.rules" ]] || { echo "no udev rules"; exit 1; }
groups="$(guest id -nG scanstation)"
for group in input video gpio dialout; do
  [[ " ${groups} " == *" ${group} "* ]] || { echo "scanstation is not in ${group}: ${groups}"; exit 1; }
done
echo "   unit enabled; udev rules installed; scanstation in: ${groups}"
pass "$(guest /opt/scanstation/venv/bin/python --version)"

# A listing of everything provision.sh owns, with contents, modes and times.
snapshot() {
  { guest find /etc /opt/scanstation /usr/local /var/lib/scanstation -xdev \
    -printf '%p %y %m %u %g %s %T@ %l\n' 2>/dev/null || true; } | sort
  { guest find /etc /usr/local /opt/scanstation/installed-source.sha256 -xdev -type f \
    -exec sha256sum {} + 2>/dev/null || true; } | sort
}

step "provision.sh, second run changes nothing"
snapshot >"${WORK}/before.txt"
guest "${GUEST_SRC}/firmware-config/provision.sh" --profile kiosk 2>&1 |
  tee "${WORK}/provision-2.log" | sed 's/^/   | /'
snapshot >"${WORK}/after.txt"
if ! diff -u "${WORK}/before.txt" "${WORK}/after.txt"; then
  echo "the second run changed the files above"
  exit 1
fi
pass "$(wc -l <"${WORK}/before.txt") paths identical"

# ---- 4. the checks -------------------------------------------------------------------------

# The x86 side of the comparisons: the venv scripts/test.sh made (else made here).
HOST_BIN="${REPO_DIR}/.venv/bin/scanstation"
if [[ ! -x "${HOST_BIN}" ]]; then
  echo "no ${REPO_DIR}/.venv: installing the project there for the x86 side"
  python3 -m venv "${REPO_DIR}/.venv"
  "${REPO_DIR}/.venv/bin/pip" install -q --disable-pip-version-check -e "${REPO_DIR}"
fi

step "scanstation --version from a login shell's PATH"
root_version="$(chroot "${ROOTFS}" /usr/bin/env -i TERM=dumb su - -c 'scanstation --version')"
pi_version="$(chroot "${ROOTFS}" /usr/bin/env -i TERM=dumb su - pi -c 'command -v scanstation; scanstation --version')"
echo "   root: ${root_version}"
echo "   pi:   ${pi_version//$'\n'/ }"
expected="$("${HOST_BIN}" --version)"
[[ "${root_version}" == "${expected}" && "${pi_version}" == *"${expected}" ]] ||
  { echo "expected '${expected}'"; exit 1; }
pass "${root_version}, for root and pi"


# Same command, same relative paths, on both sides: outputs must match byte for byte.
compare() {
  local name="$1"
  shift
  (cd "${REPO_DIR}" && "${HOST_BIN}" "$@") >"${WORK}/${name}.x86" 2>"${WORK}/${name}.x86.err"
  # shellcheck disable=SC2016 # expanded by the guest's sh
  chroot --userspec=pi:pi "${ROOTFS}" /usr/bin/env -i HOME=/home/pi LANG=C.UTF-8 \
    PATH="${GUEST_PATH}" sh -c 'cd "$0" && exec scanstation "$@"' "${GUEST_SRC}" "$@" \
    >"${WORK}/${name}.arm64" 2>"${WORK}/${name}.arm64.err" ||
    { cat "${WORK}/${name}.arm64.err"; exit 1; }
  cmp "${WORK}/${name}.x86" "${WORK}/${name}.arm64" ||
    { diff -u "${WORK}/${name}.x86" "${WORK}/${name}.arm64" | head -n 40; exit 1; }
  [[ -s "${WORK}/${name}.x86" ]] || { echo "no output at all from: $*"; exit 1; }
}

step "decode the bundled images, compared with x86"
mapfile -t images < <(cd "${REPO_DIR}" && ls daemon/scanstation/data/samples/*.jpg)
compare decode decode "${images[@]}"
sed 's/^/   /' "${WORK}/decode.arm64"
pass "${#images[@]} images, $(wc -l <"${WORK}/decode.arm64") codes, byte-identical"

step "parse the sample scans, compared with x86"
# parse --stdin reads the file through the shell on both sides; the built-in defaults (an
# empty config) on both, whatever either machine has in /etc/scanstation.
(cd "${REPO_DIR}" && "${HOST_BIN}" parse --config /dev/null --stdin --today 2026-06-01 \
  <daemon/scanstation/data/sample_scans.txt) >"${WORK}/parse.x86"
chroot --userspec=pi:pi "${ROOTFS}" /usr/bin/env -i HOME=/home/pi LANG=C.UTF-8 \
  PATH="${GUEST_PATH}" scanstation parse --config /dev/null --stdin --today 2026-06-01 \
  <"${REPO_DIR}/daemon/scanstation/data/sample_scans.txt" >"${WORK}/parse.arm64"
cmp "${WORK}/parse.x86" "${WORK}/parse.arm64" ||
  { diff -u "${WORK}/parse.x86" "${WORK}/parse.arm64" | head -n 40; exit 1; }
pass "$(wc -l <"${WORK}/parse.arm64") values, byte-identical"

step "--check-config on every example config"
# The files the examples name under /etc/scanstation (recall list, secrets, TLS material), made
# in the rootfs, and each example pointed at them: --check-config refuses missing files.
referenced=/home/pi/example-files
"${REPO_DIR}/scripts/example-files.sh" "${ROOTFS}${referenced}"
count=0
for example in "${REPO_DIR}"/docs/examples/*.toml; do
  name="$(basename "${example}")"
  sed "s#/etc/scanstation#${referenced}#g" "${example}" >"${ROOTFS}${referenced}/${name}"
  line="$(guest scanstation run --config "${referenced}/${name}" --check-config)"
  echo "   ${name}: ${line}"
  count=$((count + 1))
done
pass "${count} configs"

step "classify photos, compared with x86"
classify_py='
import json, sys
from pathlib import Path
from scanstation.vision.classify import Classifier
classifier = Classifier()
for name in sys.argv[1:]:
    answer = classifier.classify(Path(name).read_bytes(), top_k=3)
    top = ", ".join(f"{s.label} {s.score:.3f}" for s in answer.top)
    print(json.dumps({"image": name, "best": answer.best.label}), flush=True)
    print(f"{name}: {top}", file=sys.stderr)
'
photos=(tests/data/images/chelsea.jpg tests/data/images/coffee.jpg)
(cd "${REPO_DIR}" && .venv/bin/python -c "${classify_py}" "${photos[@]}") >"${WORK}/classify.x86" \
  2>"${WORK}/classify.x86.err"
{ grep -v '^INFO:' "${WORK}/classify.x86.err" || true; } | sed 's/^/   x86 top-3:   /'
# shellcheck disable=SC2016 # expanded by the guest's sh
chroot --userspec=pi:pi "${ROOTFS}" /usr/bin/env -i HOME=/home/pi LANG=C.UTF-8 \
  PATH="${GUEST_PATH}" sh -c 'cd "$0" && exec /opt/scanstation/venv/bin/python -c "$@"' \
  "${GUEST_SRC}" "${classify_py}" "${photos[@]}" >"${WORK}/classify.arm64" 2>"${WORK}/classify.err" ||
  { cat "${WORK}/classify.err"; exit 1; }
{ grep -v '^INFO:' "${WORK}/classify.err" || true; } | sed 's/^/   arm64 top-3: /'
cmp "${WORK}/classify.x86" "${WORK}/classify.arm64" ||
  { diff -u "${WORK}/classify.x86" "${WORK}/classify.arm64"; exit 1; }
pass "top-1 class identical to x86"

step "scanstation doctor on arm64"
# Exit 1 is expected here: the kiosk config wants a scanner, and a rootfs has none.
doctor_rc=0
guest scanstation doctor >"${WORK}/doctor.txt" || doctor_rc=$?
sed 's/^/   | /' "${WORK}/doctor.txt"
guest scanstation doctor --json >"${WORK}/doctor.json" || true
python3 - "${WORK}/doctor.json" "${doctor_rc}" <<'PY'
import json, sys
report, rc = json.load(open(sys.argv[1])), int(sys.argv[2])
checks = {c["name"]: c for c in report["checks"]}
assert len(checks) == 10, list(checks)
assert checks["os"]["details"]["architecture"] == "arm64", checks["os"]
assert checks["python"]["status"] == "ok", checks["python"]  # every aarch64 wheel imports
assert checks["config"]["status"] == "ok", checks["config"]
assert rc == (0 if report["ok"] else 1), (rc, report["ok"])
PY
pass "exit ${doctor_rc}; os arm64, python ok, config ok; valid --json"

step "${DEMO_SECONDS} s demo, loopback only, /healthz polled"
unshare --net -- bash "${SELF}" --demo-in-netns "${ROOTFS}" "${WORK}/demo.json" \
  "${REPO_DIR}/.venv/bin/python" "${DEMO_SECONDS}" || {
  echo "demo failed; its log:"
  tail -n 40 "${WORK}/demo.json.log"
  cat "${WORK}/demo.json" 2>/dev/null || true
  exit 1
}
demo_rc="$(cat "${WORK}/demo.json.rc")"
[[ "${demo_rc}" == 0 ]] || { echo "the demo exited ${demo_rc} on SIGTERM"; tail -n 20 "${WORK}/demo.json.log"; exit 1; }
python3 - "${WORK}/demo.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"   first /healthz answer after {r['first_healthz_s']} s; {r['polls']} polls, "
      f"{r['failed_polls']} failed; peak RSS {r['peak_rss_mb']} MB (qemu process)")
PY
pass "$(cat "${WORK}/demo.json")"

print_summary
SUMMARY=()
total=$((SECONDS - SMOKE_START))
if [[ ${total} -gt 1500 ]]; then
  echo "arm64 smoke: WARNING: ${total} s is over the 25-minute budget (a loaded machine?)"
fi
echo "arm64 smoke: PASSED in ${total} s"
