#!/usr/bin/env bash
# Set up (if needed) and run every check: ruff, mypy, the py3.9 import check, the test suite.
# --fast: the same checks, but only the tests that need nothing beyond Python and this
# repository (no HAProxy, browser, network namespace, ZooKeeper, container image), run in
# MB_FAST_SHARDS (default 3) shards at once: the edit-test loop. Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fast=0
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi
MB_SETUP=test . scripts/setup.sh
echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
echo "== python 3.9 imports"; bash scripts/check_py39.sh 2> >(grep -v "^WARNING: Location" >&2)
if [ "$fast" = 0 ]; then
  echo "== pytest"; exec python -m pytest "$@"
fi

# The shards share nothing but the machine (ports come from the OS, each has its own tmp dir);
# most of a test's time is spent waiting, so they overlap well even on 2 cores.
selection="$(python -c 'from testkit.markers import fast_selection; print(fast_selection())')"
shards="${MB_FAST_SHARDS:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "== pytest -m \"$selection\", $shards shards at once"
pids=()
for k in $(seq 1 "$shards"); do
  python -m pytest -p testkit.sharding --shard "$k/$shards" --basetemp "$work/tmp$k" \
    -m "$selection" "$@" > "$work/shard$k.log" 2>&1 &
  pids+=("$!")
done
failed=0
empty=0
for k in $(seq 1 "$shards"); do
  rc=0
  wait "${pids[$((k - 1))]}" || rc=$?
  echo "== shard $k/$shards"
  cat "$work/shard$k.log"
  if [ "$rc" = 5 ]; then empty=$((empty + 1)); elif [ "$rc" != 0 ]; then failed=$rc; fi
done
if [ "$failed" != 0 ]; then exit "$failed"; fi
if [ "$empty" = "$shards" ]; then exit 5; fi  # no test selected at all
