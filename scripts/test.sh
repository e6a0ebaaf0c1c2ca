#!/usr/bin/env bash
# Set up (if needed) and run every check: ruff, mypy, the test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MB_SETUP=test . scripts/setup.sh
echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
echo "== python 3.9 imports"; bash scripts/check_py39.sh 2> >(grep -v "^WARNING: Location" >&2)
echo "== pytest"; python -m pytest "$@"
