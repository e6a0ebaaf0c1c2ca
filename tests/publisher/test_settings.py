"""marathon-publisher's settings: the sidecar's Marathon options under the publisher's prefix, the
ZooKeeper options, defaults that bind loopback only, and usage errors (exit 2) naming the option."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from marathon_bridge import __version__
from publisher.main import main
from publisher.settings import OPTIONS, TABLE, load_settings
from sidecar.option_table import SettingsError
from sidecar.settings import OPTIONS as SIDECAR_OPTIONS

BASE = ["--marathon", "http://127.0.0.1:8080", "--zookeeper", "127.0.0.1:2181"]


def test_defaults() -> None:
    s = load_settings(BASE, {})
    assert s.zookeeper == ("127.0.0.1:2181",)
    assert s.zk_path == "/smartstack/services"
    assert (s.status_host, s.status_port) == ("127.0.0.1", 9091)
    assert s.state_dir == "/var/lib/marathon-publisher"
    assert s.zk_session_timeout == 10.0
    assert (s.resync_interval, s.poll, s.empty_confirm) == (300.0, False, 5.0)


def test_the_marathon_options_are_the_sidecars() -> None:
    sidecar = {o.name: o for o in SIDECAR_OPTIONS}
    names = {
        "marathon", "user", "password", "token", "ca-bundle", "insecure", "marathon-timeout",
        "resync-interval", "poll", "poll-interval", "empty-confirm", "sync-max-age",
        "log-format", "log-level",
    }  # fmt: skip
    shared = [o for o in OPTIONS if o.name in names]
    assert len(shared) == len(names)
    for option in shared:
        theirs = sidecar[option.name]
        assert (option.parse, option.help, option.target) == (
            theirs.parse,
            theirs.help,
            theirs.target,
        )
        if theirs.env_var.startswith("MARATHON_SIDECAR_"):
            assert option.env_var == "MARATHON_PUBLISHER_" + theirs.env_var[17:]
        else:
            assert option.env_var == theirs.env_var  # MARATHON_URL, MARATHON_PASSWORD...


def test_zookeeper_from_the_environment_and_a_yaml_file(tmp_path: Path) -> None:
    env = {"MARATHON_URL": "http://m:8080", "MARATHON_PUBLISHER_ZOOKEEPER": "zk1:2181,zk2:2181"}
    s = load_settings([], env)
    assert s.zookeeper == ("zk1:2181", "zk2:2181")
    assert s.zookeeper_hosts == "zk1:2181,zk2:2181"
    config = tmp_path / "publisher.yaml"
    config.write_text(
        "marathon: http://m:8080\nzookeeper: [zk1:2181, '[::1]:2181']\nzk_path: /sd/services\n"
        "status-listen: 127.0.0.1:0\npoll: true\n"
    )
    s = load_settings(["--config", str(config)], {"MARATHON_PUBLISHER_POLL_INTERVAL": "3"})
    assert s.zookeeper == ("zk1:2181", "[::1]:2181")
    assert (s.zk_path, s.status_port, s.poll, s.poll_interval) == ("/sd/services", 0, True, 3.0)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--zookeeper", "zk1"], "--zookeeper"),
        (["--zookeeper", "zk1:0"], "--zookeeper"),
        (["--zk-path", "smartstack"], "--zk-path"),
        (["--zk-path", "/a//b"], "--zk-path"),
        (["--zk-session-timeout", "0.1"], "--zk-session-timeout"),
        (["--status-listen", "9091"], "--status-listen"),
        (["--poll-interval", "never"], "--poll-interval"),
        (["--marathon", "ftp://m"], "--marathon"),
    ],
)
def test_bad_values_name_the_option(argv: list[str], named: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(BASE + argv, {})
    assert named in str(err.value)


def test_zookeeper_and_marathon_are_required() -> None:
    with pytest.raises(SettingsError, match=r"--zookeeper.*MARATHON_PUBLISHER_ZOOKEEPER"):
        load_settings(["--marathon", "http://m:8080"], {})
    with pytest.raises(SettingsError, match="--marathon"):
        load_settings(["--zookeeper", "zk:2181"], {})


def test_a_usage_error_exits_2_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--zk-path", "relative"], {}) == 2
    assert "--zk-path" in capsys.readouterr().err
    assert main([*BASE, "--no-such-flag"], {}) == 2
    assert main([*BASE], {"MARATHON_PUBLISHER_EMPTY_CONFIRM": "later"}) == 2
    assert "MARATHON_PUBLISHER_EMPTY_CONFIRM" in capsys.readouterr().err


def test_help_lists_every_option_with_its_environment_variable() -> None:
    text = " ".join(TABLE.build_parser().format_help().split())
    for option in OPTIONS:
        assert option.flag in text and option.env_var in text
    assert "MARATHON_PUBLISHER_CONFIG" in text


def test_the_console_script_and_the_module_print_the_version() -> None:
    command = Path(sys.executable).with_name("marathon-publisher")
    for argv in ([str(command)], [sys.executable, "-m", "publisher"]):
        done = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0
        assert done.stdout.strip() == f"marathon-publisher {__version__}"


def test_secrets_stay_out_of_the_logged_settings() -> None:
    s = load_settings([*BASE, "--token", "t0k3n-value"], {})
    assert "t0k3n-value" not in repr(s) and "t0k3n-value" not in str(s.public_dict())
