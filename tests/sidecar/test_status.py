"""The status server: health rules, /health, /metrics, /config, /services and the HTML page."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.catalog import OUT, READY, Catalog, Instance, Problem, Service, ServiceOptions, Skipped
from sidecar.haproxy_model import BackendSpec, HAProxyModel, ServerSpec
from sidecar.metrics import SidecarMetrics
from sidecar.services_view import services_view
from sidecar.status import HealthFacts, StatusBoard, StatusServer, evaluate_health
from sidecar.status_page import Listing, render_page
from testkit.http import http_get


def facts(**overrides: Any) -> HealthFacts:
    base: dict[str, Any] = {
        "now": 100.0,
        "started_at": 0.0,
        "haproxy_required": True,
        "haproxy_running": True,
        "last_sync": 95.0,
        "loaded_from_disk": None,
        "max_sync_age": 60.0,
    }
    base.update(overrides)
    return HealthFacts(**base)


def test_health_ok_when_haproxy_runs_and_sync_is_recent() -> None:
    report = evaluate_health(facts())
    assert report.status == "ok" and report.http_status == 200 and report.reasons == ()


def test_health_failing_without_haproxy() -> None:
    report = evaluate_health(facts(haproxy_running=False))
    assert report.status == "failing" and report.http_status == 503
    assert "HAProxy is not running" in report.reasons


def test_health_says_starting_while_the_sidecar_starts_haproxy() -> None:
    report = evaluate_health(facts(haproxy_running=False, haproxy_starting=True))
    assert report.status == "failing" and report.reasons == ("HAProxy is starting",)


def test_the_board_goes_from_starting_to_running() -> None:
    board = StatusBoard(SidecarMetrics(), max_sync_age=60)
    board.record_sync()
    assert board.health().reasons == ("HAProxy is not running",)
    board.set_haproxy_starting()
    assert board.health().reasons == ("HAProxy is starting",)
    board.set_haproxy_running(True)
    assert board.health().status == "ok"


def test_health_failing_when_sync_is_old_or_missing() -> None:
    old = evaluate_health(facts(last_sync=10.0))
    assert old.status == "failing" and "last Marathon sync 90 s ago" in old.reasons[0]
    never = evaluate_health(facts(last_sync=None))
    assert never.status == "failing" and never.reasons == ("no Marathon snapshot yet",)


def test_health_degraded_while_serving_state_from_disk() -> None:
    report = evaluate_health(
        facts(now=30.0, last_sync=None, loaded_from_disk="2026-01-01T00:00:00Z")
    )
    assert report.status == "degraded" and report.http_status == 200
    assert report.reasons == ("serving last known state from 2026-01-01T00:00:00Z",)
    too_long = evaluate_health(
        facts(now=1000.0, last_sync=None, loaded_from_disk="2026-01-01T00:00:00Z")
    )
    assert too_long.status == "failing"


def test_health_degraded_with_problems() -> None:
    report = evaluate_health(facts(problems=("state directory: cannot write",)))
    assert report.status == "degraded" and report.reasons == ("state directory: cannot write",)


def sample_view() -> tuple[Catalog, HAProxyModel]:
    def instance(task_id: str, port: int, state: str, healthy: bool, reason: str) -> Instance:
        return Instance(
            task_id, "127.0.0.1", port, state, reason, app_id="/web", status="TASK_RUNNING",
            healthy=healthy,
        )  # fmt: skip

    service = Service(
        "/web:0",
        "/web",
        0,
        ServiceOptions(10001, 10001, mode="http"),
        (
            instance("web.a", 31001, READY, True, "running and healthy"),
            instance("web.b", 31002, OUT, False, "health check failing"),
        ),
    )
    backend = BackendSpec(
        name="web_10001",
        app_id="/web",
        service_port=10001,
        mode="http",
        balance="roundrobin",
        servers=(ServerSpec(name="web_a", address="127.0.0.1", port=31001, task_id="web.a"),),
        service_keys=("/web:0",),
    )
    model = HAProxyModel(
        backends=(backend,),
        skipped=(Skipped(app_id="/bad<script>", reason="bad label HAPROXY_0_PORT"),),
        problems=(Problem("/web", "HAPROXY_0_BALANCE", "not a balance algorithm"),),
    )
    return Catalog({service.key: service}), model


def test_services_view_lists_tasks_in_and_out() -> None:
    state, model = sample_view()
    view = services_view(state, model)
    assert len(view) == 1
    service = view[0]
    assert (service["service_port"], service["app_id"], service["servers_in"]) == (10001, "/web", 1)
    by_id = {e["task_id"]: e for e in service["endpoints"]}
    assert by_id["web.a"]["in_rotation"] and by_id["web.a"]["healthy"] is True
    assert not by_id["web.b"]["in_rotation"] and by_id["web.b"]["healthy"] is False
    assert by_id["web.b"]["address"] == "127.0.0.1" and by_id["web.b"]["port"] == 31002
    assert by_id["web.b"]["reason"] == "health check failing"
    assert by_id["web.b"]["server_state"] == "out" and by_id["web.a"]["server_state"] == "ready"


def test_page_escapes_everything() -> None:
    state, model = sample_view()
    report = evaluate_health(facts(problems=("<b>boom</b>",)))
    skipped = [{"app_id": "/bad<script>", "port_index": None, "reason": "x"}]
    listing = Listing(services_view(state, model), total=1, matched=1)
    page = render_page(report, {"last_sync": None, "reloads": 2}, listing, skipped)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>boom</b>" not in page and "&lt;b&gt;boom&lt;/b&gt;" in page
    assert 'http-equiv="refresh"' in page and "10001" in page and "web.a" in page


@pytest.fixture
def served() -> Any:
    metrics = SidecarMetrics()
    board = StatusBoard(metrics, max_sync_age=60)
    server = StatusServer(board, "127.0.0.1", 0).start()
    yield board, f"http://127.0.0.1:{server.port}"
    server.stop()


def test_endpoints(served: Any) -> None:
    board, base = served
    status, body, _ = http_get(base + "/health")
    assert status == 503 and json.loads(body)["status"] == "failing"

    state, model = sample_view()
    board.set_haproxy_running(True, "adopted")
    board.record_sync()
    board.set_view(state, model, "global\n  daemon\n")
    board.metrics.events.labels(type="status_update_event").inc()

    status, body, _ = http_get(base + "/health")
    assert status == 200 and json.loads(body) == {
        "status": "ok",
        "reasons": [],
        "sync_age_seconds": json.loads(body)["sync_age_seconds"],
        "haproxy_origin": "adopted",
    }
    status, body, headers = http_get(base + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'marathon_sidecar_haproxy_origin{origin="adopted"} 1.0' in body
    assert 'marathon_sidecar_haproxy_origin{origin="started"} 0.0' in body
    assert 'marathon_sidecar_marathon_events_total{type="status_update_event"} 1.0' in body
    assert "marathon_sidecar_sync_age_seconds" in body
    status, body, _ = http_get(base + "/config")
    assert (status, body) == (200, "global\n  daemon\n")
    status, body, _ = http_get(base + "/services")
    data = json.loads(body)
    assert data["services"][0]["service_port"] == 10001
    assert data["skipped"][0]["reason"] == "bad label HAPROXY_0_PORT"
    assert data["skipped"][1] == {
        "kind": "label", "app_id": "/web", "port_index": None, "task_id": "",
        "label": "HAPROXY_0_BALANCE", "reason": "not a balance algorithm",
    }  # fmt: skip
    status, body, headers = http_get(base + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "/web" in body and "&lt;script&gt;" in body and "label HAPROXY_0_BALANCE" in body
    status, body, _ = http_get(base + "/static/status.css")
    assert status == 200 and ".health" in body
    assert http_get(base + "/nope")[0] == 404

    board.set_problem("state_dir", "cannot write /x: No space left on device")
    status, body, _ = http_get(base + "/health")
    assert status == 200 and json.loads(body)["status"] == "degraded"
    assert "No space left" in json.loads(body)["reasons"][0]


def test_each_board_has_its_own_registry() -> None:
    first, second = SidecarMetrics(), SidecarMetrics()
    first.reloads.inc()
    assert b"marathon_sidecar_haproxy_reloads_total 1.0" in first.render()
    assert b"marathon_sidecar_haproxy_reloads_total 0.0" in second.render()


def test_a_deployment_group_backend_lists_the_tasks_of_every_member_app() -> None:
    def service(app_id: str, port: int, task_id: str, host_port: int) -> Service:
        ready = Instance(task_id, "127.0.0.1", host_port, READY, "running", app_id=app_id)
        return Service(f"{app_id}:0", app_id, 0, ServiceOptions(port, 10000), (ready,))

    blue = service("/web-blue", 10000, "web-blue.t1", 31001)
    green = service("/web-green", 10010, "web-green.t2", 31002)
    servers = (
        ServerSpec("s1", "127.0.0.1", 31001, "web-blue.t1"),
        ServerSpec("s2", "127.0.0.1", 31002, "web-green.t2"),
    )
    model = HAProxyModel(
        backends=(
            BackendSpec(
                "be_dg_web_10000", "/web-blue", 10000, "http", "roundrobin", servers,
                service_keys=(blue.key, green.key),
            ),
        )
    )  # fmt: skip
    (view,) = services_view(Catalog({blue.key: blue, green.key: green}), model)
    assert [e["task_id"] for e in view["endpoints"]] == ["web-blue.t1", "web-green.t2"]
    assert all(e["in_rotation"] for e in view["endpoints"])


def test_the_haproxy_origin_is_shown_only_while_haproxy_runs() -> None:
    board = StatusBoard(SidecarMetrics(), max_sync_age=60)
    board.set_haproxy_running(True, "started")
    assert board.health().as_dict()["haproxy_origin"] == "started"
    origin = board.metrics.registry.get_sample_value
    assert origin("marathon_sidecar_haproxy_origin", {"origin": "started"}) == 1.0
    board.set_haproxy_running(False, "adopted")  # the adopted master died
    assert board.health().as_dict()["haproxy_origin"] is None
    for known in ("started", "adopted", "external"):
        assert origin("marathon_sidecar_haproxy_origin", {"origin": known}) == 0.0
