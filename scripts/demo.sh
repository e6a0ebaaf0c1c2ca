#!/usr/bin/env bash
# Set up (if needed) and run the demo: the Marathon emulator running real local tasks, the sidecar,
# a real HAProxy, live traffic through 127.0.0.1:<servicePort>, a scale-up and a killed task.
# --zookeeper: the same story in ZooKeeper mode (a real ZooKeeper, marathon-publisher and two
# sidecars on 127.0.0.2 and 127.0.0.3). Extra args go to the demo (see: python -m sidecar.demo
# --help). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MB_BROWSER_TESTS="${MB_BROWSER_TESTS:-0}" . scripts/setup.sh
exec python -m sidecar.demo "$@"
