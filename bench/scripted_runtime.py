"""An in-memory stand-in for HAProxy's runtime API, for CPU benchmarks of the sidecar alone.

:class:`ScriptedRuntime` answers the commands the applier sends (``show servers state``,
``show stat``, ``add server``, ``set server``, ``del server``...) from a table of servers, in
HAProxy's own answer formats, so the applier parses and decides exactly as it does against a
real HAProxy. It measures the sidecar's CPU; it says nothing about HAProxy (the system benches
run a real one). Never used by tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from sidecar.haproxy.runtime import ADDED, DELETED, FDRAIN, FMAINT, RuntimeAPI
from sidecar.haproxy_model import HAProxyModel

STATE_HEADER = (
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_check_state srv_port"
)
STAT_HEADER = "# pxname,svname,status,scur,qcur,stot,"
ADMIN = {"ready": 0, "drain": FDRAIN, "maint": FMAINT}


class _Server:
    __slots__ = ("address", "admin", "port", "weight")

    def __init__(self, address: str, port: int, admin: int, weight: int) -> None:
        self.address, self.port, self.admin, self.weight = address, port, admin, weight


class ScriptedRuntime(RuntimeAPI):
    """Servers per backend in memory; every command counted in :attr:`commands_sent`."""

    def __init__(self) -> None:
        super().__init__("/nonexistent/admin.sock")
        self.backends: dict[str, dict[str, _Server]] = {}
        self.writes = 0

    def load(self, model: HAProxyModel) -> None:
        """What HAProxy has after loading the config of ``model`` (a reload)."""
        self.backends = {
            b.name: {
                s.name: _Server(
                    s.address, s.port, ADMIN["ready" if s.state == "ready" else "drain"], s.weight
                )
                for s in b.servers
            }
            for b in model.backends
        }

    def execute(self, command: str, *, check: bool = True) -> str:
        return self.execute_many([command])[0]

    def execute_many(self, commands: Sequence[str]) -> list[str]:
        self.commands_sent += len(commands)
        return [self._answer(c) for c in commands]

    def _answer(self, command: str) -> str:
        words = command.split()
        if command.startswith("show servers state"):
            return self._state(words[3] if len(words) > 3 else None)
        if command.startswith("show stat "):
            return self._stat(words[2])
        self.writes += 1
        if words[0] == "add":
            backend, name = words[2].split("/")
            address, port = words[3].rsplit(":", 1)
            self.backends.setdefault(backend, {})[name] = _Server(address, int(port), FMAINT, 1)
            return ADDED
        if words[0] == "del":
            backend, name = words[2].split("/")
            self.backends.get(backend, {}).pop(name, None)
            return DELETED
        if words[:2] == ["set", "server"]:
            return self._set(words)
        return ""

    def _set(self, words: list[str]) -> str:
        backend, name = words[2].split("/")
        server = self.backends.get(backend, {}).get(name)
        if server is None:
            return "No such server."
        if words[3] == "state":
            server.admin = ADMIN[words[4]]
        elif words[3] == "weight":
            server.weight = int(words[4])
        elif words[3] == "addr":
            server.address, server.port = words[4], int(words[6])
            return "IP changed"
        return ""

    def _state(self, backend: Optional[str]) -> str:
        if backend is not None and backend not in self.backends:
            return f"Can't find backend '{backend}'."
        names = [backend] if backend is not None else sorted(self.backends)
        lines = [STATE_HEADER]
        for be_id, be in enumerate(names, 1):
            for srv_id, (name, s) in enumerate(sorted(self.backends[be].items()), 1):
                lines.append(
                    f"{be_id} {be} {srv_id} {name} {s.address} 2 {s.admin} {s.weight} "
                    f"{s.weight} 6 {s.port}"
                )
        return "\n".join(lines) + "\n"

    def _stat(self, backend: str) -> str:
        lines = [STAT_HEADER]
        for name, s in sorted(self.backends.get(backend, {}).items()):
            status = "MAINT" if s.admin & FMAINT else ("DRAIN" if s.admin & FDRAIN else "UP")
            lines.append(f"{backend},{name},{status},0,0,0,")
        return "\n".join(lines) + "\n"
