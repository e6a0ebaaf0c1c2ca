"""systemd's notify protocol: datagrams on a real UNIX socket, and what the daemon reports when."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.probes import ProbeReport
from sidecar.systemd_notify import SystemdNotifier, SystemdReporter

READY = ProbeReport(True, ())
NOT_READY = ProbeReport(False, ("last Marathon contact 95 s ago (limit 60 s)",))
LIVE = ProbeReport(True, ())
DEAD = ProbeReport(False, ("the daemon loop has not run for 130 s (limit 120 s)",))


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing where systemd's notify socket would: (path, socket)."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting, one list of lines."""
    lines: list[str] = []
    sock.settimeout(0.2)
    try:
        while True:
            lines += sock.recv(4096).decode().split("\n")
    except socket.timeout:
        return lines


def test_nothing_is_sent_without_a_notify_socket() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled and not notifier.notify("READY=1")
    assert notifier.watchdog_interval is None


def test_datagrams_reach_a_path_socket_and_an_abstract_one(
    listener: tuple[str, socket.socket],
) -> None:
    path, sock = listener
    assert SystemdNotifier({"NOTIFY_SOCKET": path}).notify("READY=1", "STATUS=a\nb")
    assert sock.recv(4096) == b"READY=1\nSTATUS=a b"
    name = f"marathon-sidecar-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind("\0" + name)
        abstract.settimeout(5)
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).notify("WATCHDOG=1")
        assert abstract.recv(4096) == b"WATCHDOG=1"


def test_a_socket_that_is_gone_is_not_an_error(tmp_path: Path) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled and not notifier.notify("STOPPING=1")


def test_the_watchdog_interval_is_ours_only_when_the_pid_matches() -> None:
    assert SystemdNotifier({"WATCHDOG_USEC": "120000000"}).watchdog_interval == 120.0
    mine = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert SystemdNotifier(mine).watchdog_interval == 2.0
    other = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert SystemdNotifier(other).watchdog_interval is None


def test_ready_once_status_on_change_and_pings_only_while_live(
    listener: tuple[str, socket.socket],
) -> None:
    path, sock = listener
    reporter = SystemdReporter(SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}))
    reporter.report(NOT_READY, LIVE, now=100.0)
    assert received(sock) == [
        "READY=1",
        "STATUS=not ready: last Marathon contact 95 s ago (limit 60 s)",
        "WATCHDOG=1",
    ]
    reporter.report(NOT_READY, LIVE, now=100.5)  # nothing new, next ping due at 101
    assert received(sock) == []
    reporter.report(READY, LIVE, now=101.0)
    assert received(sock) == ["STATUS=ready", "WATCHDOG=1"]
    reporter.report(READY, DEAD, now=110.0)  # not live: no ping, systemd will act
    assert received(sock) == []
    reporter.stopping()
    assert received(sock) == ["STOPPING=1", "STATUS=stopping"]
