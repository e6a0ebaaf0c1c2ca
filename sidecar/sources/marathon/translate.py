"""Marathon's apps and tasks as the neutral catalog (pure): every Marathon decision in one place.

Per app, :class:`MarathonTranslator` decides

- from the definition (cached while the definition object is the same): the labels
  (:mod:`.labels`) and deployment-group labels (:mod:`.deployment_labels`); one service per port
  with a service port (:func:`marathon_bridge.services.port_specs`, every networking mode);
  ports it cannot serve (not TCP, ``HAPROXY_{n}_ENABLED=false``, a bad ``HAPROXY_{n}_PORT``) as
  :class:`~sidecar.catalog.Skipped`; the Marathon health check behind ``HAPROXY_{n}_HEALTHCHECK``
  (:mod:`.health_checks`);
- from the tasks: each task's verdict (:mod:`.selection`: running, health results, the "was in
  rotation before" rule) and where it serves each port (host and host port, or container IP and
  container port). A task leaving (``TASK_KILLING``, ``TASK_UNREACHABLE``) that was in rotation
  is ``drain``; one that was not is ``out`` (so a draining task is ``out`` from the translation
  after: HAProxy keeps draining it on its own).

"In rotation before" is the previous catalog: the ready instances of the app's last translation
(or of a catalog loaded from disk, :meth:`MarathonTranslator.seed`). An app whose definition and
tasks are the same objects as last time, and whose verdicts are settled, keeps its very
:class:`~sidecar.catalog.Service` objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Optional

from marathon_bridge.services import CONTAINER, PortSpec, network_mode, port_specs_in_mode
from sidecar.catalog import (
    DRAIN,
    OUT,
    READY,
    Catalog,
    DeploymentGroup,
    Instance,
    Problem,
    Service,
    ServiceOptions,
    Skipped,
    service_key,
    updated_catalog,
)

from .deployment_labels import membership, names_deployment_group
from .health_checks import active_check
from .labels import DEFAULT_PORT_OPTIONS, AppOptions, LabelMemo, parse_app_labels_memo
from .model import MarathonState
from .selection import classify_tasks, has_health_checks

TaskMap = Mapping[str, Mapping[str, Any]]
_NONE: frozenset[str] = frozenset()
_NO_TASKS: TaskMap = MappingProxyType({})


class _Port:
    """One served port of an app, as its definition describes it."""

    __slots__ = ("container_port", "host_slot", "index", "key", "options")

    def __init__(
        self,
        key: str,
        index: int,
        options: ServiceOptions,
        host_slot: Optional[int],
        container_port: Optional[int],
    ) -> None:
        self.key = key
        self.index = index
        self.options = options
        self.host_slot = host_slot  # where task "ports" has this port; None: container IP
        self.container_port = container_port


class _Plan:
    """What an app's definition decides: its served ports, problems and skipped ports."""

    __slots__ = ("checked", "definition", "ports", "problems", "skipped")

    def __init__(
        self,
        definition: Mapping[str, Any],
        ports: Sequence[_Port],
        problems: Sequence[Problem],
        skipped: Sequence[Skipped],
    ) -> None:
        self.definition = definition
        self.checked = has_health_checks(definition)
        self.ports = tuple(ports)
        self.problems = tuple(problems)
        self.skipped = tuple(skipped)


class _Entry:
    """The translation of one app, reusable while its inputs stay the same objects."""

    __slots__ = ("plan", "services", "settled", "tasks")

    def __init__(
        self, plan: _Plan, tasks: TaskMap, services: tuple[Service, ...], settled: bool
    ) -> None:
        self.plan = plan
        self.tasks = tasks
        self.services = services
        # translating again from its own output gives the same verdicts
        self.settled = settled

    def ready(self) -> frozenset[str]:
        """The ids of the app's tasks now in rotation (every port has them all)."""
        if not self.services:
            return _NONE
        return frozenset(i.id for i in self.services[0].instances if i.state == READY)


