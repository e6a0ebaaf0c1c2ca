"""The in-process Marathon emulator (real HTTP and SSE on loopback) for tests and demos.

``MarathonEmulator`` is the entry point; ``main(argv)`` runs one from the command line
(``marathon-bridge emulator`` calls :func:`run_emulator`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Optional

from marathon_bridge.testing.emulator import MarathonEmulator, run_emulator
from marathon_bridge.testing.faults import Fault, FaultInjector
from marathon_bridge.testing.server import RecordedRequest
from marathon_bridge.testing.tasks import echo_server_cmd

__all__ = [
    "Fault",
    "FaultInjector",
    "MarathonEmulator",
    "RecordedRequest",
    "echo_server_cmd",
    "main",
    "run_emulator",
]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m marathon_bridge.testing [--host H] [--port P] [--run-tasks]``."""
    parser = argparse.ArgumentParser(prog="marathon-bridge emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port to bind (default 8080; 0 = any)"
    )
    parser.add_argument(
        "--run-tasks", action="store_true", help="run each task's cmd as a real local process"
    )
    parser.add_argument(
        "--heartbeat-interval", type=float, default=10.0, help="seconds between SSE heartbeats"
    )
    args = parser.parse_args(argv)
    return run_emulator(
        args.host, args.port, args.run_tasks, heartbeat_interval=args.heartbeat_interval
    )
