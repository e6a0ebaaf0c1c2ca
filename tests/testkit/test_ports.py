"""free_ports: distinct ports nothing listens on, outside the emulator's task ports; blocks."""

from __future__ import annotations

import socket

from testkit.ports import EMULATOR_TASK_PORTS, free_port, free_port_block, free_ports


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


def test_a_port_block_starts_after_a_port_something_listens_on() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen()
        taken = listener.getsockname()[1]
        first = free_port_block(3, low=taken, high=taken + 50)
    assert taken < first <= taken + 47
