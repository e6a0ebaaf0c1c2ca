"""The fault matrix, Marathon side: every row runs under continuous loopback traffic.

One node for the whole module: the sidecar follows Marathon through a relay (``--marathon`` 1)
with a standby as ``--marathon`` 2, and serves one app of three echo tasks. Each row injects one
fault, waits until the sidecar has demonstrably seen it (a counter moved), keeps the traffic
going, and asserts: no failed request, and every task still served (no backend lost). Rows that
end with a change in Marathon also show that changes flow again afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable

import pytest

from marathon_bridge.testing.faults import FaultInjector
from sidecar.names import server_name
from testkit import wait_until
from testkit.apps import echo_app
from testkit.load import LoadGenerator
from testkit.marathon import MarathonCluster
from testkit.node import SidecarNode, StartNode
from testkit.ports import free_ports

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

GROUP = "flt-marathon"
MARATHON_ERRORS = "marathon_sidecar_marathon_errors_total"
APP = "/flt/web"
INSTANCES = 3
WARMUP = 60  # requests before the fault
DURING = 150  # requests after the sidecar has seen the fault


@dataclass
class Shared:
    cluster: MarathonCluster
    node: SidecarNode
    port: int

    @property
    def faults(self) -> FaultInjector:
        return self.cluster.emulator.faults

    def expected(self) -> set[str]:
        return self.cluster.healthy(APP)

    def converged(self) -> bool:
        return self.node.routes_exactly(self.cluster.emulator, APP, self.port)


@pytest.fixture(scope="module")
def shared(cluster: MarathonCluster, start_node: StartNode) -> Iterator[Shared]:
    (port,) = free_ports(1)
    node = start_node((cluster.relay.url, cluster.standby.url), GROUP)
    try:
        cluster.deploy(echo_app(APP, port, INSTANCES, group=GROUP))
        state = Shared(cluster, node, port)
        wait_until(state.converged, 30, message="the node routes to the app")
        yield state
    finally:
        node.stop()


@pytest.fixture(autouse=True)
def healthy_again(shared: Shared) -> Iterator[None]:
    """Each row starts converged and leaves Marathon as it found it."""
    wait_until(shared.converged, 30, message="converged before the row")
    yield
    cluster = shared.cluster
    cluster.emulator.faults.clear()
    cluster.relay.restore()
    bus = cluster.emulator.bus
    assert bus is not None
    bus.max_outstanding = 1024
    for task_id in {t["id"] for t in cluster.emulator.tasks(APP)}:
        cluster.emulator.set_task_health(task_id, True)
    wait_until(shared.converged, 30, message="converged after the row")


@pytest.fixture
def traffic(shared: Shared, load: LoadGenerator) -> LoadGenerator:
    load.add_port(shared.port)
    load.start()
    load.wait_for_requests(shared.port, WARMUP)
    return load


def hold_through(
    shared: Shared, load: LoadGenerator, seen: Callable[[], object], what: str
) -> set[str]:
    """Wait until the sidecar saw the fault, then for more traffic; the tasks that answered."""
    wait_until(seen, 40, message=f"the sidecar saw {what}")
    before = load.stats(shared.port)
    load.wait_for_requests(shared.port, DURING)
    after = load.stats(shared.port)
    return {t for t, n in after.by_task.items() if n > before.by_task.get(t, 0)}


def assert_no_failure_and_nothing_lost(
    shared: Shared, load: LoadGenerator, answered: set[str], serving: set[str]
) -> None:
    stats = load.stats(shared.port)
    assert stats.failures == 0, f"{stats.failures} of {stats.sent} failed: {stats.errors[:5]}"
    assert answered == serving, f"tasks lost during the fault: {serving - answered}"
    ready = shared.node.ready_servers(APP, shared.port)
    assert ready == {server_name(t) for t in serving}


def errors_grew(node: SidecarNode, before: float) -> Callable[[], bool]:
    return lambda: node.metric_sum(MARATHON_ERRORS) > before


def flip_one_task_and_see_it(shared: Shared) -> None:
    """Changes flow: a task turning unhealthy leaves HAProxy's ready servers, then returns."""
    victim = sorted(shared.expected())[0]
    shared.cluster.emulator.set_task_health(victim, False)
    wait_until(
        lambda: server_name(victim) not in shared.node.ready_servers(APP, shared.port),
        30,
        message="an unhealthy task left the rotation",
    )
    shared.cluster.emulator.set_task_health(victim, True)
    wait_until(shared.converged, 30, message="the task is back")


def snapshot_soon(shared: Shared) -> None:
    """Make the sidecar take a snapshot now: its event stream reconnects."""
    shared.cluster.emulator.close_event_streams()


# ----------------------------------------------------------------------------- rows


