#!/usr/bin/env bash
# Check that the fast run (scripts/test.sh --fast) starts no program it should not: runs that
# selection with haproxy, chromium, ip, buildah and java (ZooKeeper) replaced by stubs that record
# who called them, in a private mount namespace (root only; nothing changes outside it).
# A test listed at the end needs a marker (take the program's fixture: testkit/markers.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" = "0" ] || { echo "needs root (unshare --mount)"; exit 2; }
. .venv/bin/activate
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/stub" <<STUB
#!/bin/sh
echo "\${PYTEST_CURRENT_TEST:-a child process} ran \$0 \$*" >> "$work/calls"
exit 1
STUB
chmod +x "$work/stub"
targets=()
for program in haproxy chromium ip buildah java; do
  found="$(command -v "$program" || true)"
  [ -n "$found" ] && targets+=("$(readlink -f "$found")")
done
selection="$(python -c 'from testkit.markers import fast_selection; print(fast_selection())')"
binds=""
for target in "${targets[@]}"; do binds+="mount --bind $work/stub $target && "; done
rc=0
unshare --mount sh -c "${binds} python -m pytest -q -p no:cacheprovider -m '$selection' $*" || rc=$?
if [ -s "$work/calls" ]; then
  echo "== programs started by the fast selection (mark these tests):"; sort "$work/calls" | uniq -c
  exit 1
fi
echo "== the fast selection started none of: ${targets[*]}"
exit "$rc"
