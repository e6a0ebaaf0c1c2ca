#!/usr/bin/env bash
# Import every module of our packages under the oldest supported Python (3.9), when one is installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py39=""
for candidate in /root/.pyenv/versions/3.9*/bin/python3.9 /usr/bin/python3.9 "$(command -v python3.9 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c "pass" >/dev/null 2>&1; then
    py39="$candidate"
    break
  fi
done
if [ -z "$py39" ]; then
  echo "python3.9 not found: skipping the 3.9 import check"
  exit 0
fi
if [ ! -x .venv39/bin/python ]; then
  "$py39" -m venv .venv39
  .venv39/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv39/.installed-$(sha1sum setup.cfg | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv39/bin/python -m pip install -q -e ".[zookeeper]"
  rm -f .venv39/.installed-*
  touch "$stamp"
fi
.venv39/bin/python - <<'PY'
import importlib, pkgutil, sys
failed = []
count = 0
for pkg in ("marathon_bridge", "sidecar", "publisher"):
    mod = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(mod.__path__, prefix=pkg + "."):
        if info.name.endswith("pytest_plugin"):
            continue
        count += 1
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # report every module that fails, not just the first
            failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
print(f"python {sys.version.split()[0]}: imported {count - len(failed)}/{count} modules")
if failed:
    print("\n".join(failed))
    sys.exit(1)
PY
