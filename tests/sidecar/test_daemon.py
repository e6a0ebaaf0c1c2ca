"""The daemon loop with a fake Marathon client, a fake applier and a fake HAProxy."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from marathon_bridge.errors import Unavailable
from sidecar.apply import Applier
from sidecar.apply.results import ApplyCounters, ApplyResult
from sidecar.catalog import Skipped
from sidecar.daemon import Daemon
from sidecar.haproxy.runtime import ServerState
from sidecar.haproxy_model import HAProxyModel, listener_signature
from sidecar.main import build_daemon, make_applier, make_render_settings
from sidecar.settings import Settings
from sidecar.sources.marathon.translate import catalog_from_apps
from testkit import free_port, wait_until
from testkit.clock import FakeClock
from testkit.fakes import FakeHAProxy, FakeMarathonClient
from testkit.http import http_get


def app(app_id: str, port: int, *task_ids: str) -> dict[str, Any]:
    return {
        "id": app_id,
        "portDefinitions": [{"port": port, "protocol": "tcp"}],
        "tasks": [
            {
                "id": t,
                "appId": app_id,
                "host": "127.0.0.1",
                "ports": [31000 + i],
                "state": "TASK_RUNNING",
                "startedAt": "2026-01-01T00:00:00.000Z",
            }
            for i, t in enumerate(task_ids)
        ],
    }


class NoServers:
    def show_servers_state(self, backend: Optional[str] = None) -> list[ServerState]:
        return []


@dataclass
class FakeApplier:
    models: list[HAProxyModel] = field(default_factory=list)
    fail: bool = False
    ticks: int = 0
    taken_ports: set[int] = field(default_factory=set)  # apps on these ports are left out
    lock: threading.Lock = field(default_factory=threading.Lock)
    counters: ApplyCounters = field(default_factory=ApplyCounters)
    runtime: NoServers = field(default_factory=NoServers)
    on_started: Optional[Callable[[], None]] = None

    @property
    def running_config(self) -> Optional[HAProxyModel]:
        return None

    def apply(self, model: HAProxyModel) -> ApplyResult:
        with self.lock:
            if self.fail:
                return ApplyResult(ok=False, action="failed", error="haproxy -c failed")
            previous = self.models[-1] if self.models else None
            self.models.append(model)
            taken = sorted(self.taken_ports & ports(model))
        reload = previous is None or listener_signature(previous) != listener_signature(model)
        skipped = tuple(
            Skipped(b.app_id, f"127.0.0.1:{b.service_port} is already in use")
            for b in model.backends
            if b.service_port in taken
        )
        return ApplyResult(
            ok=True,
            action="reload" if reload else "runtime",
            reloaded=reload,
            runtime_ops=0 if reload else 1,
            config_text=f"# {len(model.backends)} backends\n",
            skipped=skipped,
            waiting_for_ports=tuple(f"127.0.0.1:{p} is already in use" for p in taken),
        )

    def tick(self) -> int:
        self.ticks += 1
        return 0

    def close(self) -> None:
        pass

    def count(self) -> int:
        with self.lock:
            return len(self.models)

    def last(self) -> HAProxyModel:
        with self.lock:
            return self.models[-1]


def ports(model: HAProxyModel) -> set[int]:
    return {b.service_port for b in model.backends}


def servers(model: HAProxyModel) -> set[str]:
    return {s.task_id for b in model.backends for s in b.servers}


@pytest.fixture
def run_daemon(tmp_path: Path) -> Any:
    started: list[tuple[Daemon, threading.Thread]] = []

    def start(
        apps: Any,
        state_dir: Optional[Path] = None,
        startup_wait: float = 5.0,
        clock: Optional[Callable[[], float]] = None,
        **overrides: Any,
    ) -> tuple[Daemon, FakeMarathonClient, FakeApplier, FakeHAProxy]:
        values: dict[str, Any] = {
            "marathon_urls": ("http://127.0.0.1:1",),
            "state_dir": str(state_dir or tmp_path),
            "status_host": "127.0.0.1",
            "status_port": 0,
            "poll": True,
            "poll_interval": 0.1,
            "debounce": 0.02,
            "min_reload_interval": 0.5,
            "empty_confirm": 0.3,
        }
        values.update(overrides)
        client, applier, haproxy = (
            FakeMarathonClient(apps, streams=False),
            FakeApplier(),
            FakeHAProxy(),
        )
        daemon = build_daemon(
            Settings(**values),
            marathon_client=client,
            applier=applier,
            haproxy=haproxy,
            startup_wait=startup_wait,
            **({"clock": clock} if clock is not None else {}),
        )
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()
        started.append((daemon, thread))
        return daemon, client, applier, haproxy

    yield start
    for daemon, thread in started:
        daemon.stop()
        thread.join(10)
        assert not thread.is_alive()


def test_first_snapshot_is_applied_and_saved(run_daemon: Any, tmp_path: Path) -> None:
    daemon, _client, applier, _haproxy = run_daemon([app("/web", 10001, "web.1", "web.2")])
    wait_until(lambda: applier.count() >= 1)
    assert ports(applier.last()) == {10001}
    assert servers(applier.last()) == {"web.1", "web.2"}
    wait_until(lambda: (tmp_path / "last-applied.json").exists())
    saved = json.loads((tmp_path / "last-applied.json").read_text())
    assert [s["app_id"] for s in saved["catalog"]["services"]] == ["/web"]
    wait_until(lambda: daemon.board.health().status == "ok")
    assert daemon.catalog is not None
    assert daemon.catalog.in_rotation() == frozenset({"web.1", "web.2"})


def test_server_changes_apply_at_once_but_reloads_keep_the_minimum_interval(
    run_daemon: Any,
) -> None:
    daemon, client, applier, _ = run_daemon([app("/web", 10001, "web.1")], min_reload_interval=3.0)
    wait_until(lambda: applier.count() >= 1)
    client.apps = [app("/web", 10001, "web.1", "web.2")]
    wait_until(lambda: servers(applier.last()) == {"web.1", "web.2"})  # runtime-only: quick
    first_reload = daemon._last_reload_at
    assert first_reload is not None
    client.apps = [app("/web", 10001, "web.1", "web.2"), app("/api", 10002, "api.1")]
    wait_until(lambda: ports(applier.last()) == {10001, 10002}, timeout=20)
    assert daemon._last_reload_at is not None
    assert daemon._last_reload_at - first_reload >= 3.0


def test_failed_apply_keeps_state_and_reports(run_daemon: Any) -> None:
    daemon, client, applier, _ = run_daemon([app("/web", 10001, "web.1")])
    wait_until(lambda: applier.count() >= 1)
    applier.fail = True
    client.apps = [app("/web", 10001, "web.1", "web.2")]
    wait_until(lambda: daemon.board.health().status == "degraded")
    assert "haproxy -c failed" in daemon.board.health().reasons[0]
    assert daemon.model is not None and servers(daemon.model) == {"web.1"}
    applier.fail = False
    wait_until(lambda: daemon.board.health().status == "ok")


def test_marathon_unreachable_at_start_serves_the_saved_state(
    run_daemon: Any, tmp_path: Path
) -> None:
    daemon, _client, _applier, _ = run_daemon([app("/web", 10001, "web.1")])
    wait_until(lambda: (tmp_path / "last-applied.json").exists())
    daemon.stop()

    second, client2, applier2, _ = run_daemon(Unavailable("connection refused"), startup_wait=0.3)
    wait_until(lambda: applier2.count() >= 1)
    assert servers(applier2.last()) == {"web.1"}
    report = second.board.health()
    assert report.status == "degraded"
    assert report.reasons[0].startswith("serving last known state from ")
    client2.apps = [app("/web", 10001, "web.1", "web.2")]
    wait_until(lambda: servers(applier2.last()) == {"web.1", "web.2"})
    wait_until(lambda: second.board.health().status == "ok")


def test_unwritable_state_dir_keeps_serving(run_daemon: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    daemon, _client, applier, _ = run_daemon([app("/web", 10001, "web.1")], state_dir=blocker)
    wait_until(lambda: applier.count() >= 1)
    wait_until(lambda: any("not saved" in r for r in daemon.board.health().reasons))

    def serving_and_saying_why() -> bool:  # HAProxy's running flag may land a moment later
        health = daemon.board.health()
        return health.http_status == 200 and any("not saved" in r for r in health.reasons)

    wait_until(serving_and_saying_why)
    assert daemon.board.health().status == "degraded"
    assert (
        daemon.metrics.registry.get_sample_value("marathon_sidecar_state_write_errors_total") >= 1
    )


def test_stop_stops_haproxy_and_returns(run_daemon: Any) -> None:
    daemon, _client, applier, haproxy = run_daemon([app("/web", 10001, "web.1")])
    wait_until(lambda: applier.count() >= 1)
    daemon.stop()
    wait_until(lambda: haproxy.stopped)


def test_render_settings_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        marathon_urls=("http://m",),
        state_dir=str(tmp_path),
        binds=("127.0.0.2",),
        group="internal",
        status_port=9999,
        drain_timeout=12,
    )
    rs = make_render_settings(settings)
    assert rs.bind_addrs == ("127.0.0.2",) and rs.groups == ("internal",)
    assert rs.reserved_ports == (9999,) and rs.hard_stop_after == "12s"
    assert rs.admin_socket.startswith(str(tmp_path))


def test_credentials_never_reach_the_status_server(tmp_path: Path) -> None:
    secret = "url-pa55word"
    dead = free_port()
    values: dict[str, Any] = {
        "marathon_urls": (f"http://bob:{secret}@127.0.0.1:{dead}",),
        "state_dir": str(tmp_path), "status_host": "127.0.0.1", "status_port": 0,
        "poll": True, "poll_interval": 0.2, "marathon_timeout": 1.0,
    }  # fmt: skip
    daemon = build_daemon(Settings(**values), applier=FakeApplier(), haproxy=FakeHAProxy(),
                          startup_wait=0.2)  # fmt: skip
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: daemon.status_server is not None)
        base = f"http://127.0.0.1:{daemon.status_server.port}"  # type: ignore[union-attr]
        wait_until(lambda: "Marathon" in http_get(base + "/health")[1], timeout=30)
        for path in ("/health", "/config", "/services", "/metrics", "/"):
            assert secret not in http_get(base + path)[1], path
        assert secret not in repr(daemon.source)
    finally:
        daemon.stop()
        thread.join(10)


def test_a_custom_template_is_used(tmp_path: Path) -> None:
    template = tmp_path / "custom.j2"
    template.write_text("# custom template: {{ backends | length }} backends\n")
    settings = Settings(
        marathon_urls=("http://m",), state_dir=str(tmp_path), template=str(template)
    )
    applier = make_applier(settings, FakeHAProxy(), make_render_settings(settings))
    assert isinstance(applier, Applier)
    assert applier.render(HAProxyModel()).startswith("# custom template: 0 backends")


def test_a_bug_in_a_step_does_not_stop_the_daemon(run_daemon: Any) -> None:
    daemon, client, applier, _ = run_daemon([app("/web", 10001, "web.1")])
    wait_until(lambda: applier.count() >= 1)
    original = daemon._build
    calls = {"n": 0}

    def flaky_build(state: Any) -> HAProxyModel:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("bug in the model builder")
        return original(state)

    daemon._build = flaky_build  # type: ignore[method-assign]
    client.apps = [app("/web", 10001, "web.1", "web.2")]
    wait_until(lambda: calls["n"] >= 1)
    wait_until(lambda: servers(applier.last()) == {"web.1", "web.2"}, timeout=30)  # retried
    assert daemon.metrics.registry.get_sample_value("marathon_sidecar_apply_failures_total") >= 1


def test_apps_left_out_for_a_taken_port_are_tried_again(run_daemon: Any) -> None:
    daemon, _client, applier, _ = run_daemon([app("/web", 10001, "web.1")], poll_interval=100)
    wait_until(lambda: applier.count() >= 1)
    with applier.lock:
        applier.taken_ports.add(10002)
    daemon.catalog_changed(
        catalog_from_apps([app("/web", 10001, "web.1"), app("/api", 10002, "api.1")]), "new app"
    )
    wait_until(lambda: "/api (127.0.0.1:10002 is already in use)" in " ".join(
        daemon.board.health().reasons))  # fmt: skip
    assert daemon.board.health().status == "degraded"
    seen = applier.count()
    wait_until(lambda: applier.count() > seen, timeout=30)  # tried again, Marathon said nothing
    with applier.lock:
        applier.taken_ports.clear()
    wait_until(lambda: daemon.board.health().status == "ok", timeout=30)
    settled = applier.count()
    assert ports(applier.last()) == {10001, 10002}
    wait_until(lambda: applier.ticks >= 4)  # a few ticks later: nothing left to try again
    assert applier.count() == settled


@pytest.fixture
def stepped(tmp_path: Path) -> Any:
    """A daemon driven step by step from the test (no threads) on a frozen clock."""
    clock = FakeClock()
    settings = Settings(
        marathon_urls=("http://127.0.0.1:1",), state_dir=str(tmp_path), status_port=0,
        debounce=0.5, min_reload_interval=3.0,
    )  # fmt: skip
    applier = FakeApplier()
    daemon = build_daemon(
        settings, marathon_client=FakeMarathonClient([], streams=False), applier=applier,
        haproxy=FakeHAProxy(), clock=clock,
    )  # fmt: skip
    daemon.apply_catalog(catalog_from_apps([app("/web", 10001, "web.1")]), "start")
    clock.now += 10.0  # quiet
    return daemon, applier, clock


def test_a_lone_server_change_is_applied_at_once_and_a_burst_waits(stepped: Any) -> None:
    daemon, applier, clock = stepped
    daemon.catalog_changed(catalog_from_apps([app("/web", 10001, "web.1", "web.2")]), "lone")
    assert daemon.apply_due_at() == clock.now  # nothing taken lately: due at once
    daemon.apply_pending()
    assert servers(applier.last()) == {"web.1", "web.2"} and applier.count() == 2
    three = app("/web", 10001, "web.1", "web.2", "web.3")
    daemon.catalog_changed(catalog_from_apps([three]), "burst")
    daemon.catalog_changed(catalog_from_apps([{**three, "id": "/web"}]), "burst")
    assert daemon.apply_due_at() == clock.now + 0.5  # one debounce after the last one taken


def test_a_change_that_needs_a_reload_waits_for_its_burst_and_the_reload_interval(
    stepped: Any,
) -> None:
    daemon, applier, clock = stepped
    web = app("/web", 10001, "web.1")
    daemon.catalog_changed(catalog_from_apps([web, app("/api", 10002, "api.1")]), "new port")
    daemon.apply_pending()  # leading, but a reload: back to the trailing edge
    assert applier.count() == 1 and daemon.apply_due_at() == clock.now + 0.5
    clock.now += 0.5
    daemon.apply_pending()
    assert ports(applier.last()) == {10001, 10002} and applier.count() == 2
    clock.now += 2.0
    daemon.catalog_changed(catalog_from_apps([web]), "port gone")  # 2 s after the reload
    daemon.apply_pending()  # leading and a reload: waits for its burst
    clock.now += 0.5
    daemon.apply_pending()  # the burst is over, but the last reload was 2.5 s ago: held
    assert applier.count() == 2 and daemon.apply_due_at() == clock.now + 0.5
    clock.now += 0.5
    daemon.apply_pending()
    assert ports(applier.last()) == {10001} and applier.count() == 3


def test_a_change_haproxy_does_not_see_does_not_end_the_quiet_period(stepped: Any) -> None:
    daemon, applier, clock = stepped
    daemon.catalog_changed(catalog_from_apps([app("/web", 10001, "web.1")]), "no-op event")
    daemon.apply_pending()
    assert applier.count() == 1  # nothing new for HAProxy
    clock.now += 0.1
    daemon.catalog_changed(catalog_from_apps([app("/web", 10001, "web.1", "web.2")]), "a join")
    assert daemon.apply_due_at() == clock.now  # the no-op does not count


def test_label_problems_are_counted_and_logged_once(run_daemon: Any, caplog: Any) -> None:
    bad = app("/web", 10001, "web.1")
    bad["labels"] = {"HAPROXY_0_BALANCE": "roundrobin\n  server evil 1.2.3.4:80"}
    caplog.set_level("WARNING", logger="sidecar.daemon")
    daemon, _client, applier, _ = run_daemon([bad])
    wait_until(lambda: applier.count() >= 1)
    metric = "marathon_sidecar_label_problems"
    wait_until(lambda: (daemon.metrics.registry.get_sample_value(metric) or 0) >= 1)
    logged = [r for r in caplog.records if r.getMessage() == "label not honored"]
    assert len(logged) == 1
    assert logged[0].label == "HAPROXY_0_BALANCE" and "evil" not in logged[0].reason


def test_the_time_from_a_change_to_haproxy_is_observed_from_the_burst_start(stepped: Any) -> None:
    daemon, _applier, clock = stepped
    metric = "marathon_sidecar_change_to_haproxy_seconds"
    sample = daemon.metrics.registry.get_sample_value
    web = app("/web", 10001, "web.1", "web.2")
    daemon.catalog_changed(catalog_from_apps([web]), "first of the burst")
    clock.now += 0.3
    daemon.catalog_changed(catalog_from_apps([{**web, "id": "/web"}]), "second")
    daemon.apply_pending()
    assert sample(metric + "_count") == 1
    assert sample(metric + "_bucket", {"le": "0.25"}) == 0  # 0.3 s: from the burst's first
    assert sample(metric + "_bucket", {"le": "0.5"}) == 1
