"""deploy/marathon: the sidecar's own Marathon app, the publishers' app and the example apps.

Every app definition under deploy/ must pass ``marathon-bridge validate``; the sidecar's app must
keep the properties its comments and docs promise (one per node, host ports, a health check on
the status server's /livez, a readinessCheck on /readyz that Marathon can reach, a rolling upgrade
Marathon can actually carry out); so must the publishers' (two on different hosts, the
publisher's command in the same image, a health check on its status server); the examples must
call each other through the service ports they declare; and they all deploy on the emulator.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from marathon_bridge.cli import main as cli_main
from marathon_bridge.client import MarathonClient
from marathon_bridge.definitions.load import load_definitions
from marathon_bridge.testing.emulator import MarathonEmulator
from publisher import settings as publisher_settings
from sidecar.desired import build_model
from sidecar.render import render_config
from sidecar.render_settings import RenderSettings
from sidecar.settings import OPTIONS, build_parser, load_settings
from sidecar.sources.marathon.labels import parse_app_labels
from sidecar.sources.marathon.translate import catalog_from_apps

ROOT = Path(__file__).resolve().parents[2]
MARATHON = ROOT / "deploy" / "marathon"
SIDECAR_APP = MARATHON / "marathon-sidecar.json"
SIDECAR_ZOOKEEPER_APP = MARATHON / "marathon-sidecar-zookeeper.json"
PUBLISHER_APP = MARATHON / "marathon-publisher.json"
EXAMPLES = MARATHON / "examples"
APP_FILES = sorted(p for p in MARATHON.rglob("*") if p.suffix in (".json", ".yaml", ".yml"))


def sidecar_app() -> dict[str, Any]:
    app: dict[str, Any] = json.loads(SIDECAR_APP.read_text(encoding="utf-8"))
    return app


def sidecar_zookeeper_app() -> dict[str, Any]:
    app: dict[str, Any] = json.loads(SIDECAR_ZOOKEEPER_APP.read_text(encoding="utf-8"))
    return app


def publisher_app() -> dict[str, Any]:
    app: dict[str, Any] = json.loads(PUBLISHER_APP.read_text(encoding="utf-8"))
    return app


def docker_parameters(app: dict[str, Any]) -> dict[str, str]:
    return {p["key"]: p["value"] for p in app["container"]["docker"]["parameters"]}


def example_apps(path: Path) -> dict[str, dict[str, Any]]:
    return {source.app["id"]: source.app for source in load_definitions(path)}


def service_port(app: dict[str, Any]) -> int:
    if app.get("portDefinitions"):
        return int(app["portDefinitions"][0]["port"])
    return int(app["container"]["portMappings"][0]["servicePort"])


def loopback_port(address: str) -> int:
    """``http://127.0.0.1:10001`` or ``127.0.0.1:10002`` -> the port; only loopback counts."""
    rest = address.split("://", 1)[-1]
    host, _, port = rest.partition(":")
    assert host == "127.0.0.1", f"{address} does not go through the node's sidecar"
    return int(port.split("/", 1)[0])


def test_there_are_app_definitions_to_check() -> None:
    names = {p.name for p in APP_FILES}
    assert {
        "marathon-sidecar.json",
        "marathon-sidecar-zookeeper.json",
        "marathon-publisher.json",
        "shop.yaml",
    } <= names