def test_a_flip_to_the_standby_url_keeps_routing_and_changes_flowing(
    shared: Shared, traffic: LoadGenerator
) -> None:
    # first row: nothing failed yet, so the sidecar still talks to --marathon #1 (the relay)
    assert shared.node.marathon_urls()[0] == shared.cluster.relay.url
    serving = shared.expected()
    node = shared.node
    connects = node.metric("marathon_sidecar_marathon_stream_connects_total")
    shared.cluster.relay.cut()  # the first --marathon URL is gone; the standby remains
    answered = hold_through(
        shared,
        traffic,
        lambda: node.metric("marathon_sidecar_marathon_stream_connects_total") > connects,
        "the stream reconnected through the standby",
    )
    assert_no_failure_and_nothing_lost(shared, traffic, answered, serving)
    flip_one_task_and_see_it(shared)  # learnt through the standby (REST proxied, 302 for events)
    assert node.marathon_urls()[0] == shared.cluster.standby.url
    stats = traffic.stats(shared.port)
    assert stats.failures == 0, stats.errors[:5]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_marathon_answering_errors_changes_no_routing(
    shared: Shared, traffic: LoadGenerator, status: int
) -> None:
    serving = shared.expected()
    before = shared.node.metric_sum(MARATHON_ERRORS)
    shared.faults.add("/v2/*", status=status)
    snapshot_soon(shared)
    answered = hold_through(shared, traffic, errors_grew(shared.node, before), f"HTTP {status}")
    assert shared.node.health()["http_status"] == 200
    assert_no_failure_and_nothing_lost(shared, traffic, answered, serving)
    shared.faults.clear()
    flip_one_task_and_see_it(shared)
    assert traffic.stats(shared.port).failures == 0


def test_marathon_hanging_past_the_read_timeout_changes_no_routing(
    shared: Shared, traffic: LoadGenerator
) -> None:
    serving = shared.expected()
    before = shared.node.metric_sum(MARATHON_ERRORS)
    read_timeout = shared.node.settings.marathon_timeout
    shared.faults.add("/v2/apps*", delay=read_timeout + 2.0)
    snapshot_soon(shared)
    answered = hold_through(shared, traffic, errors_grew(shared.node, before), "a read timeout")
    assert_no_failure_and_nothing_lost(shared, traffic, answered, serving)


@pytest.mark.parametrize(
    "fault",
    [
        {"drop": True},
        {"truncate": True},
        {"body": b'{"apps": [{"id": "/flt/web", "tasks": ['},
        {"body": b"<html><body>502 Bad Gateway</body></html>"},
    ],
    ids=["closed-connection", "truncated", "invalid-json", "html-instead-of-json"],
)
def test_broken_marathon_answers_change_no_routing(
    shared: Shared, traffic: LoadGenerator, fault: dict[str, object]
) -> None:
    serving = shared.expected()
    before = shared.node.metric_sum(MARATHON_ERRORS)
    shared.faults.add("/v2/apps*", **fault)  # type: ignore[arg-type]
    snapshot_soon(shared)
    answered = hold_through(shared, traffic, errors_grew(shared.node, before), str(fault))
    assert_no_failure_and_nothing_lost(shared, traffic, answered, serving)


def test_an_empty_app_list_for_a_few_seconds_is_not_believed(
    shared: Shared, traffic: LoadGenerator
) -> None:
    serving = shared.expected()
    kind = {"kind": "suspicious_empty"}
    before = shared.node.metric("marathon_sidecar_marathon_errors_total", kind)
    shared.faults.respond_json("/v2/apps", {"apps": []}, duration=4.0)
    snapshot_soon(shared)
    answered = hold_through(
        shared,
        traffic,
        lambda: shared.node.metric("marathon_sidecar_marathon_errors_total", kind) > before,
        "an empty app list",
    )
    reasons = " ".join(shared.node.health()["reasons"])
    assert "answered with no services" in reasons
    assert_no_failure_and_nothing_lost(shared, traffic, answered, serving)


def test_a_silent_event_stream_falls_back_to_polling_and_reconnects(
    shared: Shared, traffic: LoadGenerator
) -> None:
    node = shared.node
    connects = node.metric("marathon_sidecar_marathon_stream_connects_total")
    assert shared.cluster.freeze_streams() >= 1  # open, but not a byte more
    victim = sorted(shared.expected())[0]
    shared.cluster.emulator.set_task_health(victim, False)  # the stream will not tell
    wait_until(
        lambda: server_name(victim) not in node.ready_servers(APP, shared.port),
        40,
        message="the change arrived by polling or a new stream",
    )
    wait_until(
        lambda: node.metric("marathon_sidecar_marathon_stream_connects_total") > connects,
        40,
        message="the silent stream was replaced",
    )
    shared.cluster.emulator.set_task_health(victim, True)
    wait_until(shared.converged, 30, message="the task is back")
    traffic.wait_for_requests(shared.port, DURING)
    stats = traffic.stats(shared.port)
    assert stats.failures == 0, stats.errors[:5]


