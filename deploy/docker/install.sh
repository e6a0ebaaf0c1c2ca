#!/usr/bin/env bash
# Install marathon-sidecar (with marathon-publisher and the ZooKeeper client) and Debian's HAProxy
# into an image (or a prefix, for tests).
#
# The Dockerfile next to this script runs it once at build time; tests/deploy/ runs it in
# --dry-run mode and for real into a temporary prefix, so the steps cannot rot unnoticed.
#
# Usage: install.sh [options]
#   --source PATH     the package to install: a source tree (with setup.cfg) or a wheel (required
#                     unless --system-only)
#   --system-only     only the system part: Debian packages, the account, the directories (the
#                     image runs this first, so a source change does not repeat the apt step)
#   --prefix DIR      root the state/runtime/config directories and command links under DIR
#                     (default: empty, i.e. the real filesystem root)
#   --venv DIR        where the virtualenv goes (default: <prefix>/opt/marathon-sidecar)
#   --user NAME       the unprivileged account the sidecar and HAProxy run as (default: sidecar)
#   --uid N           its numeric uid/gid when it has to be created (default: 10001)
#   --low-ports       let a non-root HAProxy bind ports below 1024 (vhost port 80): sets the
#                     cap_net_bind_service file capability on /usr/sbin/haproxy. Only use it when
#                     the container keeps NET_BIND_SERVICE in its bounding set (Docker's default):
#                     with --cap-drop ALL the kernel refuses to run a binary with file capabilities.
#   --pip-opt OPT     an extra option for `pip install` (repeatable; tests pass --no-deps)
#   --dry-run         print the steps that would run, change nothing
#   --fresh           with --dry-run: plan as for an empty image (assume no package, user or
#                     directory exists yet) instead of looking at this machine
#   -h, --help        this text
#
# Every step is printed as "+ command ..." before it runs (or instead of running, in --dry-run),
# and a step that is already done is printed as "= <what>: already present".
set -euo pipefail

APT_PACKAGES=(python3 python3-venv haproxy ca-certificates)
STATE_DIR=/var/lib/marathon-sidecar
PUBLISHER_STATE_DIR=/var/lib/marathon-publisher
CONF_DIR=/etc/marathon-sidecar
HAPROXY_BIN=/usr/sbin/haproxy
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

source_path=""
prefix=""
venv=""
user_name="sidecar"
uid=10001
low_ports=0
dry_run=0
fresh=0
system_only=0
pip_opts=()

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 2; }

while [ "$#" -gt 0 ]; do
  case "$1" in
    --source) source_path="${2:?--source needs a path}"; shift 2 ;;
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --venv) venv="${2:?--venv needs a directory}"; shift 2 ;;
    --user) user_name="${2:?--user needs a name}"; shift 2 ;;
    --uid) uid="${2:?--uid needs a number}"; shift 2 ;;
    --low-ports) low_ports=1; shift ;;
    --system-only) system_only=1; shift ;;
    --pip-opt) pip_opts+=("${2:?--pip-opt needs a value}"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --fresh) fresh=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
done

[ -n "$source_path" ] || [ "$system_only" = 1 ] || die "--source is required"
[ -z "$source_path" ] || [ "$system_only" = 0 ] || die "--system-only installs no --source"
[ "$fresh" = 0 ] || [ "$dry_run" = 1 ] || die "--fresh only makes sense with --dry-run"
[[ "$uid" =~ ^[0-9]+$ ]] || die "--uid must be a number"
[[ "$user_name" =~ ^[a-z_][a-z0-9_-]*$ ]] || die "--user must be a plain account name"
if [ "$dry_run" = 0 ] && [ -n "$source_path" ] && [ ! -e "$source_path" ]; then die "--source $source_path does not exist"; fi
prefix="${prefix%/}"
[ -n "$venv" ] || venv="$prefix/opt/marathon-sidecar"

# step CMD...: print the command, run it unless --dry-run.
step() {
  echo "+ $*"
  if [ "$dry_run" = 0 ]; then "$@"; fi
}
done_already() { echo "= $*: already present"; }

package_installed() {
  [ "$fresh" = 0 ] || return 1
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
account_exists() {
  [ "$fresh" = 0 ] || return 1
  getent passwd "$1" >/dev/null 2>&1
}
group_exists() {
  [ "$fresh" = 0 ] || return 1
  getent group "$1" >/dev/null 2>&1
}

install_apt_packages() {
  local wanted=("${APT_PACKAGES[@]}") missing=() pkg
  if [ "$low_ports" = 1 ]; then wanted+=(libcap2-bin); fi
  for pkg in "${wanted[@]}"; do
    if package_installed "$pkg"; then done_already "apt package $pkg"; else missing+=("$pkg"); fi
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  export DEBIAN_FRONTEND=noninteractive
  step apt-get update -qq
  step apt-get install -y -qq --no-install-recommends "${missing[@]}"
  step apt-get clean
  step rm -rf /var/lib/apt/lists
}

create_account() {
  if account_exists "$user_name"; then done_already "user $user_name"; return 0; fi
  if ! group_exists "$user_name"; then
    step groupadd --system --gid "$uid" "$user_name"
  fi
  step useradd --system --uid "$uid" --gid "$user_name" --home-dir "$STATE_DIR" \
    --no-create-home --shell /usr/sbin/nologin "$user_name"
}

install_package() {
  if [ -x "$venv/bin/python" ] && [ "$fresh" = 0 ]; then
    done_already "virtualenv $venv"
  else
    step python3 -m venv "$venv"
  fi
  step "$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check -q \
    "${pip_opts[@]}" "$source_path[zookeeper]"
  step install -m 0755 "$HERE/healthcheck.py" "$venv/bin/marathon-sidecar-healthcheck"
  step mkdir -p "$prefix/usr/local/bin"
  local cmd
  for cmd in marathon-sidecar marathon-publisher marathon-bridge marathon-sidecar-healthcheck; do
    step ln -sf "$venv/bin/$cmd" "$prefix/usr/local/bin/$cmd"
  done
}

# The account's primary group: the group of the same name when this script creates the account.
primary_group() {
  if account_exists "$user_name"; then id -gn "$user_name"; else echo "$user_name"; fi
}

make_directories() {
  local dir group
  group="$(primary_group)"
  for dir in "$STATE_DIR" "$PUBLISHER_STATE_DIR" "$CONF_DIR"; do
    step install -d -m 0750 -o "$user_name" -g "$group" "$prefix$dir"
  done
}

allow_low_ports() {
  [ "$low_ports" = 1 ] || return 0
  step setcap cap_net_bind_service=+ep "$prefix$HAPROXY_BIN"
}

# quiet_step CMD...: like step, but only the exit status of CMD matters, not its output.
quiet_step() {
  echo "+ $*"
  if [ "$dry_run" = 0 ]; then "$@" >/dev/null; fi
}

# The installed commands start.
check_result() {
  quiet_step "$prefix/usr/local/bin/marathon-sidecar" --help
  quiet_step "$prefix/usr/local/bin/marathon-publisher" --help
  quiet_step "$HAPROXY_BIN" -v
}

echo "# marathon-sidecar install: source=${source_path:-none} prefix=${prefix:-/} venv=$venv user=$user_name"
install_apt_packages
create_account
[ "$system_only" = 1 ] || install_package
make_directories
allow_low_ports
[ "$system_only" = 1 ] || check_result
echo "# done"
