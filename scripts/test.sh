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

echo "== ruff"
.venv/bin/ruff check daemon tests
.venv/bin/ruff format --check daemon tests
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
