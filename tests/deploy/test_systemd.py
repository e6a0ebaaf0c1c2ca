"""deploy/systemd: the sidecar's unit, its YAML settings file and the haproxy.service drop-in;
the publisher's unit and its YAML settings file.

Each YAML file is read with its command's own loader and must document every option; each unit's
command line must be one the command's parser accepts; the drop-in must point Debian's HAProxy
at the file the sidecar writes and open the master socket the sidecar is told to use; and the
bootstrap config must let a real HAProxy start in master-worker mode with that socket.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from publisher import settings as publisher_settings
from publisher.settings import PublisherSettings
from sidecar.haproxy.runtime import MasterCLI, RuntimeUnavailable
from sidecar.option_table import Option
from sidecar.probes import LOOP_STALL_LIMIT
from sidecar.settings import OPTIONS, Settings, build_parser, load_settings
from testkit import wait_until
from testkit.process import terminate

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
UNIT = SYSTEMD / "marathon-sidecar.service"
DROP_IN = SYSTEMD / "haproxy.service.d" / "marathon-sidecar.conf"
BOOTSTRAP = SYSTEMD / "haproxy-bootstrap.cfg"
SIDECAR_YAML = SYSTEMD / "sidecar.yaml"
SIDECAR_ZOOKEEPER_YAML = SYSTEMD / "sidecar-zookeeper.yaml"
PUBLISHER_UNIT = SYSTEMD / "marathon-publisher.service"
PUBLISHER_YAML = SYSTEMD / "publisher.yaml"
SETTINGS_FILES = [(SIDECAR_YAML, OPTIONS), (PUBLISHER_YAML, publisher_settings.OPTIONS)]
DEBIAN_HAPROXY_UNIT = Path("/lib/systemd/system/haproxy.service")


def unit_entries(path: Path) -> dict[str, list[tuple[str, str]]]:
    """systemd's INI dialect: section -> [(key, value)] in order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current, f"{path.name}:{number}: not 'Key=value' inside a section"
        assert not line.endswith("\\"), f"{path.name}:{number}: keep entries on one line"
        sections[current].append((key.strip(), value.strip()))
    return sections


def unit_value(path: Path, section: str, key: str) -> str:
    values = [v for k, v in unit_entries(path)[section] if k == key]
    assert values, f"{path.name}: no {key}= in [{section}]"
    return values[-1]


def drop_in_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in unit_entries(DROP_IN)["Service"]:
        if key == "Environment":
            for item in shlex.split(value):
                name, _, text = item.partition("=")
                env[name] = text
    return env


def master_socket_option() -> tuple[str, dict[str, str]]:
    """The drop-in's ``-S path,opt,value,...`` -> (path, {option: value})."""
    words = shlex.split(drop_in_environment()["EXTRAOPTS"])
    assert words[0] == "-S" and len(words) == 2
    path, *rest = words[1].split(",")
    return path, dict(zip(rest[::2], rest[1::2]))


def yaml_settings() -> Settings:
    return load_settings(["--config", str(SIDECAR_YAML)], {})


def publisher_yaml_settings() -> PublisherSettings:
    return publisher_settings.load_settings(["--config", str(PUBLISHER_YAML)], {})


def exec_start_argv(unit: Path = UNIT) -> list[str]:
    return shlex.split(unit_value(unit, "Service", "ExecStart"))


# --- sidecar.yaml ------------------------------------------------------------------------------


def test_sidecar_yaml_loads_with_the_sidecars_own_loader() -> None:
    settings = yaml_settings()
    assert len(settings.marathon_urls) == 3
    assert settings.master_socket == "/run/haproxy/master.sock"
    assert settings.haproxy_config_path == "/var/lib/marathon-sidecar/haproxy.cfg"
    assert settings.state_dir == "/var/lib/marathon-sidecar"
    assert settings.log_format == "json"


