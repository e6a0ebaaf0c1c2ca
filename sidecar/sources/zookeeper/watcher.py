"""The sidecar's ZooKeeper watcher: every service under `<zk-path>`, its instances and options.

Watches (never TreeCache, never a write: a missing path is waited for, not created):
- `<zk-path>`: a NodeWatch (DataWatch + ChildrenWatch) lists the services;
- `<zk-path>/<service>`: one NodeWatch per service lists its instance children;
- `<bridge>/options`: a NodeWatch lists the services that have options, and one DataWatch per
  options node reads them.

kazoo's callbacks only put the news on a queue. One worker thread takes everything queued,
decodes `base64_` names locally, reads a plain (nerve) child's data once and caches it by name,
and calls `on_update(ServiceUpdate)` for each service whose update changed, then `on_batch()`
once for everything it took (a consumer builds one catalog per batch). A slow callback delays
later updates but never kazoo. Each new problem of a child is logged once here; a bad options
node is left to the consumer to report (it becomes the service's problem in the catalog).

Through SUSPENDED and LOST nothing is delivered, so the consumer keeps the last instances; kazoo's
recipes read again once connected (a new session included) and only differences are delivered.
A plain child whose read fails for lack of a connection holds back its service's update until the
connection is back, so a backend is never dropped because ZooKeeper was away.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from kazoo.exceptions import KazooException, NoNodeError
from kazoo.protocol.states import KazooState
from kazoo.recipe.watchers import DataWatch

from sidecar.sources.zookeeper import layout
from sidecar.sources.zookeeper.layout import Instance, LayoutError, Problem
from sidecar.sources.zookeeper.node_watch import NodeWatch
from sidecar.sources.zookeeper.update import ServiceUpdate, assemble, complete, gone

log = logging.getLogger(__name__)

Event = tuple[Any, ...]
LISTINGS = ("services", "options-list")  # events that carry a root's whole listing


@dataclass
class _Service:
    name: str
    watch: Optional[NodeWatch] = None
    children: Optional[list[str]] = None  # None: the node is not there (or not read yet)
    seen: bool = False  # its first children list (or its absence) was handled
    read: dict[str, Union[Instance, Problem]] = field(default_factory=dict)
    waiting_for_connection: bool = False


@dataclass
class _Options:
    watch_active: bool = False
    seen: bool = False
    value: Optional[Mapping[str, Any]] = None
    problem: Optional[Problem] = None


class CatalogWatcher:
    """Delivers "service X now has instances [...]" to `on_update`, on its own thread."""

    def __init__(
        self,
        client: Any,
        zk_path: str,
        on_update: Callable[[ServiceUpdate], None],
        keep_on_empty: bool = True,
        on_state: Optional[Callable[[str], None]] = None,
        on_batch: Optional[Callable[[], None]] = None,
    ) -> None:
        self.client = client
        self.zk_path = layout.check_zk_path(zk_path)
        self.keep_on_empty = keep_on_empty
        self._on_update = on_update
        self._on_state = on_state
        self._on_batch = on_batch
        self._queue: queue.Queue[Event] = queue.Queue()
        self._services: dict[str, _Service] = {}
        self._options: dict[str, _Options] = {}
        self._delivered: dict[str, ServiceUpdate] = {}
        self._delivered_lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._roots: list[NodeWatch] = []
        self._listed: set[str] = set()  # roots whose first listing was handled
        self._service_names: frozenset[str] = frozenset()  # the last listing of <zk-path>
        self._option_names: frozenset[str] = frozenset()  # the last listing of the options
        self._ended: set[str] = set()  # services whose watch ended (node gone), still known
        self._options_ended: set[str] = set()  # options whose watch ended (node gone)
        self._synced = threading.Event()
        self.state: str = KazooState.CONNECTED if client.connected else KazooState.SUSPENDED
        self.problems: dict[str, str] = {}  # service names under <zk-path> that were skipped

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="zookeeper-watcher", daemon=True)
        self._thread.start()
        self.client.add_listener(self._on_connection)
        put = self._queue.put
        self._roots = [  # options first: a service's first update then carries them
            NodeWatch(
                self.client,
                layout.options_root(self.zk_path),
                lambda names: put(("options-list", names)),
                lambda: put(("options-list", [])),
                stop_when_gone=False,
            ),
            NodeWatch(
                self.client,
                self.zk_path,
                lambda names: put(("services", names)),
                lambda: put(("services", [])),
                stop_when_gone=False,
            ),
        ]
        for root in self._roots:
            root.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.client.remove_listener(self._on_connection)
        self._queue.put(("stop",))
        if self._thread is not None:
            self._thread.join(timeout)
        for watch in self._roots:
            watch.cancel()

    @property
    def synced(self) -> bool:
        """The first full read was delivered (see `wait_synced`)."""
        return self._synced.is_set()

    def wait_synced(self, timeout: Optional[float] = None) -> bool:
        """Wait until the first full read is delivered: every service listed at start was read."""
        return self._synced.wait(timeout)

    def snapshot(self) -> dict[str, ServiceUpdate]:
        """The last update delivered per service (services that exist)."""
        with self._delivered_lock:
            return {name: u for name, u in self._delivered.items() if u.exists}

    # --- kazoo's threads: hand over only ---------------------------------------------------

    def _on_connection(self, state: str) -> None:
        self._queue.put(("state", state))

    # --- the worker -----------------------------------------------------------------------

    def _take_queued(self) -> list[Event]:
        events = []
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                return events

    def _work(self) -> None:
        while True:
            events = [self._queue.get(), *self._take_queued()]
            dirty: set[str] = set()
            while events:  # handling starts watches whose first reads queue more: take those too
                for event in _latest_listings(events):
                    if event[0] == "stop":
                        self._cancel_all()
                        return
                    dirty |= self._handle(event)
                events = self._take_queued()
            for service in sorted(dirty):
                self._refresh(service)
            if not self._synced.is_set() and self._first_read_done():
                self._synced.set()
            self._end_batch()

    def _first_read_done(self) -> bool:
        return (
            self._listed == {"services", "options-list"}
            and all(r.seen for r in self._services.values())
            and all(e.seen for e in self._options.values())
        )

    def _handle(self, event: Event) -> set[str]:
        kind = event[0]
        if kind in ("services", "options-list"):
            self._listed.add(kind)
        if kind == "services":
            return self._on_services(event[1])
        if kind == "children":
            return self._on_children(event[1], event[2])
        if kind == "gone":
            return self._on_gone(event[1])
        if kind == "options-list":
            return self._on_options_list(event[1])
        if kind == "options":
            return self._on_options(event[1], event[2])
        return self._on_state_change(event[1])

    def _on_services(self, names: list[str]) -> set[str]:
        """A listing of the catalog root: what differs from the last one is handled (a service
        created while 10,000 exist costs that service)."""
        listed = frozenset(names)
        added, removed = listed - self._service_names, self._service_names - listed
        self._service_names = listed
        problems = {n: why for n, why in self.problems.items() if n not in removed}
        for name in sorted(added):
            try:
                layout.check_service_name(name)
            except LayoutError as exc:
                log.warning("service skipped", extra={"service": name[:200], "error": str(exc)})
                problems[name] = str(exc)
        if problems != self.problems:
            self.problems = problems  # replaced, never changed: the source reads it
        for name in sorted((added | (self._ended & listed)) - problems.keys()):
            self._ended.discard(name)
            record = self._services.setdefault(name, _Service(name))
            if record.watch is None or not record.watch.active:
                record.watch = self._watch_service(name)
        dropped = set(removed & self._services.keys())
        for name in dropped:
            self._ended.discard(name)
            record = self._services.pop(name)
            if record.watch is not None:
                record.watch.cancel()
        return dropped

    def _watch_service(self, service: str) -> NodeWatch:
        put = self._queue.put
        watch = NodeWatch(
            self.client,
            layout.service_path(self.zk_path, service),
            lambda names: put(("children", service, names)),
            lambda: put(("gone", service)),
            stop_when_gone=True,
        )
        watch.start()
        return watch

    def _on_children(self, service: str, names: list[str]) -> set[str]:
        record = self._services.get(service)
        if record is None:
            return set()
        record.children = list(names)
        record.seen = True
        return {service}

    def _on_gone(self, service: str) -> set[str]:
        record = self._services.get(service)
        if record is None:
            return set()
        record.children = None
        record.seen = True
        record.read.clear()
        self._ended.add(service)  # a node created again under the same name needs a new watch
        return {service}

    def _on_options_list(self, names: list[str]) -> set[str]:
        """A listing of the options root: what differs from the last one is handled."""
        listed = frozenset(names)
        added, removed = listed - self._option_names, self._option_names - listed
        self._option_names = listed
        for name in sorted(added | (self._options_ended & listed)):
            self._options_ended.discard(name)
            if not _valid_service_name(name):
                continue
            entry = self._options.setdefault(name, _Options())
            if not entry.watch_active:
                entry.watch_active = True
                self._watch_options(name)
        changed = set()
        for name in removed:
            self._options_ended.discard(name)
            if self._options.pop(name, None) is not None:
                changed.add(name)
        return changed

    def _watch_options(self, service: str) -> None:
        def read(data: Optional[bytes], stat: Any) -> Optional[bool]:
            self._queue.put(("options", service, data if stat is not None else None))
            return False if stat is None else None

        DataWatch(self.client, layout.options_path(self.zk_path, service), read)

    def _on_options(self, service: str, data: Optional[bytes]) -> set[str]:
        entry = self._options.get(service)
        if entry is None:
            return set()
        entry.seen = True
        if data is None:
            entry.watch_active = False  # the watch ended; a reappearing node starts a new one
            self._options_ended.add(service)
            entry.value, entry.problem = None, None
            return {service}
        try:
            entry.value, entry.problem = layout.parse_options(data), None
        except LayoutError as exc:
            path = layout.options_path(self.zk_path, service)
            entry.problem = Problem(path, str(exc))
        return {service}

    def _on_state_change(self, state: str) -> set[str]:
        self.state = state
        if self._on_state is not None:
            self._call(self._on_state, state)
        if state != KazooState.CONNECTED:
            return set()
        return {name for name, r in self._services.items() if r.waiting_for_connection}

    def _refresh(self, service: str) -> None:
        record = self._services.get(service)
        previous = self._delivered.get(service)
        if record is None or record.children is None:
            if previous is not None and previous.exists:
                self._deliver(gone(service))
            return
        if not self._read_children(record):
            return
        options = self._options.get(service, _Options())
        update = assemble(
            service,
            record.children,
            record.read,
            options.value,
            options.problem,
            previous,
            self.keep_on_empty,
        )
        if update == previous:
            return
        if complete(update) or complete(update, self._options_expected(service)):
            self._deliver(update)

    def _options_expected(self, service: str) -> bool:
        """Whether to wait for `service`'s options: listed, or there (the listing can lag behind
        the service's own children), or the service is going away with them (its removal
        follows). Reads only for a service whose instances claim to be ours and has no options."""
        if service in self._options:
            return True
        try:
            if self.client.exists(layout.options_path(self.zk_path, service)) is not None:
                return True
            return self.client.exists(layout.service_path(self.zk_path, service)) is None
        except KazooException:
            return True  # cannot tell now: hold, as for a plain child's read

    def _read_children(self, record: _Service) -> bool:
        """Decode or read every new child; False when a read must wait for the connection."""
        children = set(record.children or ())
        for name in set(record.read) - children:
            del record.read[name]
        base = layout.service_path(self.zk_path, record.name)
        record.waiting_for_connection = False
        for name in sorted(children - set(record.read)):
            result = layout.decode_child_name(base, name)
            if result is None:
                try:
                    result = layout.instance_from_data(
                        base, name, self.client.get(f"{base}/{name}")[0]
                    )
                except NoNodeError:
                    continue  # deleted since it was listed; its removal is the next event
                except KazooException:
                    record.waiting_for_connection = True
                    return False
            record.read[name] = result
        return True

    def _deliver(self, update: ServiceUpdate) -> None:
        previous = self._delivered.get(update.service)
        old = set(previous.problems) if previous else set()
        for problem in update.problems:
            if problem not in old and problem != update.options_problem:
                log.warning(
                    "catalog entry skipped", extra={"path": problem.path, "error": problem.reason}
                )
        with self._delivered_lock:
            self._delivered[update.service] = update
        self._call(self._on_update, update)

    def _end_batch(self) -> None:
        if self._on_batch is None:
            return
        try:
            self._on_batch()
        except Exception:
            log.exception("watcher callback failed")

    def _call(self, function: Callable[[Any], None], argument: Any) -> None:
        try:
            function(argument)
        except Exception:
            log.exception("watcher callback failed")

    def _cancel_all(self) -> None:
        for record in self._services.values():
            if record.watch is not None:
                record.watch.cancel()


def _latest_listings(events: list[Event]) -> list[Event]:
    """``events`` without the listings of a root that a later listing of it replaces (a root
    with 10,000 children listed after each of many creations is handled once per batch)."""
    last = {event[0]: i for i, event in enumerate(events) if event[0] in LISTINGS}
    return [e for i, e in enumerate(events) if e[0] not in LISTINGS or last[e[0]] == i]


def _valid_service_name(name: str) -> bool:
    try:
        layout.check_service_name(name)
    except LayoutError:
        return False
    return True
