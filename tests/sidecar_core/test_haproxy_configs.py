"""Rendered configs that the real HAProxy accepts: Marathon's examples, 10k apps, hostile input."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from marathon_bridge.services import CONTAINER, network_mode, port_specs
from sidecar.desired import build_model
from sidecar.render import render_config
from sidecar.render_settings import RenderSettings
from sidecar.sources.marathon.labels import LABELS, NOT_HONORED
from sidecar.sources.marathon.translate import catalog_from_apps
from testkit.cluster import AGENTS as CLUSTER_AGENTS
from testkit.cluster import generated_cluster
from testkit.examples import EXAMPLES

from .conftest import bad_lines

pytestmark = pytest.mark.haproxy

AGENTS = {f"agent{i}.example.com": f"10.0.0.{i}" for i in range(1, 4)}


# --- Marathon's example apps, running ---------------------------------------------------------


def example_files(examples_dir: Path) -> list[Path]:
    patterns = (
        "system-test-apps/*.json",
        "*/app-definition*.json",
        "*/GET_v2_apps*.json",
        "*/group.request.json",
    )
    files = {p for pattern in patterns for p in examples_dir.glob(pattern)}
    return sorted(p for p in files if "tasks" not in p.name)


def apps_in(document: Any) -> Iterator[dict[str, Any]]:
    """App definitions in an example: a bare app, {"app": ...}, {"apps": [...]}, nested groups."""
    if not isinstance(document, dict):
        return
    if (
        "cmd" in document
        or "container" in document
        or ("instances" in document and "id" in document and "apps" not in document)
    ):
        yield document
        return
    if isinstance(document.get("app"), dict):
        yield document["app"]
    yield from document.get("apps") or []
    for group in document.get("groups") or []:
        yield from apps_in(group)


def assign_service_ports(app: dict[str, Any], next_port: Iterator[int]) -> None:
    """What Marathon does on write: default host port, and service ports for the 0s."""
    if network_mode(app) == "host" and "portDefinitions" not in app and "ports" not in app:
        app["portDefinitions"] = [{"port": 0, "name": "default", "protocol": "tcp"}]
    for definition in app.get("portDefinitions") or []:
        if not definition.get("port"):
            definition["port"] = next(next_port)
    if isinstance(app.get("ports"), list):
        app["ports"] = [p or next(next_port) for p in app["ports"]]
    container = app.get("container") or {}
    mappings = (
        container.get("portMappings") or (container.get("docker") or {}).get("portMappings") or []
    )
    for mapping in mappings:
        if not mapping.get("servicePort"):
            mapping["servicePort"] = next(next_port)


def running_tasks(app: dict[str, Any], count: int = 3) -> list[dict[str, Any]]:
    specs = port_specs(app)
    container = network_mode(app) == CONTAINER
    host_ports = sum(1 for s in specs if not container or s.host_port is not None)
    checks = app.get("healthChecks") or []
    tasks = []
    for n in range(1, count + 1):
        tasks.append(
            {
                "id": f"{app['id'].strip('/').replace('/', '_')}.instance-{n:04d}._app.1",
                "appId": app["id"],
                "host": f"agent{n}.example.com",
                "ports": [31000 + 10 * n + i for i in range(host_ports)],
                "ipAddresses": [{"ipAddress": f"172.17.0.{n}", "protocol": "IPv4"}],
                "state": "TASK_RUNNING",
                "startedAt": "2021-02-10T12:00:02.456Z",
                "healthCheckResults": [{"alive": True} for _ in checks],
            }
        )
    return tasks


def running_example_apps(path: Path) -> list[dict[str, Any]]:
    ports = iter(range(10000, 20000))
    apps = []
    for app in apps_in(json.loads(path.read_text(encoding="utf-8"))):
        app = copy.deepcopy(app)
        assign_service_ports(app, ports)
        app["tasks"] = running_tasks(app)
        apps.append(app)
    return apps


def test_examples_are_found(examples_dir: Path) -> None:
    assert examples_dir == EXAMPLES
    files = example_files(examples_dir)
    assert len(files) >= 15
    assert sum(len(running_example_apps(p)) for p in files) >= 20


@pytest.mark.parametrize("name", [str(p.relative_to(EXAMPLES)) for p in example_files(EXAMPLES)])
def test_every_example_app_renders_a_config_haproxy_accepts(
    name: str,
    examples_dir: Path,
    tmp_settings: Callable[..., RenderSettings],
    haproxy_check: Callable[[str], Any],
) -> None:
    apps = running_example_apps(examples_dir / name)
    settings = tmp_settings(vhost_port=8080)
    model = build_model(catalog_from_apps(apps), settings, AGENTS.get)
    served = {b.app_id for b in model.backends}
    for app in apps:
        if any(s.service_port > 0 and "tcp" in s.protocol for s in port_specs(app)):
            assert app["id"] in served or any(s.app_id == app["id"] for s in model.skipped)
    for backend in model.backends:
        assert len(backend.servers) == 3, backend.name
    text = render_config(model, settings)
    assert bad_lines(text) == []
    result = haproxy_check(text)
    assert result.returncode == 0, (name, result.stderr)


# --- 10k apps ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_ten_thousand_apps_render_a_config_haproxy_accepts(
    tmp_settings: Callable[..., RenderSettings], haproxy_check: Callable[[str], Any]
) -> None:
    settings = tmp_settings(vhost_port=8080)
    model = build_model(
        catalog_from_apps(generated_cluster(10_000, mixed=True)), settings, CLUSTER_AGENTS.get
    )
    assert len(model.backends) == 10_000 and model.skipped == () and model.problems == ()
    assert sum(len(b.servers) for b in model.backends) == 30_000
    text = render_config(model, settings)
    result = haproxy_check(text)
    assert result.returncode == 0, result.stderr[-2000:]


# --- hostile input -----------------------------------------------------------------------------

LABEL_KEYS = sorted(
    {s.key.replace("{n}", str(n)) for s in LABELS for n in (0, 1)}
    | {k.replace("{n}", "0") for k in NOT_HONORED}
    | {
        "HAPROXY_0_BACKEND_HEAD",
        "HAPROXY_0_FRONTEND_HEAD",
        "HAPROXY_0_BIND_OPTIONS",
        "HAPROXY_9_MODE",
    }
)
nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["http", "tcp", "true", "/api", "a.example.com", "10001", "127.0.0.1", "::1", "source"]
    ),
    st.sampled_from(
        ["x\nfrontend evil\n bind :1", "a # b", '"q"', "{}", "${HOME}", "\x00", "é.com", "/a b"]
    ),
    st.text(min_size=200, max_size=300),
)
labels = st.dictionaries(st.sampled_from(LABEL_KEYS), nasty_text, max_size=8)
task = st.fixed_dictionaries(
    {
        "id": st.one_of(
            st.text(min_size=1, max_size=80), st.sampled_from(["a\nb", "t#1", "x" * 300])
        ),
        "host": st.one_of(
            st.text(max_size=30), st.sampled_from(["agent1.example.com", "10.1.2.3", "::1", "h\n"])
        ),
        "ports": st.one_of(
            st.lists(st.integers(1, 65535), min_size=1, max_size=3),
            st.lists(st.one_of(st.integers(-5, 70000), st.text(max_size=3)), max_size=3),
        ),
        "state": st.sampled_from(["TASK_RUNNING", "TASK_KILLING", "TASK_STAGING"]),
    },
    optional={
        "ipAddresses": st.lists(st.fixed_dictionaries({"ipAddress": nasty_text}), max_size=2)
    },
)
app = st.fixed_dictionaries(
    {
        "id": st.one_of(
            st.text(min_size=1, max_size=60), st.sampled_from(["/a/b", "/a b", "/x#y", "/{}"])
        ),
        "portDefinitions": st.lists(
            st.fixed_dictionaries(
                {
                    "port": st.one_of(st.integers(1, 65535), st.integers(-5, 70000)),
                    "protocol": st.sampled_from(["tcp", "tcp", "tcp", "udp", "tcp,udp", "x"]),
                }
            ),
            min_size=1,
            max_size=2,
        ),
        "labels": labels,
        "tasks": st.lists(task, min_size=1, max_size=3),
    },
    optional={
        "healthChecks": st.lists(
            st.fixed_dictionaries(
                {
                    "protocol": st.sampled_from(["HTTP", "TCP", "COMMAND"]),
                    "path": nasty_text,
                    "portIndex": st.integers(0, 2),
                }
            ),
            max_size=2,
        )
    },
)
clusters = st.lists(app, min_size=1, max_size=6)


def hostile_values(apps: list[dict[str, Any]]) -> set[str]:
    """Generated strings with characters that must never reach the config."""
    values: set[str] = set()
    for a in apps:
        values.add(a["id"])
        values.update(str(v) for v in a["labels"].values())
        for t in a["tasks"]:
            values.update([t["id"], t["host"]])
            values.update(str(ip["ipAddress"]) for ip in t.get("ipAddresses", []))
        values.update(str(c["path"]) for c in a.get("healthChecks", []))
    return {v for v in values if len(v) >= 8 and re.search(r"[\n\r#\"'\\{}$\x00]|[^\x00-\x7f]", v)}


def render_hostile(apps: list[dict[str, Any]], settings: RenderSettings) -> str:
    def resolve(host: str) -> str:
        return "10.9.8.7"  # every host resolves: as many servers as possible reach the file

    previously_in = frozenset(t["id"] for a in apps for t in a["tasks"])
    model = build_model(catalog_from_apps(apps, previously_in), settings, resolve)
    servers = sum(len(b.servers) for b in model.backends)
    event("with servers" if servers else "without servers")
    return render_config(model, settings)


def assert_no_value_leaked(text: str, apps: list[dict[str, Any]]) -> None:
    body = "\n".join(line for line in text.split("\n") if not line.startswith("#"))
    for value in hostile_values(apps):
        assert value not in body


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(apps=clusters)
def test_hostile_input_only_produces_allowed_lines(
    apps: list[dict[str, Any]], tmp_settings: Callable[..., RenderSettings]
) -> None:
    settings = tmp_settings(vhost_port=8080, bind_addrs=("127.0.0.1", "::1"))
    text = render_hostile(apps, settings)
    assert bad_lines(text) == []
    assert_no_value_leaked(text, apps)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(apps=clusters)
def test_hostile_input_gives_configs_haproxy_accepts(
    apps: list[dict[str, Any]],
    tmp_settings: Callable[..., RenderSettings],
    haproxy_check: Callable[[str], Any],
) -> None:
    settings = tmp_settings(vhost_port=8080)
    text = render_hostile(apps, settings)
    result = haproxy_check(text)
    assert result.returncode == 0, (result.stderr, text)
