"""Drains finished from an answer HAProxy gave without the applier's lock: a server registered
after the answer was asked waits for the next one (its sessions are not in it); the ones before
it finish when the answer shows no session."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from sidecar.apply.drains import DrainRegistry
from sidecar.apply.results import ApplyCounters
from sidecar.haproxy.runtime import RuntimeAPIError, ServerState
from sidecar.haproxy_model import BackendSpec, ServerSpec
from testkit.clock import FakeClock

HEADER = "# pxname,svname,qcur,scur,stot,status,\n"


class StatRuntime:
    """Answers ``show stat <backend> 4 -1`` from ``sessions`` and records the writes."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str], int] = {}
        self.writes: list[str] = []

    def execute_many(self, commands: Sequence[str]) -> list[str]:
        answers = []
        for command in commands:
            backend = command.split()[2]
            rows = [
                f"{be},{srv},0,{n},{n},DRAIN,\n"
                for (be, srv), n in sorted(self.sessions.items())
                if be == backend
            ]
            answers.append(HEADER + "".join(rows))
        return answers

    def write_many(self, commands: Sequence[str]) -> list[Optional[RuntimeAPIError]]:
        self.writes.extend(commands)
        return [None] * len(commands)


BACKEND = BackendSpec(
    name="be_10000", app_id="/web", service_port=10000, mode="http", balance="roundrobin",
    servers=(ServerSpec("a", "127.0.0.1", 31000, "web.a"),),
)  # fmt: skip


def drained(name: str) -> ServerState:
    return ServerState(1, BACKEND.name, 1, name, "127.0.0.1", 2, 8, 1, 1, 0, 31000)


def test_a_server_drained_after_the_check_was_asked_waits_for_the_next_check() -> None:
    runtime = StatRuntime()
    registry = DrainRegistry(runtime, ApplyCounters(), 30.0, FakeClock())  # type: ignore[arg-type]
    runtime.sessions[(BACKEND.name, "a")] = 0
    runtime.sessions[(BACKEND.name, "b")] = 0
    registry.start(BACKEND, [drained("a")])
    check = registry.check(registry.backends_to_check())
    registry.start(BACKEND, [drained("b")])  # drained while the answer was on its way
    assert registry.finish(check) == 1
    assert (BACKEND.name, "b") in registry.draining and (BACKEND.name, "a") not in registry.draining
    assert runtime.writes == [
        f"set server {BACKEND.name}/a state maint",
        f"del server {BACKEND.name}/a",
    ]
    assert registry.advance() == 1 and not registry.draining


def test_a_server_with_sessions_keeps_draining() -> None:
    runtime = StatRuntime()
    registry = DrainRegistry(runtime, ApplyCounters(), 30.0, FakeClock())  # type: ignore[arg-type]
    runtime.sessions[(BACKEND.name, "a")] = 2
    registry.start(BACKEND, [drained("a")])
    assert registry.finish(registry.check(registry.backends_to_check())) == 0
    assert (BACKEND.name, "a") in registry.draining and runtime.writes == []