class MarathonTranslator:
    """``MarathonState`` -> :class:`~sidecar.catalog.Catalog`, copy-on-write (module doc)."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._seeded: dict[str, frozenset[str]] = {}
        self._catalog = Catalog()
        # what undo() restores: all entries (a full translation) or the touched ones
        self._before: Optional[tuple[Any, ...]] = None

    def seed(self, catalog: Catalog) -> None:
        """Take the verdicts of ``catalog`` (e.g. loaded from disk) as "in rotation before"."""
        ready: dict[str, set[str]] = {}
        for service, instance in catalog.instances():
            if instance.state == READY:
                ready.setdefault(service.app_id, set()).add(instance.id)
        self._seeded = {app_id: frozenset(ids) for app_id, ids in ready.items()}
        self._entries = {}
        self._catalog = Catalog()

    def undo(self) -> None:
        """Forget the last :meth:`translate` (its catalog was not accepted): the verdicts of the
        one before stay the memory of "in rotation before"."""
        if self._before is not None:
            entries, touched, self._seeded, self._catalog = self._before
            if entries is not None:
                self._entries = entries
            for app_id, entry in touched.items():  # the apps an incremental one changed
                if entry is None:
                    self._entries.pop(app_id, None)
                else:
                    self._entries[app_id] = entry
            self._before = None

    def translate(self, state: MarathonState, apps: Optional[Iterable[str]] = None) -> Catalog:
        """The catalog of ``state``; the previous catalog object itself when nothing changed.

        ``apps``: only these apps may differ from the state translated last (the follower knows
        which apps an event touched); the others are not looked at. ``None``: every app.
        """
        before = self._entries
        changed: list[tuple[Optional[_Entry], Optional[_Entry]]] = []
        memo: LabelMemo = {}
        if apps is None:
            self._before = (before, {}, self._seeded, self._catalog)
            entries: dict[str, _Entry] = {}
            for app_id in state.apps:
                entries[app_id] = self._entry(state, app_id, before.get(app_id), changed, memo)
            changed.extend((e, None) for app_id, e in before.items() if app_id not in entries)
        else:  # the entries change in place; undo() puts the touched ones back
            entries = before
            touched = {app_id: before.get(app_id) for app_id in apps}
            self._before = (None, touched, self._seeded, self._catalog)
            for app_id, old in touched.items():
                if app_id in state.apps:
                    entries[app_id] = self._entry(state, app_id, old, changed, memo)
                elif old is not None:
                    del entries[app_id]
                    changed.append((old, None))
        self._entries = entries
        if changed:
            self._seeded = {}  # every app has its own history now
            self._catalog = _next_catalog(self._catalog, changed, entries)
        return self._catalog

    def _entry(
        self,
        state: MarathonState,
        app_id: str,
        entry: Optional[_Entry],
        changed: list[tuple[Optional[_Entry], Optional[_Entry]]],
        memo: LabelMemo,
    ) -> _Entry:
        """The translation of one app, the very entry when its inputs are the same objects;
        a new one is listed in ``changed`` when its services or plan differ."""
        definition = state.apps[app_id]
        tasks = state.tasks.get(app_id, _NO_TASKS)
        if (
            entry is not None
            and entry.tasks is tasks
            and entry.plan.definition is definition
            and entry.settled
        ):
            return entry
        new = self._translate(app_id, definition, tasks, entry, memo)
        if entry is None or new.services is not entry.services or _notes_differ(entry, new):
            changed.append((entry, new))
        return new

    def _translate(
        self,
        app_id: str,
        definition: Mapping[str, Any],
        tasks: TaskMap,
        entry: Optional[_Entry],
        memo: LabelMemo,
    ) -> _Entry:
        if entry is not None:
            plan = entry.plan if entry.plan.definition is definition else None
            prev_ready = entry.ready()
        else:
            plan = None
            prev_ready = self._seeded.get(app_id, _NONE)
        if plan is None:
            plan = plan_app(app_id, definition, memo)
        if prev_ready:
            prev_ready = frozenset(t for t in prev_ready if t in tasks)
        services, ready = instances_of(app_id, plan, tasks, prev_ready)
        if entry is not None and services == entry.services:
            services = entry.services  # the same verdicts: keep the very objects
        settled = ready == prev_ready
        return _Entry(plan, tasks, services, settled)


def _notes_differ(old: _Entry, new: _Entry) -> bool:
    """Whether the problems or skipped ports of an app differ (a definition read anew)."""
    if old.plan is new.plan:
        return False
    return old.plan.problems != new.plan.problems or old.plan.skipped != new.plan.skipped


def catalog_from_apps(
    apps_with_tasks: Iterable[Any], previously_in: frozenset[str] = frozenset()
) -> Catalog:
    """The catalog of a Marathon app list (``/v2/apps?embed=apps.tasks``), in one step.

    ``previously_in``: ids of the tasks that were in rotation before (the previous catalog's
    ready instances). For tests, ``--once`` and the state file of older versions.
    """
    return catalog_of(MarathonState.from_apps(apps_with_tasks), previously_in)


def catalog_of(state: MarathonState, previously_in: frozenset[str] = frozenset()) -> Catalog:
    """:func:`catalog_from_apps` for a state at hand."""
    seeded: dict[str, frozenset[str]] = {}
    for app_id, tasks in state.tasks.items():
        found = frozenset(t for t in tasks if t in previously_in)
        if found:
            seeded[app_id] = found
    translator = MarathonTranslator()
    translator._seeded = seeded
    return translator.translate(state)


def _next_catalog(
    previous: Catalog,
    changed: list[tuple[Optional[_Entry], Optional[_Entry]]],
    entries: Mapping[str, _Entry],
) -> Catalog:
    """``previous`` with the services of changed and removed apps replaced (copy-on-write)."""
    services: dict[str, Optional[Service]] = {}
    notes_changed = False
    for old, _new in changed:
        if old is not None:
            services.update(dict.fromkeys(s.key for s in old.services))
            notes_changed = notes_changed or bool(old.plan.problems or old.plan.skipped)
    for _old, new in changed:
        if new is not None:
            services.update((s.key, s) for s in new.services)
            notes_changed = notes_changed or bool(new.plan.problems or new.plan.skipped)
    if not notes_changed:
        return updated_catalog(previous, services)
    problems: list[Problem] = []
    skipped: list[Skipped] = []
    for entry in entries.values():
        if entry.plan.problems:
            problems.extend(entry.plan.problems)
        if entry.plan.skipped:
            skipped.extend(entry.plan.skipped)
    problems.sort(key=lambda p: (p.app_id, p.label, p.reason))
    skipped.sort(key=lambda s: (s.app_id, -1 if s.port_index is None else s.port_index, s.reason))
    return updated_catalog(previous, services, tuple(problems), tuple(skipped))


# --- what the definition decides --------------------------------------------------------------


def plan_app(app_id: str, definition: Mapping[str, Any], memo: Optional[LabelMemo]) -> _Plan:
    """Labels, ports and health checks of one app: its served ports and what it leaves out."""
    ports: list[_Port] = []
    problems: list[Problem] = []
    skipped: list[Skipped] = []
    options, label_problems = parse_app_labels_memo(definition, memo)
    problems.extend(label_problems)
    if options is None:
        skipped.append(Skipped(app_id, "app labels cannot be used"))
        return _Plan(definition, ports, problems, skipped)
    group = None
    if names_deployment_group(definition.get("labels")):
        group, group_problems = membership(definition)
        problems.extend(group_problems)
    try:
        mode = network_mode(definition)
        specs = port_specs_in_mode(definition, mode)
    except Exception:  # a definition Marathon would not produce; leave the app out
        skipped.append(Skipped(app_id, "app ports cannot be read"))
        return _Plan(definition, ports, problems, skipped)
    if options.ports and max(options.ports) >= len(specs):  # port indexes are 0..n-1
        for index in sorted(i for i in options.ports if i >= len(specs)):
            problem = Problem(app_id, f"HAPROXY_{index}_*", "the app has no port with this index")
            problems.append(problem)
    notes = (definition, problems, skipped)
    for spec, host_slot in zip(specs, host_slots(mode, specs)):
        served = _served_options(app_id, spec, options, group, notes)
        if served is not None:
            key = service_key(app_id, spec.index)
            ports.append(_Port(key, spec.index, served, host_slot, spec.container_port))
    return _Plan(definition, ports, problems, skipped)


def host_slots(mode: str, specs: list[PortSpec]) -> list[Optional[int]]:
    """For each port (in order): its position in a task's host ``ports``, or ``None`` when tasks
    serve it on their container IP (container networking without a host port).

    The rule of ``marathon_bridge.services.task_endpoints``, computed once per app instead of once
    per task (tests/sidecar_core checks both agree).
    """
    if mode != CONTAINER:
        return list(range(len(specs)))
    slots: list[Optional[int]] = []
    slot = 0
    for spec in specs:
        if spec.host_port is not None:
            slots.append(slot)
            slot += 1
        else:
            slots.append(None)
    return slots


def _served_options(
    app_id: str,
    spec: PortSpec,
    options: AppOptions,
    group: Optional[DeploymentGroup],
    notes: tuple[Mapping[str, Any], list[Problem], list[Skipped]],
) -> Optional[ServiceOptions]:
    """The options of one port, or ``None`` when it is not served (skips recorded in
    ``notes``: the definition, its problems and its skipped ports)."""
    definition, problems, skipped = notes
    service_port = spec.service_port
    if not isinstance(service_port, int) or not 0 < service_port <= 65535:
        return None  # no service port (yet): nothing to bind
    index = spec.index
    opts = options.ports.get(index, DEFAULT_PORT_OPTIONS)
    protocol = spec.protocol
    if protocol != "tcp" and "tcp" not in str(protocol).lower().split(","):
        skipped.append(Skipped(app_id, "only tcp ports are proxied", index))
        return None
    if opts.skip_reason:
        skipped.append(Skipped(app_id, opts.skip_reason, index))
        return None
    if not opts.enabled:
        skipped.append(Skipped(app_id, "disabled by HAPROXY_{n}_ENABLED", index))
        return None
    check = None
    if opts.health is not None:
        check = active_check(app_id, definition, index, problems)
    fields = (
        service_port,
        opts.bind_port or service_port,
        opts.mode,
        opts.balance,
        opts.bind_addr,
        opts.vhosts,
        opts.path,
        opts.weight,
        opts.sticky,
        options.groups if opts.groups is None else opts.groups,
        group,
        check,
    )
    return tuple.__new__(ServiceOptions, fields)


# --- what the tasks decide --------------------------------------------------------------------


def instances_of(
    app_id: str, plan: _Plan, tasks: TaskMap, prev_ready: frozenset[str]
) -> tuple[tuple[Service, ...], frozenset[str]]:
    """The services of an app with their instances, and the ids now in rotation."""
    if not plan.ports:
        return (), _NONE
    verdicts = classify_tasks(plan.definition, tasks.values(), prev_ready)
    rows: list[tuple[str, Mapping[str, Any], tuple[Any, ...]]] = []
    ready: list[str] = []
    checked = plan.checked
    for task_id, rotation, leaving, reason in verdicts:
        if rotation:
            state = READY
            ready.append(task_id)
        elif leaving and task_id in prev_ready:
            state = DRAIN
        else:
            state = OUT
        task = tasks[task_id]
        version = task.get("version")
        status = task.get("state")
        facts = (
            state,
            reason,
            1,
            app_id,
            version if type(version) is str else "",
            status if type(status) is str else "",
            _healthy(task) if checked else None,
        )
        rows.append((task_id, task, facts))
    services = tuple(
        tuple.__new__(
            Service, (port.key, app_id, port.index, port.options, _port_instances(port, rows))
        )
        for port in plan.ports
    )
    return services, frozenset(ready)


def _port_instances(
    port: _Port, rows: list[tuple[str, Mapping[str, Any], tuple[Any, ...]]]
) -> tuple[Instance, ...]:
    """One instance per task for ``port``: where the task serves it, and its verdict."""
    host_slot, container_port = port.host_slot, port.container_port
    new = tuple.__new__  # Instance(*fields) without its Python-level __new__
    out = []
    for task_id, task, facts in rows:
        # the usual case of task_address() (a host name and an int host port), inline
        host = task.get("host")
        where: Any = None
        if host_slot is not None:
            host_ports = task.get("ports")
            if type(host_ports) is list and host_slot < len(host_ports):
                where = host_ports[host_slot]
        if host and type(host) is str and type(where) is int and 0 < where < 65536:
            out.append(new(Instance, (task_id, host, where, *facts)))
        else:
            found = task_address(task, host_slot, container_port) or ("", None)
            out.append(new(Instance, (task_id, *found, *facts)))
    return tuple(out)


def _healthy(task: Mapping[str, Any]) -> bool:
    """Whether every health result of a task of a checked app is alive (and there is one)."""
    results = task.get("healthCheckResults") or []
    alive = [bool(r.get("alive")) for r in results if isinstance(r, Mapping)]
    return bool(alive) and all(alive)


def task_address(
    task: Mapping[str, Any], host_slot: Optional[int], container_port: Optional[int]
) -> Optional[tuple[str, int]]:
    """Where ``task`` serves a port: (host or IP text, port), or ``None`` if it lacks it."""
    if host_slot is None:
        raw = task.get("ipAddresses") or []
        first = raw[0] if isinstance(raw, list) and raw and isinstance(raw[0], Mapping) else {}
        host = str(first.get("ipAddress") or "")
        port: Any = container_port
    else:
        host = str(task.get("host") or "")
        ports = task.get("ports")
        port = ports[host_slot] if isinstance(ports, list) and host_slot < len(ports) else None
        if isinstance(port, float):
            port = int(port)
    if not host or isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        return None
    return host, port
