"""Servers leaving the running config: drained first, then deleted or kept as tombstones.

A server the model no longer wants in rotation is set to ``drain`` at once (by the runtime plan)
and registered here. :meth:`DrainRegistry.advance` finishes it once its sessions reach 0 or the
drain timeout passed (then its sessions are shut): a server that never took a session is set to
``maint`` and deleted; one that did is set to ``maint`` and kept as a *tombstone* (``del server``
of a server that streams may still point at crashes HAProxy 2.6 workers, fixed only in 2.9).
Tombstones are left out of the config file, so the next reload or restart drops them.

Until then the config file keeps draining servers (rendered ``disabled``: :meth:`effective`), so
a reload or restart in between keeps the same servers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Callable

from sidecar.haproxy.runtime import RuntimeAPI, ServerState, parse_csv_stat, set_state_command
from sidecar.haproxy_model import BackendSpec, HAProxyModel, ServerSpec

from .results import ApplyCounters

log = logging.getLogger(__name__)

RENDER_SERVER_DRAIN = "drain"
Key = tuple[str, str]  # (backend, server)


@dataclass
class DrainEntry:
    backend: str
    server: str
    address: str
    port: int
    weight: int
    started_at: float
    task_id: str = ""
    serial: int = 0  # the order of registration (see DrainCheck)


@dataclass(frozen=True)
class DrainCheck:
    """What HAProxy said of the draining servers' backends (``show stat``), and which entries
    that answer can finish: those registered before it was asked (``serial`` at most
    ``last_serial``); one drained later may have taken sessions the answer does not show."""

    backends: frozenset[str]
    rows: Mapping[Key, Mapping[str, str]]
    last_serial: int


class DrainRegistry:
    """The draining servers and the tombstones of one HAProxy (the applier's lock guards it)."""

    def __init__(
        self,
        runtime: RuntimeAPI,
        counters: ApplyCounters,
        drain_timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.runtime = runtime
        self.counters = counters
        self.drain_timeout = drain_timeout
        self.clock = clock
        self.draining: dict[Key, DrainEntry] = {}
        # (backend, server) -> when it went to MAINT for good; dropped by the next reload
        self.tombstones: dict[Key, float] = {}
        self._serial = 0

    def __bool__(self) -> bool:
        return bool(self.draining)

    def ready_again(self, backend: str, names: Iterable[str]) -> None:
        """Servers the model wants in rotation again are no longer leaving."""
        for name in names:
            self.draining.pop((backend, name), None)
            self.tombstones.pop((backend, name), None)

    def start(self, backend: BackendSpec, states: Iterable[ServerState]) -> None:
        """Register servers the runtime plan set to drain (or maint)."""
        now = self.clock()
        for state in states:
            key = (backend.name, state.name)
            if key in self.draining or key in self.tombstones:
                continue
            task_id = next((s.task_id for s in backend.servers if s.name == state.name), "")
            self._serial += 1
            self.draining[key] = DrainEntry(
                backend.name,
                state.name,
                state.address,
                state.port,
                state.uweight,
                now,
                task_id,
                self._serial,
            )
            self.counters.drains_started += 1

    def forget_tombstones(self) -> None:
        """HAProxy runs a config file without them now (a reload or a restart)."""
        self.tombstones = {}

    def advance(self) -> int:
        """Finish draining servers whose sessions ended (or whose time is up).

        Returns the number of servers taken out of the running config this way (deleted or
        tombstoned): the file is rewritten without them.
        """
        if not self.draining:
            return 0
        return self.finish(self.check(self.backends_to_check()))

    def backends_to_check(self) -> tuple[frozenset[str], int]:
        """The backends with draining servers, and the last registration so far."""
        return frozenset(be for be, _ in self.draining), self._serial

    def check(self, asked: tuple[frozenset[str], int]) -> DrainCheck:
        """Ask HAProxy about ``asked`` (from :meth:`backends_to_check`). It reads only, so the
        caller may run it without the applier's lock: each ``show stat <backend>`` walks every
        proxy (about 4 ms at 10k services) and must not hold back applies."""
        names, last_serial = asked
        ordered = sorted(names)
        answers = self.runtime.execute_many([f"show stat {be} 4 -1" for be in ordered])
        rows = {(r["pxname"], r["svname"]): r for a in answers for r in parse_csv_stat(a)}
        return DrainCheck(names, rows, last_serial)

    def finish(self, check: DrainCheck) -> int:
        """Finish the servers ``check`` shows drained (or timed out): see :meth:`advance`."""
        now = self.clock()
        finished = 0
        for key, entry in sorted(self.draining.items()):
            if key[0] not in check.backends or entry.serial > check.last_serial:
                continue  # registered after the check: the next one decides
            row = check.rows.get(key)
            if row is None:
                del self.draining[key]  # gone already (reload, restart, someone else)
                continue
            sessions = _stat_int(row, "scur")
            timed_out = now - entry.started_at >= self.drain_timeout
            if sessions + _stat_int(row, "qcur") > 0 and not timed_out:
                continue
            if self._finish(key, row, shut=timed_out and sessions > 0):
                finished += 1
        return finished

    def _finish(self, key: Key, row: Mapping[str, str], shut: bool) -> bool:
        """MAINT (sessions shut when asked); deleted if it never took a session, else a
        tombstone. ``True`` when the server is out of the running config now."""
        be, srv = key
        commands = []
        if not row.get("status", "").startswith("MAINT"):
            commands.append(set_state_command(be, srv, "maint"))
        if shut:
            commands.append(f"shutdown sessions server {be}/{srv}")
        delete = _stat_int(row, "stot") == 0 and not shut
        if delete:
            commands.append(f"del server {be}/{srv}")
        errors = self.runtime.write_many(commands) if commands else []
        self.counters.runtime_ops += sum(1 for e in errors if e is None)
        failed = next((e for e in errors if e is not None), None)
        if failed is not None:
            if "No such server" in failed.message:
                del self.draining[key]
            else:
                log.debug("drained server not finished yet", extra={"error": failed.message})
            return False
        del self.draining[key]
        if delete:
            self.counters.servers_deleted += 1
            log.info("server removed", extra={"backend": be, "server": srv})
        else:
            self.tombstones[key] = self.clock()
            self.counters.servers_tombstoned += 1
            log.info(
                "server in maintenance until the next reload", extra={"backend": be, "server": srv}
            )
        return True

    def effective(self, model: HAProxyModel) -> HAProxyModel:
        """The model as HAProxy runs it: draining servers kept until they are deleted."""
        if not self.draining and all(s.state == "ready" for b in model.backends for s in b.servers):
            return model
        by_backend: dict[str, dict[str, DrainEntry]] = {}
        for (be, name), entry in self.draining.items():
            by_backend.setdefault(be, {})[name] = entry
        backends = []
        for backend in model.backends:
            draining = by_backend.get(backend.name, {})
            # a server the model wants ready again is ready, even before the runtime sync
            # takes it off the drain registry
            servers = [
                s if s.state == "ready" else s._replace(state=RENDER_SERVER_DRAIN)
                for s in backend.servers
                if s.state == "ready" or s.name in draining
            ]
            known = {s.name for s in servers}
            servers += [
                ServerSpec(
                    name=name,
                    address=entry.address,
                    port=entry.port,
                    task_id=entry.task_id,
                    weight=max(entry.weight, 1),
                    state=RENDER_SERVER_DRAIN,
                )
                for name, entry in sorted(draining.items())
                if name not in known
            ]
            backends.append(replace(backend, servers=tuple(servers)))
        return replace(model, backends=tuple(backends))


def _stat_int(row: Mapping[str, str], column: str) -> int:
    value = row.get(column) or "0"
    return int(value) if value.isdigit() else 0
