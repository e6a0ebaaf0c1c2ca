"""free_ports: distinct ports nothing listens on, outside the emulator's task ports."""

from __future__ import annotations

import socket

from testkit.ports import EMULATOR_TASK_PORTS, free_port, free_ports


def test_ports_are_distinct_bindable_and_outside_the_task_range() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    for port in ports:
        assert not EMULATOR_TASK_PORTS[0] <= port <= EMULATOR_TASK_PORTS[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))


def test_nothing_listens_on_a_free_port() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
