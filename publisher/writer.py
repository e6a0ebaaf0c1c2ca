"""The catalog writer: reads what ZooKeeper holds, commits each service's diff, fenced.

Every transaction starts with `check(<our lock node>, 0)`: the node is the leader's ephemeral
election node, so once this publisher's session is gone (or an operator deleted the node to force
a failover) the whole transaction fails and nothing of it is written. Writes go through the same
kazoo client whose session holds the lock.

The writer caches, per service, the state its last read or commit left. A steady-state change
costs one transaction and no read; a failed transaction drops that service's cache entry and the
service is read again before the retry; a lost connection drops the whole cache. It also keeps
the spec it last handled per service: a spec that is the very same object again (an unchanged
service of a copy-on-write catalog) is not planned again until the next full sync.

A wanted catalog tagged with its changes (:mod:`sidecar.changes`, over service names) is synced
by looking at the services changed since the catalog synced last, and at those whose last write
did not settle (a conflict twice): a storm's catalog costs its changes, not the whole catalog.
Without a tag that relates it to the last one, every wanted and cached service is looked at.
The transactions of cached services are sent `WRITE_WINDOW` at a time before their answers are
awaited (each is still one service, fenced): a busy process pays a round trip per window, not
per service. Reads for a full sync are pipelined likewise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

from kazoo.exceptions import BadVersionError, NoNodeError, RolledBackError

from publisher.plan import (
    MAX_TRANSACTION_BYTES,
    Create,
    Delete,
    Op,
    ServiceSpec,
    ServiceState,
    SetData,
    batches,
    plan_service,
    state_after,
)
from sidecar.changes import Changes, changed_between
from sidecar.sources.zookeeper import layout
from sidecar.sources.zookeeper.layout import LayoutError

log = logging.getLogger(__name__)

READ_WINDOW = 200  # services whose reads are in flight at once when many are read
WRITE_WINDOW = 100  # services whose transactions are in flight at once


class _InFlight(NamedTuple):
    """One service's transaction sent, its answer to come."""

    service: str
    spec: Optional[ServiceSpec]
    current: ServiceState
    batch: list[Op]
    answer: Any  # kazoo's IAsyncResult


class Deposed(Exception):
    """The fencing check failed: this publisher no longer holds the leader lock."""


class Conflict(Exception):
    """A transaction failed on a service's nodes (someone else changed them): read it again."""


@dataclass
class WriteCounters:
    transactions: int = 0
    created: int = 0
    deleted: int = 0
    options_set: int = 0
    conflicts: int = 0
    heartbeats: int = 0  # heartbeat writes (not counted in the figures above)
    problems: dict[str, str] = field(default_factory=dict)  # service -> why it was skipped


