"""HAProxy's view of its servers, read off the daemon's loop: statuses, the interval that
stretches with the read's cost, and a poller that keeps going when a read fails."""

from __future__ import annotations

import threading

from sidecar.haproxy.runtime import FDRAIN, FMAINT, RuntimeAPIError, ServerState
from sidecar.server_poller import ServerStatePoller, ServerStatuses, next_wait, server_status
from testkit import wait_until

RUNNING, STOPPED = 2, 0  # srv_op_state


def state(name: str, op_state: int = RUNNING, admin_state: int = 0) -> ServerState:
    return ServerState(1, "be_10000", 1, name, "127.0.0.1", op_state, admin_state, 1, 1, 0, 80)


def test_statuses_follow_admin_state_first_then_operational_state() -> None:
    assert server_status(state("a")) == "up"
    assert server_status(state("a", op_state=STOPPED)) == "down"
    assert server_status(state("a", admin_state=FDRAIN)) == "drain"
    assert server_status(state("a", admin_state=FMAINT | FDRAIN)) == "maint"


def test_a_costly_read_waits_in_proportion() -> None:
    assert next_wait(0.01, 5.0, 40.0) == 5.0
    assert next_wait(0.2, 5.0, 40.0) == 8.0  # 30k servers: read every 8 s, not every 5


class Recorder:
    def __init__(self) -> None:
        self.seen: list[ServerStatuses] = []
        self.lock = threading.Lock()

    def __call__(self, statuses: ServerStatuses) -> None:
        with self.lock:
            self.seen.append(statuses)


def test_a_poll_records_every_server_by_backend_and_name() -> None:
    record = Recorder()
    poller = ServerStatePoller(lambda: [state("a"), state("b", STOPPED)], lambda: True, record)
    assert poller.poll()
    assert record.seen == [{("be_10000", "a"): "up", ("be_10000", "b"): "down"}]


def test_no_poll_while_haproxy_is_not_running_and_a_failed_read_records_nothing() -> None:
    record = Recorder()

    def fail() -> list[ServerState]:
        raise RuntimeAPIError("show servers state", "connection refused")

    assert not ServerStatePoller(lambda: [state("a")], lambda: False, record).poll()
    assert not ServerStatePoller(fail, lambda: True, record).poll()
    assert record.seen == []


def test_the_thread_polls_again_after_a_failed_read() -> None:
    record = Recorder()
    reads: list[int] = []

    def flaky() -> list[ServerState]:
        reads.append(1)
        if len(reads) == 1:
            raise RuntimeAPIError("show servers state", "connection refused")
        return [state("a")]

    poller = ServerStatePoller(flaky, lambda: True, record, interval=0.01)
    poller.start()
    try:
        wait_until(lambda: len(record.seen) >= 2, message="two polls recorded")
    finally:
        poller.stop()
    assert len(reads) >= 3 and record.seen[-1] == {("be_10000", "a"): "up"}
