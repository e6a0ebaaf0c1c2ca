"""The liveness and readiness rules (pure) and the board that feeds them; /livez and /readyz."""

from __future__ import annotations

import json
from typing import Any

from sidecar.catalog import Catalog
from sidecar.haproxy_model import HAProxyModel
from sidecar.metrics import SidecarMetrics
from sidecar.probes import ProbeFacts, evaluate_liveness, evaluate_readiness
from sidecar.status import StatusBoard, StatusServer
from testkit.http import http_get


def facts(**overrides: Any) -> ProbeFacts:
    """A sidecar that runs HAProxy on a fresh catalog, at t=100 s."""
    base: dict[str, Any] = {
        "now": 100.0,
        "loop_beat": 99.5,
        "haproxy_required": True,
        "haproxy_supervised": True,
        "haproxy_running": True,
        "haproxy_starting": False,
        "haproxy_down_since": None,
        "started_at": 0.0,
        "catalog_served_at": 5.0,
        "last_sync": 98.0,
        "loaded_from_disk": None,
        "apply_failing_since": None,
        "max_sync_age": 60.0,
        "loop_stall_limit": 120.0,
        "haproxy_grace": 30.0,
    }
    base.update(overrides)
    return ProbeFacts(**base)


# --- liveness ------------------------------------------------------------------------------------


def test_live_and_ready_when_all_is_well() -> None:
    for report in (evaluate_liveness(facts()), evaluate_readiness(facts())):
        assert report.ok and report.http_status == 200 and report.reasons == ()
        assert report.as_dict()["status"] == "ok"


def test_a_sidecar_that_lost_its_source_is_live_but_not_ready() -> None:
    lost = facts(last_sync=10.0)  # 90 s without contact, limit 60
    assert evaluate_liveness(lost).ok and evaluate_liveness(lost).reasons == ()
    ready = evaluate_readiness(lost)
    assert not ready.ok and ready.http_status == 503
    assert ready.reasons == ("last Marathon contact 90 s ago (limit 60 s)",)
    assert ready.as_dict()["sync_age_seconds"] == 90.0


def test_a_stalled_daemon_loop_is_not_live() -> None:
    report = evaluate_liveness(facts(now=500.0, loop_beat=300.0, last_sync=499.0))
    assert not report.ok
    assert report.reasons == ("the daemon loop has not run for 200 s (limit 120 s)",)
    assert report.as_dict()["loop_age_seconds"] == 200.0


def test_haproxy_down_is_live_within_the_grace_and_not_after() -> None:
    restarting = evaluate_liveness(facts(haproxy_running=False, haproxy_down_since=90.0))
    assert restarting.ok
    assert restarting.reasons == ("HAProxy is starting (10 s, grace 30 s)",)
    dead = evaluate_liveness(facts(haproxy_running=False, haproxy_down_since=40.0))
    assert not dead.ok
    assert dead.reasons == ("HAProxy's master has not run for 60 s (grace 30 s)",)


def test_before_the_first_start_attempt_the_sidecar_is_live() -> None:
    report = evaluate_liveness(facts(haproxy_running=False, haproxy_down_since=None))
    assert report.ok
    assert report.reasons == ("HAProxy not started yet: waiting for the first catalog",)


def test_an_haproxy_run_by_someone_else_is_not_the_sidecars_to_restart() -> None:
    external = facts(haproxy_supervised=False, haproxy_running=False, haproxy_down_since=0.0)
    live = evaluate_liveness(external)
    assert live.ok and live.reasons == ("HAProxy (run outside the sidecar) is not running",)
    assert not evaluate_readiness(external).ok


def test_once_needs_no_haproxy() -> None:
    assert evaluate_liveness(facts(haproxy_required=False, haproxy_running=False)).ok


# --- readiness -----------------------------------------------------------------------------------


def test_not_ready_while_haproxy_does_not_run() -> None:
    report = evaluate_readiness(facts(haproxy_running=False, haproxy_down_since=99.0))
    assert not report.ok and report.reasons == ("HAProxy is not running",)
    starting = evaluate_readiness(facts(haproxy_running=False, haproxy_starting=True))
    assert not starting.ok and starting.reasons == ("HAProxy is starting",)


def test_not_ready_before_the_first_catalog_is_applied() -> None:
    synced = evaluate_readiness(facts(catalog_served_at=None))
    assert not synced.ok
    assert synced.reasons == ("no catalog applied yet (waiting for Marathon)",)
    nothing = evaluate_readiness(facts(catalog_served_at=None, last_sync=None, now=3.0))
    assert nothing.reasons == ("no catalog applied yet (waiting for Marathon)",)


