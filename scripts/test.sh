#!/usr/bin/env bash
# Set up (if needed) and run every check: ruff, mypy, the py3.9 import check, the test suite.
# --fast: the same checks, but only the tests that need nothing beyond Python and this
# repository (no HAProxy, browser, network namespace, ZooKeeper, container image): the
# edit-test loop. Other arguments go to pytest.
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
if [ "$fast" = 1 ]; then
  selection="$(python -c 'from testkit.markers import fast_selection; print(fast_selection())')"
  echo "== pytest -m \"$selection\""
  python -m pytest -m "$selection" "$@"
else
  echo "== pytest"; python -m pytest "$@"
fi
