"""Free TCP ports on loopback, chosen by the OS (the one free-port helper)."""

from __future__ import annotations

import socket

from marathon_bridge.testing.tasks import port_is_free

# real tasks of the Marathon emulator take host ports in this range (below Linux's ephemeral
# range, where the OS picks from); a port handed out here never falls in it
EMULATOR_TASK_PORTS = (21000, 32000)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports on ``host`` (a loopback address) that nothing listens on now.

    The sockets are held open together until all are found, so the OS hands out different
    ports; then they are closed and the ports are the caller's to bind.
    """
    held: list[socket.socket] = []
    found: list[int] = []
    try:
        while len(found) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
            if not EMULATOR_TASK_PORTS[0] <= port <= EMULATOR_TASK_PORTS[1]:
                found.append(port)
    finally:
        for sock in held:
            sock.close()
    return found


def free_port() -> int:
    """One port that nothing listens on right now (see :func:`free_ports`)."""
    return free_ports(1)[0]


def free_port_block(count: int, low: int = 2000, high: int = EMULATOR_TASK_PORTS[0]) -> int:
    """The first of ``count`` consecutive ports in [low, high) that nothing on 127.0.0.1 listens
    on now (for a cluster whose apps take service ports one after the other)."""
    run = 0
    for port in range(low, high):
        run = run + 1 if port_is_free(port) else 0
        if run == count:
            return port - count + 1
    raise RuntimeError(f"no {count} free consecutive ports in {low}-{high - 1}")
