#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages, a venv, the package with its test extra.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run again.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# The image test (tests/deploy/test_image_live.py): a Debian base made by mmdebstrap, built and
# run by buildah (chroot isolation: no OCI runtime needed).
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
# promtool checks and unit-tests deploy/prometheus/; Debian ships it only inside `prometheus`
# (where systemd runs, that package also enables a Prometheus server: disable it if unwanted).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ "${MB_BROWSER_TESTS:-1}" = "1" ] && ! command -v chromium >/dev/null 2>&1; then need+=(chromium); fi
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = "0" ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=.venv/.installed-$(cat setup.cfg pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
