#!/usr/bin/env bash
# Installs everything the tests need (system packages when missing, a venv with the project
# and its test extra), then runs ruff, mypy and the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)  # test_deploy_examples.py
# xkb-data and the Compose table for the keyboard-layout tests; headers and a compiler so pip
# can build the xkbcommon binding.
[ -f /usr/share/X11/xkb/rules/evdev.xml ] || need_apt+=(xkb-data)
[ -f /usr/share/X11/locale/en_US.UTF-8/Compose ] || need_apt+=(libx11-data)
[ -f /usr/include/xkbcommon/xkbcommon.h ] || need_apt+=(libxkbcommon-dev)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
[ -f "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] ||
  need_apt+=(python3-dev)
command -v socat >/dev/null 2>&1 || true
# PostgreSQL for the fleet collector's tests (initdb/pg_ctl for a private cluster).
pg_bin() {
  command -v "$1" 2>/dev/null && return
  local found=(/usr/lib/postgresql/*/bin/"$1")  # the newest version sorts last
  if [ -x "${found[-1]}" ]; then echo "${found[-1]}"; fi
}
[ -n "$(pg_bin initdb)" ] || need_apt+=(postgresql)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# The collector's tests use the server on 127.0.0.1:5432 when one answers, else a private
# cluster started here (trust auth, a free port, removed on exit): SCANSTATION_TEST_PG.
if [ -z "${SCANSTATION_TEST_PG:-}" ] && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  PGTMP=$(mktemp -d /tmp/scanstation-pg.XXXXXX)
  PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  AS=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$PGTMP"; AS=(runuser -u postgres --); fi
  "${AS[@]}" "$(pg_bin initdb)" -D "$PGTMP/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  "${AS[@]}" "$(pg_bin pg_ctl)" -D "$PGTMP/data" -l "$PGTMP/log" -w \
    -o "-p $PGPORT -k $PGTMP -c listen_addresses=127.0.0.1" start >/dev/null
  trap '"${AS[@]}" "$(pg_bin pg_ctl)" -D "$PGTMP/data" -m fast stop >/dev/null; rm -rf "$PGTMP"' EXIT
  export SCANSTATION_TEST_PG="postgresql://postgres@127.0.0.1:$PGPORT/postgres"
  echo "PostgreSQL: a private cluster on 127.0.0.1:$PGPORT"
fi

echo "== ruff"
.venv/bin/ruff check daemon tests
.venv/bin/ruff format --check daemon tests
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