def test_a_slow_consumer_disconnect_is_followed_by_a_resync(
    shared: Shared, traffic: LoadGenerator
) -> None:
    emulator = shared.cluster.emulator
    node = shared.node
    bus = emulator.bus
    assert bus is not None
    closed: list[str] = []

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "why", "") == "slow consumer":
                closed.append(record.getMessage())

    handler = Seen()
    events_log = logging.getLogger("marathon_bridge.testing.events")
    events_log.addHandler(handler)
    old_level = events_log.level
    events_log.setLevel(logging.INFO)
    try:
        bus.max_outstanding = 2  # Marathon's --event_stream_max_outstanding_messages, tiny
        connects = node.metric("marathon_sidecar_marathon_stream_connects_total")
        emulator.close_event_streams()
        wait_until(
            lambda: node.metric("marathon_sidecar_marathon_stream_connects_total") > connects,
            30,
            message="the stream reconnected with the small queue",
        )
        connects = node.metric("marathon_sidecar_marathon_stream_connects_total")
        victim = sorted(shared.expected())[0]
        for i in range(60):  # a burst faster than one stream write each
            emulator.set_task_health(victim, i % 2 == 1)
        wait_until(lambda: closed, 20, message="Marathon closed the slow consumer")
        wait_until(
            lambda: node.metric("marathon_sidecar_marathon_stream_connects_total") > connects,
            30,
            message="the sidecar reconnected (and resynced)",
        )
    finally:
        events_log.removeHandler(handler)
        events_log.setLevel(old_level)
        bus.max_outstanding = 1024
    wait_until(shared.converged, 30, message="the last health state is routed")
    traffic.wait_for_requests(shared.port, DURING)
    stats = traffic.stats(shared.port)
    assert stats.failures == 0, stats.errors[:5]


def test_a_leader_election_that_blanks_health_results_keeps_every_backend(
    shared: Shared, traffic: LoadGenerator
) -> None:
    serving = shared.expected()
    node = shared.node
    connects = node.metric("marathon_sidecar_marathon_stream_connects_total")
    resyncs = node.metric_sum("marathon_sidecar_marathon_resyncs_total")
    shared.cluster.emulator.leader_election(blank_health_for=5.0)
    answered = hold_through(
        shared,
        traffic,
        lambda: (
            node.metric("marathon_sidecar_marathon_stream_connects_total") > connects
            and node.metric_sum("marathon_sidecar_marathon_resyncs_total") > resyncs
        ),
        "the new leader's blank health results",
    )
    assert_no_failure_and_nothing_lost(shared, traffic, answered, serving)


def test_a_burst_of_events_is_coalesced(shared: Shared, traffic: LoadGenerator) -> None:
    node = shared.node
    emulator = shared.cluster.emulator
    applies = node.metric("marathon_sidecar_apply_duration_seconds_count")
    reloads = node.metric("marathon_sidecar_haproxy_reloads_total")
    events = node.metric_sum("marathon_sidecar_marathon_events_total")
    victim = sorted(shared.expected())[0]
    flips = 40
    started = time.monotonic()
    for i in range(flips):
        emulator.set_task_health(victim, i % 2 == 1)  # ends healthy
    wait_until(
        lambda: node.metric_sum("marathon_sidecar_marathon_events_total") >= events + flips,
        30,
        message="the sidecar read the whole burst",
    )
    elapsed = time.monotonic() - started
    wait_until(shared.converged, 30)
    traffic.wait_for_requests(shared.port, DURING)
    applied = node.metric("marathon_sidecar_apply_duration_seconds_count") - applies
    # server changes are applied at most once per debounce, each with everything that came
    most = elapsed / node.settings.debounce + 2
    assert applied <= most, f"{applied} applies for {flips} events in {elapsed:.2f} s"
    assert node.metric("marathon_sidecar_haproxy_reloads_total") == reloads  # servers only
    stats = traffic.stats(shared.port)
    assert stats.failures == 0, stats.errors[:5]


def test_a_resync_during_a_deployment_converges_without_failures(
    shared: Shared, traffic: LoadGenerator
) -> None:
    node = shared.node
    cluster = shared.cluster
    resyncs = node.metric_sum("marathon_sidecar_marathon_resyncs_total")
    cluster.client.scale_app(APP, INSTANCES + 2)
    for _ in range(3):  # snapshots land in the middle of the deployment
        cluster.emulator.close_event_streams()
        wait_until(lambda: cluster.emulator.event_stream_count() >= 1, 30, message="stream back")
    wait_until(lambda: node.metric_sum("marathon_sidecar_marathon_resyncs_total") >= resyncs + 2)
    wait_until(lambda: len(cluster.healthy(APP)) == INSTANCES + 2, 60, message="scaled up")
    wait_until(shared.converged, 30, message="every new task routed")
    cluster.client.scale_app(APP, INSTANCES)
    cluster.emulator.close_event_streams()
    wait_until(lambda: len(cluster.emulator.tasks(APP)) == INSTANCES, 60, message="scaled down")
    wait_until(shared.converged, 30, message="back to three")
    traffic.wait_for_requests(shared.port, DURING)
    stats = traffic.stats(shared.port)
    assert stats.failures == 0, stats.errors[:5]