@pytest.mark.parametrize("path", APP_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_app_definition_passes_marathon_bridge_validate(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["validate", str(path)]) == 0, capsys.readouterr()


# --- the sidecar's own app ---------------------------------------------------------------------


def test_sidecar_runs_once_per_node_on_the_host_network() -> None:
    app = sidecar_app()
    assert ["hostname", "UNIQUE"] in app["constraints"]
    assert app["networks"] == [{"mode": "host"}]
    assert app["requirePorts"] is True
    assert app["container"]["type"] == "DOCKER"
    assert app["container"]["docker"]["privileged"] is False


def port_definition(app: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [p for p in app["portDefinitions"] if p.get("name") == name]
    return found


def test_the_health_check_is_liveness_on_the_loopback_status_server() -> None:
    app = sidecar_app()
    (check,) = app["healthChecks"]
    assert check["protocol"] == "MESOS_HTTP"  # run by the agent, against the node's loopback
    assert check["path"] == "/livez"  # restart a sidecar only when restarting it helps
    status = app["portDefinitions"][check["portIndex"]]
    assert status == port_definition(app, "status")
    settings = load_settings(app["args"], app.get("env", {}))
    assert settings.status_port == status["port"]
    assert settings.status_host == "127.0.0.1"
    assert app["env"]["MARATHON_SIDECAR_STATUS_LISTEN"] == settings.status_listen


def test_the_readiness_check_is_readyz_on_a_listener_marathon_reaches() -> None:
    app = sidecar_app()
    (check,) = app["readinessChecks"]
    assert (check["protocol"], check["path"]) == ("HTTP", "/readyz")
    assert check["httpStatusCodesForReady"] == [200]  # /readyz answers 503 while not ready
    assert check["timeoutSeconds"] < check["intervalSeconds"]
    probes = port_definition(app, check["portName"])
    settings = load_settings(app["args"], app.get("env", {}))
    assert settings.probe_listen == f"0.0.0.0:{probes['port']}"  # Marathon checks from its host
    assert probes["port"] != settings.status_port


def test_every_flag_passed_to_the_sidecar_exists() -> None:
    args = sidecar_app()["args"]
    _, unknown = build_parser().parse_known_args(args)
    assert unknown == []
    flags = [a for a in args if a.startswith("--")]
    assert flags and all(f in {o.flag for o in OPTIONS} for f in flags)


def test_every_environment_variable_is_a_sidecar_setting() -> None:
    known = {option.env_var for option in OPTIONS}
    assert set(sidecar_app().get("env", {})) <= known


def test_sidecar_keeps_its_state_on_the_host() -> None:
    app = sidecar_app()
    settings = load_settings(app["args"], {})
    volumes = {v["containerPath"]: v for v in app["container"]["volumes"]}
    assert settings.state_dir in volumes
    assert volumes[settings.state_dir]["mode"] == "RW"


def test_sidecar_does_not_route_its_own_ports() -> None:
    app = sidecar_app()
    options, problems = parse_app_labels(app)
    assert options is not None and problems == []
    assert all(options.port(i).enabled is False for i in range(len(app["portDefinitions"])))


def marathon_restart_plan(instances: int, strategy: dict[str, float]) -> tuple[int, int]:
    """(tasks killed at once, max tasks during the upgrade), the way Marathon computes them.

    Marathon: minHealthy = ceil(instances * minimumHealthCapacity), maxCapacity =
    floor(instances * (1 + maximumOverCapacity)); when minHealthy == maxCapacity it allows one
    task over capacity instead of killing one (TaskReplaceActor).
    """
    min_healthy = math.ceil(instances * strategy["minimumHealthCapacity"])
    max_capacity = math.floor(instances * (1 + strategy["maximumOverCapacity"]))
    kill_now = max(0, instances - min_healthy)
    if min_healthy == max_capacity:
        max_capacity += 1
    return kill_now, max_capacity


@pytest.mark.parametrize("agents", [5, 10, 50, 200])
def test_upgrade_replaces_a_few_nodes_at_a_time_without_needing_a_spare_node(agents: int) -> None:
    strategy = sidecar_app()["upgradeStrategy"]
    kill_now, max_capacity = marathon_restart_plan(agents, strategy)
    # UNIQUE hostname + a required host port: a task over capacity could never be placed.
    assert max_capacity == agents
    # Some node is replaced at once (otherwise Marathon would wait for a spare node forever)...
    assert kill_now >= 1
    # ...but never every node: most nodes keep their sidecar during the upgrade.
    assert kill_now <= math.ceil(agents * 0.2)


def test_documented_instances_need_at_least_five_agents_with_this_strategy() -> None:
    app = sidecar_app()
    assert app["instances"] >= 5
    # Below five agents 0.8 would leave no task to kill: the docs give smaller values there.
    assert marathon_restart_plan(4, app["upgradeStrategy"]) == (0, 5)


# --- the publishers' app -----------------------------------------------------------------------


def test_publishers_run_twice_on_different_hosts_on_the_host_network() -> None:
    app = publisher_app()
    assert app["instances"] == 2
    assert ["hostname", "UNIQUE"] in app["constraints"]
    assert app["networks"] == [{"mode": "host"}] and app["requirePorts"] is True


def test_publishers_run_the_publishers_command_from_the_sidecars_image() -> None:
    app, sidecar = publisher_app(), sidecar_app()
    assert app["container"]["docker"]["image"] == sidecar["container"]["docker"]["image"]
    parameters = docker_parameters(app)
    scripts = configparser.ConfigParser()
    scripts.read(ROOT / "setup.cfg")
    declared = scripts["options.entry_points"]["console_scripts"]
    assert f"{parameters['entrypoint']} = publisher.main:main" in declared
    # the image's HEALTHCHECK probes the sidecar's status port, not the publisher's
    assert parameters["no-healthcheck"] == "true" and parameters["init"] == "true"


def test_publishers_flags_environment_and_health_check_agree() -> None:
    app = publisher_app()
    parsed, unknown = publisher_settings.TABLE.build_parser().parse_known_args(app["args"])
    assert unknown == [] and vars(parsed)
    settings = publisher_settings.load_settings(app["args"], app["env"])
    assert set(app["env"]) <= {o.env_var for o in publisher_settings.OPTIONS}
    (port_definition,) = app["portDefinitions"]
    (check,) = app["healthChecks"]
    assert (check["protocol"], check["path"], check["portIndex"]) == ("MESOS_HTTP", "/health", 0)
    assert settings.status_port == port_definition["port"]
    assert settings.status_host == "127.0.0.1"
    assert app["env"]["MARATHON_PUBLISHER_STATUS_LISTEN"] == settings.status_listen
    assert settings.zookeeper and settings.zk_path == "/smartstack/services"


def test_publishers_state_directory_is_one_the_image_makes() -> None:
    settings = publisher_settings.load_settings(publisher_app()["args"], {})
    install = (ROOT / "deploy" / "docker" / "install.sh").read_text(encoding="utf-8")
    assert f"PUBLISHER_STATE_DIR={settings.state_dir}\n" in install


def test_publishers_upgrade_one_at_a_time() -> None:
    app = publisher_app()
    kill_now, max_capacity = marathon_restart_plan(app["instances"], app["upgradeStrategy"])
    assert (kill_now, max_capacity) == (1, app["instances"])  # one replaced, one keeps leading


def test_publishers_are_not_routed() -> None:
    options, problems = parse_app_labels(publisher_app())
    assert options is not None and problems == []
    assert options.port(0).enabled is False


def test_publishers_and_sidecars_can_share_a_node() -> None:
    # both apps ask for fixed host ports (requirePorts), and a publisher's host runs a sidecar too
    sidecar_ports = {p["port"] for p in sidecar_app()["portDefinitions"]}
    publisher_ports = {p["port"] for p in publisher_app()["portDefinitions"]}
    assert sidecar_ports and publisher_ports and sidecar_ports.isdisjoint(publisher_ports)


# --- the sidecar's app in ZooKeeper mode --------------------------------------------------------


def test_zookeeper_mode_is_the_same_sidecar_app_with_another_command_line() -> None:
    """Same id, placement, ports, volume and health check: switching modes is a rolling upgrade
    of one app, never two sidecars on a node."""
    zookeeper, direct = sidecar_zookeeper_app(), sidecar_app()
    assert zookeeper["args"] != direct["args"]
    for key in set(direct) | set(zookeeper):
        if key != "args":
            assert zookeeper.get(key) == direct.get(key), key


def test_zookeeper_mode_sidecar_watches_the_publishers_catalog_and_not_marathon() -> None:
    app = sidecar_zookeeper_app()
    _, unknown = build_parser().parse_known_args(app["args"])
    assert unknown == []
    settings = load_settings(app["args"], app.get("env", {}))
    publishers = publisher_settings.load_settings(publisher_app()["args"], {})
    assert settings.source == "zookeeper"
    assert settings.marathon_urls == ()
    assert not any(arg.startswith(("--marathon", "--resync", "--poll")) for arg in app["args"])
    assert settings.zookeeper == publishers.zookeeper
    assert settings.zk_path == publishers.zk_path
    assert settings.state_dir in {v["containerPath"] for v in app["container"]["volumes"]}
    status = next(p for p in app["portDefinitions"] if p["name"] == "status")
    assert (settings.status_host, settings.status_port) == ("127.0.0.1", status["port"])


# --- the example apps --------------------------------------------------------------------------


def test_json_and_yaml_examples_define_the_same_apps() -> None:
    from_json: dict[str, dict[str, Any]] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        from_json.update(example_apps(path))
    assert from_json == example_apps(EXAMPLES / "shop.yaml")


def test_each_tier_calls_the_next_through_its_service_port() -> None:
    apps = example_apps(EXAMPLES / "shop.yaml")
    web, api, db = apps["/shop/web"], apps["/shop/api"], apps["/shop/db"]
    assert loopback_port(web["env"]["API_URL"]) == service_port(api)
    assert loopback_port(api["env"]["DB_ADDR"]) == service_port(db)
    assert f"127.0.0.1:{service_port(db)}" in api["cmd"]
    assert web["dependencies"] == ["/shop/api"] and api["dependencies"] == ["/shop/db"]
    # A caller must share the node's network namespace to reach the node's loopback.
    for caller in (web, api):
        assert caller["networks"] == [{"mode": "host"}]


def test_example_labels_are_all_honored() -> None:
    for app in example_apps(EXAMPLES / "shop.yaml").values():
        options, problems = parse_app_labels(app)
        assert options is not None, app["id"]
        assert problems == [], app["id"]


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """The sidecar's app and the examples deployed on the emulator: (services listing, apps).

    The emulator keeps the sidecar app's readinessCheck but does not run it (Marathon would,
    and wait for /readyz on each new task): its deployment ends once the tasks run.
    """
    with MarathonEmulator() as marathon:
        for path in (SIDECAR_APP, PUBLISHER_APP, EXAMPLES / "shop.yaml"):
            code = cli_main(["deploy", "--marathon", marathon.url, "--timeout", "120", str(path)])
            assert code == 0
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli_main(["services", "--marathon", marathon.url, "--output", "json"]) == 0
        with MarathonClient(marathon.url) as client:
            apps = client.list_apps(embed=["apps.tasks"])
    yield json.loads(out.getvalue()), apps


def test_sidecar_and_examples_deploy_on_the_emulator(
    deployed: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    listing, _ = deployed
    running = {
        (entry["service_port"], entry["app_id"]): len(entry["endpoints"]) for entry in listing
    }
    assert running == {
        (9090, "/infra/marathon-sidecar"): sidecar_app()["instances"],
        (9091, "/infra/marathon-publisher"): publisher_app()["instances"],
        (9092, "/infra/marathon-sidecar"): sidecar_app()["instances"],
        (10000, "/shop/web"): 2,
        (10001, "/shop/api"): 3,
        (10002, "/shop/db"): 1,
    }


def test_examples_render_to_a_config_haproxy_accepts(
    deployed: tuple[list[dict[str, Any]], list[dict[str, Any]]], haproxy_bin: str, tmp_path: Path
) -> None:
    _, apps = deployed
    settings = RenderSettings(
        vhost_port=18080,
        reserved_ports=(9090,),
        admin_socket=str(tmp_path / "admin.sock"),
        server_state_file=str(tmp_path / "server-state"),
    )
    no_names: dict[str, str] = {}  # the emulator's tasks run on 127.0.0.1: nothing to resolve
    model = build_model(catalog_from_apps(apps), settings, no_names.get)
    ports = sorted(frontend.port for frontend in model.frontends)
    assert ports == [10000, 10001, 10002, 18080]  # not 9090, 9091 nor 9092: not routed
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_config(model, settings), encoding="utf-8")
    result = subprocess.run(
        [haproxy_bin, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