@pytest.mark.parametrize(("path", "options"), SETTINGS_FILES, ids=["sidecar", "publisher"])
def test_settings_file_documents_every_option_with_its_environment_variable(
    path: Path, options: tuple[Option, ...]
) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    for option in options:
        pattern = re.compile(rf"^(# )?{re.escape(option.name)}:")
        where = [i for i, line in enumerate(lines) if pattern.match(line)]
        assert len(where) == 1, f"{option.name}: expected once in {path.name}, found {len(where)}"
        comment = []
        for line in reversed(lines[: where[0]]):
            if not line.startswith("#") or line.startswith("# ---") or line == "":
                break
            comment.append(line)
        assert f"(env: {option.env_var}" in " ".join(comment), option.name


def commented_examples(
    path: Path = SIDECAR_YAML, options: tuple[Option, ...] = OPTIONS
) -> dict[str, Any]:
    """Every commented-out ``# key: value`` (with its ``#   - item`` lines), uncommented."""
    examples: dict[str, Any] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    names = {o.name for o in options}
    for i, line in enumerate(lines):
        match = re.match(r"^# ([a-z-]+):(.*)$", line)
        if not match or match.group(1) not in names:
            continue
        block = [line[2:]]
        if not match.group(2).strip():  # a list follows, one "#   - item" per line
            for following in lines[i + 1 :]:
                if not following.startswith("#   - "):
                    break
                block.append(following[2:])
        examples.update(yaml.safe_load("\n".join(block)))
    return examples


@pytest.mark.parametrize(("path", "options"), SETTINGS_FILES, ids=["sidecar", "publisher"])
def test_every_commented_example_value_is_valid(path: Path, options: tuple[Option, ...]) -> None:
    examples = commented_examples(path, options)
    assert len(examples) >= 15
    by_name = {o.name: o for o in options}
    for name, value in examples.items():
        option = by_name[name]
        if option.repeatable:
            assert isinstance(value, list) and value, name
            for item in value:
                option.parse(item)
        else:
            option.parse(value)


def test_commented_defaults_match_the_real_defaults() -> None:
    examples = commented_examples()
    defaults = Settings()
    assert examples["resync-interval"] == defaults.resync_interval
    assert examples["poll-interval"] == defaults.poll_interval
    assert examples["min-reload-interval"] == defaults.min_reload_interval
    assert examples["debounce"] == defaults.debounce
    assert examples["drain-timeout"] == defaults.drain_timeout
    assert examples["empty-confirm"] == defaults.empty_confirm
    assert examples["marathon-timeout"] == defaults.marathon_timeout
    assert examples["bind"] == list(defaults.binds)
    assert examples["status-listen"] == defaults.status_listen
    assert examples["log-level"] == defaults.log_level
    assert examples["poll"] is defaults.poll and examples["once"] is defaults.once


# --- sidecar-zookeeper.yaml: the same unit, ZooKeeper mode ---------------------------------------

# The options that mean something in ZooKeeper mode: the file names each of them.
ZOOKEEPER_MODE_OPTIONS = {
    "source", "zookeeper", "zk-path", "haproxy-config", "haproxy-bin", "master-socket",
    "state-dir", "bind", "group", "vhost-port", "status-listen", "empty-confirm",
    "min-reload-interval", "debounce", "drain-timeout", "log-format", "log-level",
}  # fmt: skip


def zookeeper_yaml_settings() -> Settings:
    return load_settings(["--config", str(SIDECAR_ZOOKEEPER_YAML)], {})


def test_zookeeper_yaml_watches_zookeeper_and_fits_the_same_unit() -> None:
    settings, direct = zookeeper_yaml_settings(), yaml_settings()
    assert settings.source == "zookeeper"
    assert len(settings.zookeeper) == 3 and settings.marathon_urls == ()
    assert settings.zk_path == publisher_yaml_settings().zk_path
    # the unit and the haproxy.service drop-in are shared: same files and sockets
    assert settings.master_socket == direct.master_socket
    assert settings.haproxy_config_path == direct.haproxy_config_path
    assert settings.state_dir == direct.state_dir