def test_the_saved_catalog_makes_the_sidecar_ready_until_the_max_age_since_start() -> None:
    saved = {"last_sync": None, "loaded_from_disk": "2026-01-01T00:00:00Z"}
    early = evaluate_readiness(facts(now=30.0, **saved))
    assert early.ok
    assert early.reasons == ("serving the saved catalog from 2026-01-01T00:00:00Z",)
    late = evaluate_readiness(facts(now=61.0, **saved))
    assert not late.ok
    assert late.reasons[0] == "no Marathon contact for 61 s since start (limit 60 s)"


def test_applies_failing_for_longer_than_the_max_age_make_the_sidecar_unready() -> None:
    recent = evaluate_readiness(facts(apply_failing_since=80.0))
    assert recent.ok
    assert recent.reasons == ("applying the newest catalog has failed for 20 s",)
    old = evaluate_readiness(facts(apply_failing_since=20.0))
    assert not old.ok
    assert old.reasons == ("applying the newest catalog has failed for 80 s (limit 60 s)",)


def test_the_source_is_named_in_the_reasons() -> None:
    report = evaluate_readiness(facts(source="ZooKeeper", last_sync=1.0))
    assert report.reasons == ("last ZooKeeper contact 99 s ago (limit 60 s)",)


# --- the board -----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def board_with(clock: Clock, **kwargs: Any) -> StatusBoard:
    return StatusBoard(SidecarMetrics(), max_sync_age=60, clock=clock, **kwargs)


def test_the_board_follows_a_start_a_death_and_a_restart() -> None:
    clock = Clock()
    board = board_with(clock)
    board.haproxy_grace = 5.0
    board.set_haproxy_running(False)  # the daemon's first look: nothing runs yet
    assert board.liveness().ok  # waiting for the first catalog
    board.record_sync()
    board.set_haproxy_starting()
    clock.now += 6
    board.beat()
    assert not board.liveness().ok  # the first start takes longer than the grace
    board.set_haproxy_running(True, "started")
    assert board.liveness().ok and board.liveness().as_dict()["haproxy_origin"] == "started"
    assert board.readiness().reasons == ("no catalog applied yet (waiting for Marathon)",)
    board.record_catalog_served()
    assert board.readiness().ok
    board.set_haproxy_starting()  # supervision found the master dead: a restart follows
    assert board.liveness().ok and not board.readiness().ok
    assert board.health().reasons == ("HAProxy is starting",)
    clock.now += 6
    board.beat()
    assert not board.liveness().ok
    assert board.liveness().as_dict()["haproxy_origin"] is None
    board.set_haproxy_running(True, "started")
    assert board.liveness().ok and board.readiness().ok


def test_the_board_counts_failed_applies_from_the_first_one() -> None:
    clock = Clock()
    board = board_with(clock)
    board.set_haproxy_running(True, "started")
    board.record_sync()
    board.record_catalog_served()
    board.record_apply(False)
    clock.now += 30
    board.record_apply(False)
    clock.now += 31
    board.record_sync()
    assert board.readiness().reasons == (
        "applying the newest catalog has failed for 61 s (limit 60 s)",
    )
    board.record_apply(True)
    assert board.readiness().ok


def test_livez_and_readyz_answer_json_with_reasons() -> None:
    board = StatusBoard(SidecarMetrics(), max_sync_age=60)
    server = StatusServer(board, port=0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, body, headers = http_get(f"{base}/readyz")
        assert (status, headers["Content-Type"]) == (503, "application/json")
        assert json.loads(body)["reasons"] == [
            "HAProxy is not running",
            "no catalog applied yet (waiting for Marathon)",
        ]
        status, body, _ = http_get(f"{base}/livez")
        assert status == 200 and json.loads(body)["status"] == "ok"
        board.set_haproxy_running(True, "started")
        board.record_sync()
        board.record_catalog_served()
        status, body, _ = http_get(f"{base}/readyz")
        ready = json.loads(body)
        assert status == 200 and ready.pop("sync_age_seconds") < 60
        assert ready == {"status": "ok", "reasons": [], "haproxy_origin": "started"}
    finally:
        server.stop()


def test_the_probe_listener_answers_only_the_probes() -> None:
    board = StatusBoard(SidecarMetrics(), max_sync_age=60)
    board.set_view(*sample_catalog_and_model())
    server = StatusServer(board, port=0, probes_only=True).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert http_get(f"{base}/livez")[0] == 200
        assert http_get(f"{base}/readyz")[0] == 503
        for hidden in ("/", "/health", "/config", "/services", "/metrics", "/static/status.css"):
            status, body, _ = http_get(f"{base}{hidden}")
            assert (status, body) == (404, "not found\n"), hidden
    finally:
        server.stop()


def sample_catalog_and_model() -> tuple[Catalog, HAProxyModel, str]:
    return Catalog(), HAProxyModel(), "global\n  stats socket /secret/admin.sock\n"
