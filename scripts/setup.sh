#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages, a venv, the package with its test extra.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run again.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

# MB_SETUP=demo (the default; scripts/demo.sh) installs what the demo runs; MB_SETUP=test
# (scripts/test.sh) adds the tools only the tests use.
need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
want haproxy haproxy
want ip iproute2
if [ "${MB_SETUP:-demo}" = "test" ]; then
  # the image test (tests/deploy/test_image_live.py): a Debian base made by mmdebstrap, built and
  # run by buildah (chroot isolation: no OCI runtime needed)
  want buildah buildah
  want mmdebstrap mmdebstrap
  # the ZooKeeper tests start Debian's server (its jar, run by the JRE it pulls in)
  [ -f /usr/share/java/zookeeper.jar ] || need+=(zookeeper)
  if [ "${MB_BROWSER_TESTS:-1}" = "1" ]; then want chromium chromium; fi
fi
SUDO=""
[ "$(id -u)" = "0" ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if [ "${#need[@]}" -gt 0 ]; then
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

# promtool checks and unit-tests deploy/prometheus/. Debian ships it only inside `prometheus`,
# whose installation would also enable a Prometheus server: take the one binary out of the
# package into the venv instead of installing it.
if [ "${MB_SETUP:-demo}" = "test" ] && ! command -v promtool >/dev/null 2>&1; then
  deb_dir="$(mktemp -d)"
  (cd "$deb_dir" && { apt-get download -qq prometheus 2>/dev/null \
    || { $SUDO apt-get update -qq && apt-get download -qq prometheus; }; } \
    && dpkg-deb -x prometheus_*.deb root \
    && install -m 755 root/usr/bin/promtool "$here/.venv/bin/promtool")
  rm -rf "$deb_dir"
fi
