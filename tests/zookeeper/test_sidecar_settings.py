"""The sidecar's ZooKeeper settings: --source, --zookeeper, --zk-path and the YAML services: map."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.catalog import HealthCheck, ServiceOptions
from sidecar.metrics import SidecarMetrics
from sidecar.settings import SettingsError, load_settings
from sidecar.sources.factory import make_source
from sidecar.sources.marathon.source import MarathonSource
from sidecar.sources.zookeeper.local_services import LocalService, parse_local_services
from sidecar.sources.zookeeper.source import ZooKeeperSource

ZK = ["--source", "zookeeper", "--zookeeper", "127.0.0.1:2181"]


def test_marathon_stays_the_default_and_needs_its_url() -> None:
    settings = load_settings(["--marathon", "http://m:8080"], {})
    assert settings.source == "marathon" and settings.zookeeper == ()
    assert isinstance(make_source(settings, SidecarMetrics()), MarathonSource)
    with pytest.raises(SettingsError, match="--marathon"):
        load_settings([], {})


def test_zookeeper_mode_needs_no_marathon_url_and_builds_no_marathon_client() -> None:
    settings = load_settings(ZK, {})
    assert settings.source == "zookeeper" and settings.marathon_urls == ()
    assert settings.zookeeper == ("127.0.0.1:2181",)
    assert settings.zk_path == "/smartstack/services"
    source = make_source(settings, SidecarMetrics())
    assert isinstance(source, ZooKeeperSource) and source.client is None  # nothing started


def test_zookeeper_mode_without_servers_is_a_clear_usage_error() -> None:
    with pytest.raises(SettingsError, match="--zookeeper: at least one ZooKeeper server"):
        load_settings(["--source", "zookeeper"], {})


def test_environment_and_file_forms(tmp_path: Path) -> None:
    env = {
        "MARATHON_SIDECAR_SOURCE": "zookeeper",
        "MARATHON_SIDECAR_ZOOKEEPER": "zk1:2181, zk2:2181,[::1]:2182",
        "MARATHON_SIDECAR_ZK_PATH": "/nerve/services",
    }
    settings = load_settings([], env)
    assert settings.zookeeper == ("zk1:2181", "zk2:2181", "[::1]:2182")
    assert settings.zk_path == "/nerve/services"
    config = tmp_path / "sidecar.yaml"
    config.write_text("source: zookeeper\nzookeeper: [zk1:2181, zk2:2181]\nzk_path: /a/b\n")
    from_file = load_settings(["--config", str(config)], {})
    assert from_file.zookeeper == ("zk1:2181", "zk2:2181") and from_file.zk_path == "/a/b"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--source", "consul"], "--source"),
        (["--zookeeper", "zk1"], "--zookeeper"),
        (["--zookeeper", "zk1:0"], "--zookeeper"),
        (["--zookeeper", "zk1:2181/chroot"], "--zookeeper"),
        (["--zk-path", "relative/path"], "--zk-path"),
        (["--zk-path", "/"], "--zk-path"),
        (["--zk-path", "/a//b"], "--zk-path"),
    ],
)
def test_bad_values_name_the_option(argv: list[str], named: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings([*ZK, *argv], {})
    assert named in str(err.value)


def test_the_services_map_is_read_and_checked_by_the_catalog_rules(tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        "services:\n"
        "  legacy-api:\n"
        "    port: 10100\n"
        "    mode: http\n"
        "    balance: leastconn\n"
        "    groups: [internal]\n"
        "    vhosts: [api.example.com]\n"
        "    health_check: {kind: http, path: /health, interval_ms: 5000, timeout_ms: 2000,"
        " fall: 3}\n"
        "  cache: {port: 10200}\n"
    )
    settings = load_settings([*ZK, "--config", str(config)], {})
    assert settings.services == (
        LocalService("cache", ServiceOptions(10200, 10200)),
        LocalService(
            "legacy-api",
            ServiceOptions(
                10100,
                10100,
                mode="http",
                balance="leastconn",
                groups=("internal",),
                vhosts=("api.example.com",),
                health_check=HealthCheck("http", "/health", 5000, 2000, 3),
            ),
        ),
    )
    public = settings.public_dict()["services"]
    assert public["cache"]["service_port"] == 10200 and public["legacy-api"]["mode"] == "http"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"api": {"mode": "http"}}, "api: 'port' is required"),
        ({"api": {"port": 0}}, "api: port: expected an integer 1..65535"),
        ({"api": {"port": 80, "mode": "udp"}}, "api: mode: expected one of"),
        ({"api": {"port": 80, "prot": 1}}, "api: unknown key 'prot'"),
        ({"api": {"port": 80, "vhosts": ["x.example"]}}, "api: mode: vhosts and sticky"),
        ({"bad name": {"port": 80}}, "service name 'bad name'"),
        ({"api": [80]}, "api: expected a mapping"),
        ([1, 2], "expected a mapping of service name"),
    ],
)
def test_a_bad_services_entry_names_the_service_and_the_key(data: object, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_local_services(data)
    assert message in str(err.value)


def test_a_bad_services_entry_in_the_file_is_a_settings_error(tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text("services:\n  api: {port: seventy}\n")
    with pytest.raises(SettingsError, match="services in the config file: api: port"):
        load_settings([*ZK, "--config", str(config)], {})