class CatalogWriter:
    """Applies wanted catalogs to `<zk-path>` for the leader holding `fence`."""

    def __init__(
        self, client: Any, zk_path: str, max_transaction_bytes: int = MAX_TRANSACTION_BYTES
    ) -> None:
        self.client = client
        self.zk_path = layout.check_zk_path(zk_path)
        self.max_transaction_bytes = max_transaction_bytes
        self.counters = WriteCounters()
        self._cache: dict[str, ServiceState] = {}
        self._handled: dict[str, ServiceSpec] = {}  # the spec last written (or refused)
        self._synced: Optional[Changes] = None  # the tag of the catalog synced last
        self._unsettled: set[str] = set()  # services whose last sync gave up on a conflict
        self._heartbeat_exists: Optional[bool] = None

    def prepare(self) -> None:
        """Create the catalog root and our options root (idempotent, outside any service)."""
        self.client.ensure_path(self.zk_path)
        self.client.ensure_path(layout.options_root(self.zk_path))

    def forget(self) -> None:
        """Drop every cached state: the next sync reads before it writes."""
        self._cache.clear()
        self._handled.clear()
        self._synced = None
        self._unsettled.clear()
        self._heartbeat_exists = None

    def owned_services(self) -> list[str]:
        """Services whose options node exists: the ones this publisher wrote."""
        try:
            return list(self.client.get_children(layout.options_root(self.zk_path)))
        except NoNodeError:
            return []

    def read_service(self, service: str) -> ServiceState:
        base = layout.service_path(self.zk_path, service)
        try:
            children = frozenset(self.client.get_children(base))
            exists = True
        except NoNodeError:
            children, exists = frozenset(), False
        try:
            options: Optional[bytes] = self.client.get(layout.options_path(self.zk_path, service))[
                0
            ]
        except NoNodeError:
            options = None
        return ServiceState(exists, children, options)

    def read_services(self, services: Iterable[str]) -> dict[str, ServiceState]:
        """`read_service` for many services, their requests pipelined `READ_WINDOW` services at
        a time: a full sync of 10,000 services waits for some 50 round trips, not 20,000. A name
        that makes no path is left out (writing it is refused, and reported, later)."""
        paths = []
        for name in sorted(services):
            try:
                base = layout.service_path(self.zk_path, name)
                paths.append((name, base, layout.options_path(self.zk_path, name)))
            except LayoutError:
                continue
        found: dict[str, ServiceState] = {}
        for start in range(0, len(paths), READ_WINDOW):
            window = [
                (name, self.client.get_children_async(base), self.client.get_async(options))
                for name, base, options in paths[start : start + READ_WINDOW]
            ]
            for name, children, options in window:
                found[name] = _state_read(children, options)
        return found

    def sync(
        self,
        wanted: Mapping[str, ServiceSpec],
        fence: str,
        full: bool = False,
        changes: Optional[Changes] = None,
    ) -> int:
        """Make ZooKeeper hold `wanted` (services not in it and ours are removed).

        `full` reads every service first (after an election or a reconnect). `changes` tags
        `wanted` (module doc). Returns the number of operations committed. Raises Deposed when
        the fence fails.
        """
        if full:
            self.forget()
        services = self._to_look_at(wanted, full, changes)
        if full:
            self._cache.update(self.read_services(services))
        self._synced = None
        committed = 0
        in_flight: list[_InFlight] = []
        for service in sorted(services):
            spec = wanted.get(service)
            if spec is not None and self._handled.get(service) is spec and service in self._cache:
                continue
            sent = self._send(service, spec, fence)
            if sent is None:
                committed += self._sync_service(service, spec, fence)
            elif sent.batch:
                in_flight.append(sent)
            if len(in_flight) >= WRITE_WINDOW:
                committed += self._receive(in_flight, fence)
                in_flight = []
        committed += self._receive(in_flight, fence)
        self._synced = changes
        return committed

    def _send(self, service: str, spec: Optional[ServiceSpec], fence: str) -> Optional[_InFlight]:
        """Send a cached service's change in one transaction without waiting for the answer
        (one with nothing to do is settled: no batch). None: it goes the long way (not cached,
        several transactions, or a plan that fails and is reported there)."""
        current = self._cache.get(service)
        if current is None:
            return None
        try:
            ops = plan_service(self.zk_path, service, current, spec)
        except (LayoutError, TypeError):
            return None
        if len(batches(ops, self.max_transaction_bytes)) > 1:
            return None
        self._handled.pop(service, None)
        self.counters.problems.pop(service, None)
        if not ops:
            self._settled(service, spec)
            return _InFlight(service, spec, current, [], None)
        answer = self._new_transaction(ops, fence).commit_async()
        return _InFlight(service, spec, current, ops, answer)

    def _receive(self, in_flight: list[_InFlight], fence: str) -> int:
        """The answers of the transactions sent, in order; a conflict goes the long way."""
        committed = 0
        for sent in in_flight:
            try:
                self._check(sent.answer.get(), sent.batch, fence)
            except Conflict as exc:
                self.counters.conflicts += 1
                self._cache.pop(sent.service, None)
                log.info("write conflict", extra={"service": sent.service, "error": str(exc)})
                committed += self._sync_service(sent.service, sent.spec, fence)
                continue
            base = layout.service_path(self.zk_path, sent.service)
            current = state_after(sent.current, sent.batch, base)
            self._cache[sent.service] = current
            if current.options is None and not current.exists:
                self._cache.pop(sent.service, None)
            self._settled(sent.service, sent.spec)
            committed += len(sent.batch)
        return committed

    def _to_look_at(
        self, wanted: Mapping[str, ServiceSpec], full: bool, changes: Optional[Changes]
    ) -> Iterable[str]:
        if full:
            return set(wanted) | set(self.owned_services())
        names = changed_between(self._synced, changes)
        if names is not None:
            return set(names) | self._unsettled
        return set(wanted) | {s for s, st in self._cache.items() if st.options is not None}

    def _sync_service(self, service: str, spec: Optional[ServiceSpec], fence: str) -> int:
        if spec is not None and self._handled.get(service) is spec and service in self._cache:
            return 0
        self._handled.pop(service, None)
        for attempt in (1, 2):
            try:
                current = self._cache.get(service) or self.read_service(service)
                self._cache[service] = current
                ops = plan_service(self.zk_path, service, current, spec)
                self.counters.problems.pop(service, None)
                done = self._commit(service, current, ops, fence)
                self._settled(service, spec)
                return done
            except (LayoutError, TypeError) as exc:  # TypeError: options orjson cannot encode
                self.counters.problems[service] = str(exc)
                log.warning("service skipped", extra={"service": service, "error": str(exc)})
                self._settled(service, spec)
                return 0
            except Conflict as exc:
                self.counters.conflicts += 1
                self._cache.pop(service, None)
                log.info(
                    "write conflict",
                    extra={"service": service, "attempt": attempt, "error": str(exc)},
                )
        self._unsettled.add(service)
        return 0

    def _settled(self, service: str, spec: Optional[ServiceSpec]) -> None:
        self._unsettled.discard(service)
        if spec is not None:
            self._handled[service] = spec

    def _commit(self, service: str, current: ServiceState, ops: list[Op], fence: str) -> int:
        base = layout.service_path(self.zk_path, service)
        done = 0
        for batch in batches(ops, self.max_transaction_bytes):
            self._transaction(batch, fence)
            current = state_after(current, batch, base)
            self._cache[service] = current
            done += len(batch)
        if current.options is None and not current.exists:
            self._cache.pop(service, None)
        return done

    def _transaction(self, batch: list[Op], fence: str, catalog: bool = True) -> None:
        self._check(self._new_transaction(batch, fence).commit(), batch, fence, catalog)

    def _new_transaction(self, batch: list[Op], fence: str) -> Any:
        tx = self.client.transaction()
        tx.check(fence, 0)
        for op in batch:
            if isinstance(op, Create):
                tx.create(op.path, op.data)
            elif isinstance(op, Delete):
                tx.delete(op.path)
            else:
                tx.set_data(op.path, op.data)
        return tx

    def _check(self, results: list[Any], batch: list[Op], fence: str, catalog: bool = True) -> None:
        """Count a committed transaction; Deposed or Conflict when it failed."""
        failures = [r for r in results if isinstance(r, Exception)]
        if isinstance(results[0], (NoNodeError, BadVersionError)):
            raise Deposed(f"fencing check on {fence} failed: {type(results[0]).__name__}")
        if failures:
            cause = next((r for r in failures if not isinstance(r, RolledBackError)), failures[0])
            raise Conflict(f"{type(cause).__name__} in a transaction of {len(batch)} operations")
        if not catalog:
            self.counters.heartbeats += 1
            return
        self.counters.transactions += 1
        self.counters.created += sum(isinstance(op, Create) for op in batch)
        self.counters.deleted += sum(isinstance(op, Delete) for op in batch)
        self.counters.options_set += sum(isinstance(op, SetData) for op in batch)

    def write_heartbeat(self, payload: bytes, fence: str) -> None:
        """Create or rewrite `<bridge>/heartbeat` (fenced; outside every service path)."""
        path = layout.heartbeat_path(self.zk_path)
        if self._heartbeat_exists is None:
            self._heartbeat_exists = self.client.exists(path) is not None
        op: Op = SetData(path, payload) if self._heartbeat_exists else Create(path, payload)
        try:
            self._transaction([op], fence, catalog=False)
        except Conflict:
            self._heartbeat_exists = None
            raise
        self._heartbeat_exists = True


def _state_read(children: Any, options: Any) -> ServiceState:
    """A service's state from its pending reads (kazoo's async results)."""
    try:
        names, exists = frozenset(children.get()), True
    except NoNodeError:
        names, exists = frozenset(), False
    try:
        data: Optional[bytes] = options.get()[0]
    except NoNodeError:
        data = None
    return ServiceState(exists, names, data)