def test_zookeeper_yaml_documents_its_options_with_their_environment_variables() -> None:
    lines = SIDECAR_ZOOKEEPER_YAML.read_text(encoding="utf-8").splitlines()
    by_name = {o.name: o for o in OPTIONS}
    found = set()
    for i, line in enumerate(lines):
        match = re.match(r"^(?:# )?([a-z-]+):", line)
        if not match or match.group(1) not in by_name:
            continue
        found.add(match.group(1))
        comment = " ".join(lines[j] for j in range(max(0, i - 4), i) if lines[j].startswith("# "))
        assert f"(env: {by_name[match.group(1)].env_var}" in comment, match.group(1)
    assert found == ZOOKEEPER_MODE_OPTIONS


def commented_services_map(path: Path) -> dict[str, Any]:
    """The commented-out ``# services:`` block, uncommented."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index("# services:")
    block = [lines[start][2:]]
    for line in lines[start + 1 :]:
        if not line.startswith("#   "):
            break
        block.append(line[2:])
    loaded: dict[str, Any] = yaml.safe_load("\n".join(block))
    return loaded


def test_zookeeper_yaml_examples_are_valid_including_the_services_map(tmp_path: Path) -> None:
    examples = commented_examples(SIDECAR_ZOOKEEPER_YAML)
    by_name = {o.name: o for o in OPTIONS}
    for name, value in examples.items():
        option = by_name[name]
        for item in value if option.repeatable else [value]:
            option.parse(item)
    assert examples["zk-path"] == Settings().zk_path
    config = yaml.safe_load(SIDECAR_ZOOKEEPER_YAML.read_text(encoding="utf-8"))
    config.update(commented_services_map(SIDECAR_ZOOKEEPER_YAML))
    uncommented = tmp_path / "sidecar.yaml"
    uncommented.write_text(yaml.safe_dump(config), encoding="utf-8")
    settings = load_settings(["--config", str(uncommented)], {})
    ports = {entry.name: entry.options.service_port for entry in settings.services}
    assert ports == {"legacy-api": 10100, "search": 10101}


# --- the sidecar's unit ------------------------------------------------------------------------


def test_unit_command_line_is_accepted_by_the_sidecars_parser() -> None:
    argv = exec_start_argv()
    assert argv[0] == "/opt/marathon-sidecar/bin/marathon-sidecar"
    parsed, unknown = build_parser().parse_known_args(argv[1:])
    assert unknown == []
    assert vars(parsed) == {"config": "/etc/marathon-sidecar/sidecar.yaml"}


def test_unit_is_notified_and_watched_by_the_sidecar() -> None:
    assert unit_value(UNIT, "Service", "Type") == "notify"
    assert unit_value(UNIT, "Service", "NotifyAccess") == "main"  # HAProxy has nothing to say
    watchdog = int(unit_value(UNIT, "Service", "WatchdogSec").rstrip("s"))
    # the pings come from the daemon loop, which may legitimately block (a long apply) up to
    # the stall limit /livez allows; the watchdog gives it as long
    assert watchdog >= LOOP_STALL_LIMIT
    assert "AF_UNIX" in unit_value(UNIT, "Service", "RestrictAddressFamilies").split()


def test_unit_restarts_always_and_stops_in_order() -> None:
    assert unit_value(UNIT, "Service", "Restart") == "always"
    assert unit_value(UNIT, "Service", "KillMode") == "mixed"
    stop_seconds = int(unit_value(UNIT, "Service", "TimeoutStopSec").rstrip("s"))
    assert stop_seconds > yaml_settings().drain_timeout


def test_unit_is_hardened_and_unprivileged() -> None:
    service = dict(unit_entries(UNIT)["Service"])
    assert service["User"] == "marathon-sidecar"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert service["StateDirectory"] == "marathon-sidecar"
    # ProtectSystem=strict leaves only the state directory writable: what the sidecar writes
    # (its state and the haproxy.cfg) must live there.
    settings = yaml_settings()
    state = "/var/lib/" + service["StateDirectory"]
    assert settings.state_dir == state
    assert settings.haproxy_config_path.startswith(state + "/")
    assert "MemoryDenyWriteExecute" not in service  # HAProxy's PCRE2 JIT needs W+X pages


def test_unit_starts_after_the_haproxy_it_drives() -> None:
    unit = dict(unit_entries(UNIT)["Unit"])
    assert "haproxy.service" in unit["After"].split()
    assert "haproxy.service" in unit["Wants"].split()


def systemd_analyze_warnings(unit: Path, search_path: Path) -> str:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{search_path}:"},
        check=False,
    )
    return "\n".join(
        line
        for line in (result.stdout + result.stderr).splitlines()
        if str(search_path) in line  # only what concerns the files under test
    )


def test_systemd_accepts_the_unit_and_the_drop_in(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        # No systemd here: the static checks above are all that can run.
        assert unit_entries(UNIT) and unit_entries(DROP_IN)
        return
    units = tmp_path / "units"
    (units / "haproxy.service.d").mkdir(parents=True)
    text = UNIT.read_text(encoding="utf-8")
    # verify checks that ExecStart exists; the package is not installed under /opt here.
    (units / UNIT.name).write_text(text.replace(exec_start_argv()[0], "/bin/true"))
    assert systemd_analyze_warnings(units / UNIT.name, units) == ""
    if DEBIAN_HAPROXY_UNIT.is_file():
        shutil.copy(DEBIAN_HAPROXY_UNIT, units / "haproxy.service")
        shutil.copy(DROP_IN, units / "haproxy.service.d" / DROP_IN.name)
        assert systemd_analyze_warnings(units / "haproxy.service", units) == ""


# --- the publisher's unit and publisher.yaml ---------------------------------------------------


def test_publisher_yaml_loads_with_the_publishers_own_loader() -> None:
    settings = publisher_yaml_settings()
    assert len(settings.marathon_urls) == 3 and len(settings.zookeeper) == 3
    assert settings.zk_path == "/smartstack/services"
    assert settings.status_listen == "127.0.0.1:9091"  # loopback unless asked
    assert settings.log_format == "json"


def test_publisher_yamls_commented_defaults_are_the_real_defaults() -> None:
    examples = commented_examples(PUBLISHER_YAML, publisher_settings.OPTIONS)
    defaults = PublisherSettings()
    for name in ("resync-interval", "poll-interval", "empty-confirm", "marathon-timeout",
                 "zk-session-timeout", "log-level", "zk-path", "status-listen"):  # fmt: skip
        field = name.replace("-", "_")
        assert examples[name] == getattr(defaults, field), name
    assert examples["poll"] is defaults.poll and examples["insecure"] is defaults.insecure


def test_publisher_unit_command_line_is_accepted_by_the_publishers_parser() -> None:
    argv = exec_start_argv(PUBLISHER_UNIT)
    assert argv[0] == "/opt/marathon-sidecar/bin/marathon-publisher"
    parsed, unknown = publisher_settings.TABLE.build_parser().parse_known_args(argv[1:])
    assert unknown == []
    assert vars(parsed) == {"config": "/etc/marathon-publisher/publisher.yaml"}


def test_publisher_unit_restarts_always_and_is_hardened() -> None:
    service = dict(unit_entries(PUBLISHER_UNIT)["Service"])
    assert service["Restart"] == "always"
    assert service["User"] == "marathon-publisher"
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["CapabilityBoundingSet"] == ""
    # ProtectSystem=strict leaves only the state directory writable: the state dir must be it.
    assert publisher_yaml_settings().state_dir == "/var/lib/" + service["StateDirectory"]
    assert "haproxy.service" not in dict(unit_entries(PUBLISHER_UNIT)["Unit"]).get("After", "")


def test_systemd_accepts_the_publishers_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        assert unit_entries(PUBLISHER_UNIT)  # no systemd here: the static checks above remain
        return
    units = tmp_path / "units"
    units.mkdir()
    text = PUBLISHER_UNIT.read_text(encoding="utf-8")
    unit = units / PUBLISHER_UNIT.name
    unit.write_text(text.replace(exec_start_argv(PUBLISHER_UNIT)[0], "/bin/true"))
    assert systemd_analyze_warnings(unit, units) == ""


# --- the haproxy.service drop-in ---------------------------------------------------------------


def test_drop_in_points_haproxy_at_the_config_the_sidecar_writes() -> None:
    assert drop_in_environment()["CONFIG"] == yaml_settings().haproxy_config_path


def test_drop_in_master_socket_is_the_one_the_sidecar_uses() -> None:
    path, options = master_socket_option()
    assert path == yaml_settings().master_socket
    assert options == {"mode": "600"}
    # A non-root HAProxy can only create it in its own runtime directory.
    runtime = unit_value(DROP_IN, "Service", "RuntimeDirectory")
    assert path.startswith(f"/run/{runtime}/")
    assert drop_in_environment()["PIDFILE"].startswith(f"/run/{runtime}/")


def test_haproxy_runs_as_the_sidecars_account_so_its_sockets_are_the_sidecars() -> None:
    for key in ("User", "Group"):
        assert unit_value(DROP_IN, "Service", key) == unit_value(UNIT, "Service", key)
    assert unit_value(DROP_IN, "Service", "AmbientCapabilities") == "CAP_NET_BIND_SERVICE"


def test_drop_in_seeds_the_bootstrap_config_only_when_none_exists() -> None:
    pre = [v for k, v in unit_entries(DROP_IN)["Service"] if k == "ExecStartPre"]
    copy = [shlex.split(v.lstrip("-+")) for v in pre if v.lstrip("-+").startswith("/bin/cp")]
    assert len(copy) == 1
    argv = copy[0]
    assert "--no-clobber" in argv
    assert argv[-2] == "/etc/marathon-sidecar/" + BOOTSTRAP.name
    assert argv[-1] == drop_in_environment()["CONFIG"]
    assert all(v.startswith("-") for v in pre), "a failed seed step must not stop HAProxy"


def test_bootstrap_config_is_valid(haproxy_bin: str) -> None:
    result = subprocess.run(
        [haproxy_bin, "-c", "-f", str(BOOTSTRAP)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_haproxy_starts_from_the_bootstrap_config_with_the_drop_ins_master_socket(
    haproxy_bin: str, tmp_path: Path
) -> None:
    config = tmp_path / "haproxy.cfg"
    # A private abstract socket name so that this test never meets a real bootstrap listener.
    unique = f"marathon-sidecar-bootstrap-test-{os.getpid()}"
    config.write_text(BOOTSTRAP.read_text(encoding="utf-8").replace(
        "abns@marathon-sidecar-bootstrap", f"abns@{unique}"
    ))  # fmt: skip
    _, options = master_socket_option()
    socket_path = tmp_path / "master.sock"
    master_arg = ",".join([str(socket_path)] + [f"{k},{v}" for k, v in options.items()])
    pidfile = tmp_path / "haproxy.pid"
    proc = subprocess.Popen(
        [haproxy_bin, "-W", "-f", str(config), "-p", str(pidfile), "-S", master_arg],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(socket_path.exists, timeout=30)
        mode = socket_path.stat().st_mode & 0o777
        assert mode == int(options["mode"], 8)
        assert socket_path.stat().st_uid == os.getuid()  # the account HAProxy runs as
        master = MasterCLI(str(socket_path))

        def one_worker() -> bool:
            try:
                return len(master.show_proc().worker_pids) == 1
            except RuntimeUnavailable:  # the socket file exists a moment before it accepts
                return False

        wait_until(one_worker, timeout=30)
    finally:
        terminate(proc)
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode is not None
