"""Settings: precedence flags > env > YAML file > defaults; bad values; secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.settings import OPTIONS, Settings, SettingsError, build_parser, load_settings

BASE = ["--marathon", "http://127.0.0.1:8080"]


def test_defaults() -> None:
    s = load_settings(BASE, {})
    assert s.marathon_urls == ("http://127.0.0.1:8080",)
    assert s.binds == ("127.0.0.1",)
    assert (s.status_host, s.status_port) == ("127.0.0.1", 9090)
    assert s.resync_interval == 300.0
    assert s.min_reload_interval == 1.0
    assert s.haproxy_bin == "haproxy"
    assert s.log_format == "text"
    assert not s.once and not s.poll
    assert s.haproxy_config_path == "/var/lib/marathon-sidecar/haproxy.cfg"


def test_flags_beat_env_beat_file_beat_defaults(tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        "marathon: [http://file-a:8080, http://file-b:8080]\n"
        "resync_interval: 100\n"
        "poll-interval: 7\n"
        "debounce: 0.2\n"
        "group: from-file\n"
    )
    env = {
        "MARATHON_URL": "http://env-a:8080,http://env-b:8080",
        "MARATHON_SIDECAR_RESYNC_INTERVAL": "200",
        "MARATHON_SIDECAR_POLL_INTERVAL": "8",
    }
    s = load_settings(["--config", str(config), "--resync-interval", "250"], env)
    assert s.resync_interval == 250.0  # flag
    assert s.poll_interval == 8.0  # env over file
    assert s.marathon_urls == ("http://env-a:8080", "http://env-b:8080")  # env over file
    assert s.debounce == 0.2  # file over default
    assert s.group == "from-file"
    assert s.min_reload_interval == 1.0  # default


def test_config_file_from_env(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("marathon: http://m:8080\nbind: [127.0.0.1, 127.0.0.2]\n")
    s = load_settings([], {"MARATHON_SIDECAR_CONFIG": str(config)})
    assert s.marathon_urls == ("http://m:8080",)
    assert s.binds == ("127.0.0.1", "127.0.0.2")


def test_repeatable_flags_and_listen_forms() -> None:
    s = load_settings(
        [
            *BASE,
            "--marathon",
            "https://m2:8443/",
            "--bind",
            "127.0.0.1",
            "--bind",
            "::1",
            "--status-listen",
            "[::1]:0",
        ],
        {},
    )
    assert s.marathon_urls == ("http://127.0.0.1:8080", "https://m2:8443")
    assert s.binds == ("127.0.0.1", "::1")
    assert (s.status_host, s.status_port) == ("::1", 0)


def test_the_probe_listener_is_off_by_default_and_takes_host_port(tmp_path: Path) -> None:
    assert load_settings(BASE, {}).probe_listen is None
    s = load_settings([*BASE, "--probe-listen", "0.0.0.0:9092"], {})
    assert s.probe_listen == "0.0.0.0:9092"
    env = load_settings(BASE, {"MARATHON_SIDECAR_PROBE_LISTEN": "[::]:9092"})
    assert env.probe_listen == "[::]:9092"
    config = tmp_path / "sidecar.yaml"
    config.write_text("probe_listen: 10.0.0.7:9092\n", encoding="utf-8")
    assert load_settings([*BASE, "--config", str(config)], {}).probe_listen == "10.0.0.7:9092"
    with pytest.raises(SettingsError, match="--probe-listen: the status server listens there"):
        load_settings([*BASE, "--probe-listen", "127.0.0.1:9090"], {})


def test_switches_from_env() -> None:
    s = load_settings(BASE, {"MARATHON_SIDECAR_POLL": "yes", "MARATHON_SIDECAR_ONCE": "0"})
    assert s.poll is True and s.once is False


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--resync-interval", "soon"], "--resync-interval"),
        (["--resync-interval", "0"], "--resync-interval"),
        (["--min-reload-interval", "-1"], "--min-reload-interval"),
        (["--status-listen", "9090"], "--status-listen"),
        (["--status-listen", "127.0.0.1:99999"], "--status-listen"),
        (["--probe-listen", "9092"], "--probe-listen"),
        (["--vhost-port", "70000"], "--vhost-port"),
        (["--log-format", "xml"], "--log-format"),
        (["--log-level", "loud"], "--log-level"),
        (["--marathon", "ftp://x"], "--marathon"),
        (["--bind", "127.0.0.1 0.0.0.0"], "--bind"),
    ],
)
def test_bad_flag_values_name_the_option(argv: list[str], named: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(BASE + argv, {})
    assert named in str(err.value)


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="MARATHON_SIDECAR_DEBOUNCE"):
        load_settings(BASE, {"MARATHON_SIDECAR_DEBOUNCE": "fast"})


def test_bad_file_values(tmp_path: Path) -> None:
    bad_key = tmp_path / "a.yaml"
    bad_key.write_text("marathon: http://m\nno_such_option: 1\n")
    with pytest.raises(SettingsError, match="unknown option 'no_such_option'"):
        load_settings(["--config", str(bad_key)], {})
    bad_yaml = tmp_path / "b.yaml"
    bad_yaml.write_text("marathon: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(["--config", str(bad_yaml)], {})
    bad_value = tmp_path / "c.yaml"
    bad_value.write_text("marathon: http://m\npoll_interval: never\n")
    with pytest.raises(SettingsError, match="poll-interval in the config file"):
        load_settings(["--config", str(bad_value)], {})
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(["--config", str(tmp_path / "missing.yaml")], {})


def test_marathon_url_is_required() -> None:
    with pytest.raises(SettingsError, match="--marathon"):
        load_settings([], {})


def test_unknown_flag_exits_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_settings(["--no-such-flag"], {})
    assert exit_info.value.code == 2


def test_help_documents_every_option_and_env_var() -> None:
    text = " ".join(build_parser().format_help().split())
    for option in OPTIONS:
        assert option.flag in text
        assert option.env_var in text
    assert "MARATHON_URL" in text and "MARATHON_SIDECAR_CONFIG" in text


def test_secrets_stay_out_of_repr_public_dict_and_errors() -> None:
    secret = "s3cr3t-Pa55"
    s = load_settings([*BASE, "--user", "alice"], {"MARATHON_PASSWORD": secret})
    assert s.password == secret
    assert secret not in repr(s)
    assert secret not in str(s.public_dict())
    assert s.public_dict()["password"] == "***"
    token_settings = load_settings(BASE, {"MARATHON_TOKEN": secret})
    assert secret not in repr(token_settings) and secret not in str(token_settings.public_dict())
    with pytest.raises(SettingsError) as err:
        load_settings([*BASE, "--password", secret], {})  # no user: an error
    assert secret not in str(err.value)


def test_credentials_in_urls_are_masked() -> None:
    s = load_settings(["--marathon", "http://bob:hunter2@m:8080/"], {})
    assert "hunter2" not in str(s.public_dict())


def test_settings_is_frozen() -> None:
    s = Settings(marathon_urls=("http://m",))
    with pytest.raises(AttributeError):
        s.poll = True  # type: ignore[misc]


def test_max_sync_age_follows_the_mode() -> None:
    assert load_settings(BASE, {}).max_sync_age == 900
    assert load_settings([*BASE, "--poll", "--poll-interval", "5"], {}).max_sync_age == 60
    assert load_settings([*BASE, "--sync-max-age", "12"], {}).max_sync_age == 12


def test_relative_paths_are_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.j2").write_text("{{ frontend_sections }}")
    s = load_settings(
        [*BASE, "--state-dir", "sc", "--haproxy-config", "sc/haproxy.cfg", "--template", "t.j2"],
        {"MARATHON_SIDECAR_HAPROXY_BIN": "./bin/haproxy"},
    )
    assert s.state_dir == str(tmp_path / "sc")
    assert s.haproxy_config_path == str(tmp_path / "sc" / "haproxy.cfg")
    assert s.template == str(tmp_path / "t.j2")
    assert s.haproxy_bin == str(tmp_path / "bin" / "haproxy")
    assert load_settings(BASE, {}).haproxy_bin == "haproxy"  # a name is looked up on PATH


@pytest.mark.parametrize(
    ("state_dir", "message"),
    [
        ("/srv/my state", "may only hold letters, digits"),
        ("/srv/" + "x" * 100, "too long for HAProxy's sockets"),
    ],
)
def test_a_state_dir_haproxy_cannot_use_names_the_option(state_dir: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as err:
        load_settings([*BASE, "--state-dir", state_dir], {})
    assert str(err.value).startswith("--state-dir: ")


# --- HAProxy tuning (sidecar/tuning.py) ---------------------------------------------------------


def test_tuning_defaults_leave_the_template_defaults() -> None:
    from sidecar.main import make_render_settings
    from sidecar.render_settings import RenderSettings

    render = make_render_settings(load_settings(BASE, {}))
    defaults = RenderSettings()
    assert render.timeout_client == defaults.timeout_client == "1m"
    assert render.frontend_maxconn is None and render.access_log is None
    assert render.metrics_listen is None and render.stats_page is False


def test_tuning_from_flags_env_and_file(tmp_path: Path) -> None:
    from sidecar.main import make_render_settings

    config = tmp_path / "sidecar.yaml"
    config.write_text(
        "marathon: http://m:8080\n"
        "timeout_server: 90\n"  # seconds, as every duration of the sidecar
        "haproxy-log: off\n"  # YAML reads this as false
        "frontend-maxconn: 2000\n"
    )
    env = {
        "MARATHON_SIDECAR_TIMEOUT_CONNECT": "250ms",
        "MARATHON_SIDECAR_HAPROXY_METRICS_LISTEN": "9101",
    }
    argv = ["--config", str(config), "--timeout-tunnel", "2h", "--haproxy-log", "stdout"]
    s = load_settings([*argv, "--haproxy-stats-page"], env)
    assert (s.timeout_server, s.timeout_connect, s.timeout_tunnel) == ("90s", "250ms", "2h")
    assert s.haproxy_log == "stdout" and s.frontend_maxconn == 2000
    assert s.haproxy_metrics_listen == "127.0.0.1:9101" and s.haproxy_stats_page
    render = make_render_settings(s)
    assert (render.timeout_server, render.timeout_connect) == ("90s", "250ms")
    assert render.access_log == "stdout" and render.metrics_listen == "127.0.0.1:9101"
    assert render.fixed_listeners == ("127.0.0.1:9101",)
    assert load_settings(["--config", str(config)], {}).haproxy_log == "off"


@pytest.mark.parametrize(
    ("value", "sink", "target"),
    [
        ("syslog:127.0.0.1", "syslog:127.0.0.1:514", "127.0.0.1:514"),
        ("syslog:[::1]:5140", "syslog:[::1]:5140", "[::1]:5140"),
        ("SYSLOG:/dev/log", "syslog:/dev/log", "/dev/log"),
        ("Off", "off", None),
    ],
)
def test_haproxy_log_sinks(value: str, sink: str, target: str | None) -> None:
    from sidecar.main import make_render_settings

    s = load_settings([*BASE, "--haproxy-log", value], {})
    assert s.haproxy_log == sink
    assert make_render_settings(s).access_log == target


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--timeout-connect", "soon"], "--timeout-connect: expected a duration"),
        (["--timeout-client", "0"], "--timeout-client: expected a duration from 1ms"),
        (["--timeout-server", "30d"], "--timeout-server: expected a duration from 1ms to 24d"),
        (["--timeout-queue", "1.5ms"], "--timeout-queue: expected whole milliseconds"),
        (["--frontend-maxconn", "0"], "--frontend-maxconn: expected a number of connections"),
        (["--haproxy-log", "file:/var/log/x"], "--haproxy-log: expected off, stdout or syslog"),
        (["--haproxy-log", "syslog:logs.example"], "--haproxy-log: syslog:ADDR: expected an IP"),
        (["--haproxy-log", "syslog:/a b"], "--haproxy-log: syslog:/path: a socket path"),
        (["--haproxy-metrics-listen", "0.0.0.0:0"], "--haproxy-metrics-listen: expected a port"),
        (["--haproxy-metrics-listen", "node:9101"], "--haproxy-metrics-listen: expected an IP"),
        (["--haproxy-stats-page"], "--haproxy-stats-page needs --haproxy-metrics-listen"),
        (["--haproxy-metrics-listen", "9090"], "--haproxy-metrics-listen: the status server"),
        (
            ["--haproxy-metrics-listen", "8080", "--vhost-port", "8080"],
            "--haproxy-metrics-listen: that is the vhost port",
        ),
        (
            ["--haproxy-metrics-listen", "9102", "--probe-listen", "0.0.0.0:9102"],
            "--haproxy-metrics-listen: the probe listener has that port",
        ),
    ],
)
def test_bad_tuning_values_name_the_option(argv: list[str], named: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(BASE + argv, {})
    assert str(err.value).startswith(named)
