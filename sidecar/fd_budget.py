"""HAProxy's file descriptors as a budget: the ``maxconn`` that fits the open-files limit (pure).

HAProxy 2.6 sizes its descriptor table when it starts or reloads, from its config (measured with
``show info``'s ``Maxsock`` on Debian's 2.6.12; docs/operations.md, "Open files"):

    needed = 2 x maxconn                 a client and a server side per connection
           + 3 x threads                 a poller and a wake-up pipe per thread
           + 20 + 1                      HAProxy's own reserve; the master-worker socket pair (-W)
           + 11 per master CLI socket    (-S: the listener and its 10 connections)
           + 1 per listener              every bind address, every stats socket
           + 1 per server with ``check`` (servers added at runtime are not counted)

Log targets, the server-state file and an old worker during a reload (its own process, its own
table) cost nothing here. Above the hard limit HAProxy refuses to start (``strict-limits``, its
default); the config always says ``no strict-limits`` and :func:`fit_model` keeps ``maxconn``
low enough that what it asks for fits:

1. ``maxconn`` is the wanted one (``--maxconn``) when it fits, else lowered to fit, never below
   :data:`MAXCONN_FLOOR`;
2. when even the floor does not fit: passive checks go (each one costs a descriptor), then the
   apps' active checks, then listeners, highest service ports first (those apps are listed as
   skipped), until the floor fits; what the step leaves goes to ``maxconn``. Every app keeps
   its listener as long as checks can go: an app without checks still serves (Marathon's
   health results still take its failing tasks out), an app without a listener does not.

Servers added through the runtime API between reloads are not in HAProxy's count, so room for
:data:`CHECK_RESERVE_STEP` of them is kept; the reserve grows in steps (a reload then follows,
since ``maxconn`` changes) and shrinks only after a large drop, so scaling one app does not
reload HAProxy each time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

from sidecar.apply.model_subsets import without_frontends
from sidecar.haproxy_model import (
    BackendSpec,
    HAProxyModel,
    backend_positions,
    changed_backends,
    listener_signature,
    model_counts,
    patched_model,
    with_fit,
)

HAPROXY_OWN = 20  # HAProxy's own reserve (standard streams, the poller's bookkeeping...)
MASTER_WORKER = 1  # -W: the socket pair between the master and its worker
PER_MASTER_SOCKET = 11  # -S: the master CLI listener and its 10 connections
PER_THREAD = 3  # the poller's descriptor and a wake-up pipe, per thread
MAX_THREADS = 64  # HAProxy 2.6's default nbthread: the CPUs it may run on, at most 64
# The lowest maxconn the sidecar lowers to. Above maxconn, connections are not refused: they wait
# in the listening socket's backlog. 256 concurrent connections is what a node-local proxy in
# front of one node's tasks rarely exceeds, and under the common 1,024 container limit it still
# leaves about 470 descriptors for listeners and checks (about 100 apps x 3 tasks, every check).
MAXCONN_FLOOR = 256
CHECK_RESERVE_STEP = 64
LEFT_OUT_REASON = "not enough open files for its listener"

PASSIVE = "passive checks"
CHECKS = "health checks"
LISTENERS = "listeners"


@dataclass(frozen=True)
class BudgetFacts:
    """What the budget starts from: the limit (``None``: unknown, nothing is lowered), the
    wanted ``maxconn``, HAProxy's threads and what the template adds beside the model."""

    limit: Optional[int]
    wanted: int
    threads: int
    template_listeners: int = 1  # the default template's stats socket
    template_checks: int = 0
    master_sockets: int = 1


@dataclass(frozen=True)
class FdNeeds:
    """Descriptors a config holds apart from its connections."""

    listeners: int
    checked_servers: int
    threads: int
    master_sockets: int = 1

    @property
    def fixed(self) -> int:
        return (
            HAPROXY_OWN
            + MASTER_WORKER
            + PER_MASTER_SOCKET * self.master_sockets
            + PER_THREAD * self.threads
        )

    def total(self, maxconn: int, checks: Optional[int] = None) -> int:
        """HAProxy's own count (``show info``'s ``Maxsock``) at ``maxconn``."""
        checked = self.checked_servers if checks is None else checks
        return 2 * maxconn + self.fixed + self.listeners + checked


@dataclass(frozen=True)
class FdBudget:
    """The outcome: the ``maxconn`` in effect and why (see the module doc)."""

    limit: Optional[int]
    wanted: int
    effective: int
    needed: int  # HAProxy's count for the whole catalog at `effective` (> limit: parts left out)
    wanted_needs: int  # the limit that runs `wanted` with everything (and the reserve)
    floor: int  # the lowest maxconn the sidecar goes to (MAXCONN_FLOOR, or `wanted` if lower)
    floor_needs: int  # the limit that runs the floor with everything (and the reserve)
    reserved_checks: int
    left_out: str = ""  # "" | PASSIVE | CHECKS | LISTENERS: the last thing given up
    unchecked_servers: int = 0  # servers whose check was given up
    apps_left_out: tuple[str, ...] = ()

    @property
    def lowered(self) -> bool:
        return self.effective < self.wanted

    @property
    def exhausted(self) -> bool:
        """Even the floor does not fit with everything: checks or listeners were given up."""
        return bool(self.left_out)

    @property
    def key(self) -> tuple[Any, ...]:
        """What a change of is worth a log line (not every added server)."""
        return (self.limit, self.wanted, self.effective, self.left_out, len(self.apps_left_out))

    def reason(self) -> str:
        """The operator's explanation (for /health and the log); "" when nothing is lowered."""
        limit = self.limit
        if limit is None or not (self.lowered or self.exhausted):
            return ""
        head = f"maxconn {self.effective} instead of {self.wanted}" if self.lowered else "maxconn"
        head += f": HAProxy's open-files limit is {limit:,}"
        wanted = (
            f"by {self.wanted_needs - limit:,} (to {self.wanted_needs:,}) for maxconn {self.wanted}"
        )
        if not self.exhausted:
            return f"{head}, maxconn {self.wanted} needs {self.wanted_needs:,}; raise it {wanted}"
        return (
            f"{head} and even maxconn {self.floor} with every check and listener needs "
            f"{self.floor_needs:,}, so {self._given_up()}; raise the hard limit by "
            f"{self.floor_needs - limit:,} (to {self.floor_needs:,}) to serve everything, {wanted}"
        )

    def _given_up(self) -> str:
        parts = []
        if self.unchecked_servers:
            what = "passive checks" if self.left_out == PASSIVE else "health checks"
            parts.append(f"{what} are off for {self.unchecked_servers:,} servers")
        if self.apps_left_out:
            parts.append(f"{len(self.apps_left_out):,} apps are left out")
        return " and ".join(parts) or "nothing else fits"

    def as_dict(self) -> dict[str, Any]:
        return {
            "fd_limit": self.limit,
            "fd_needed": self.needed,
            "maxconn_wanted": self.wanted,
            "maxconn_effective": self.effective,
            "left_out": self.left_out or None,
            "unchecked_servers": self.unchecked_servers,
            "apps_left_out": len(self.apps_left_out),
        }


def template_needs(config_text: str) -> tuple[int, int]:
    """(listeners, checked servers) a config text holds: what a template renders beside the
    model (render it for an empty model). Counts bind addresses, stats sockets, checked servers."""
    listeners = checks = 0
    for line in config_text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "bind" and len(words) > 1:
            listeners += len([a for a in words[1].split(",") if a])
        elif words[:2] == ["stats", "socket"]:
            listeners += 1
        elif words[0] == "server" and "check" in words[3:]:
            checks += 1
    return listeners, checks


def count_needs(model: HAProxyModel, facts: BudgetFacts) -> FdNeeds:
    """What ``model`` (rendered with the template of ``facts``) holds besides connections."""
    binds, checked = model_counts(model)  # once per model (patched models adjust them)
    listeners = facts.template_listeners + binds
    checks = facts.template_checks + checked
    return FdNeeds(listeners, checks, facts.threads, facts.master_sockets)


def check_reserve(checks: int, previous: Optional[int] = None) -> int:
    """Descriptors kept for checked servers: the next step above ``checks``; the previous
    reserve stays while it still covers ``checks`` and is not two steps too large."""
    if previous is not None and checks < previous <= checks + 2 * CHECK_RESERVE_STEP:
        return previous
    return (checks // CHECK_RESERVE_STEP + 1) * CHECK_RESERVE_STEP


class FitCache:
    """The last model stripped of its checks, per kind (what went in, what came out, servers
    unchecked): the next model patched from that input is stripped by patching the output, so
    an event costs what it changed. Optional; one per daemon."""

    def __init__(self) -> None:
        self.stripped: dict[bool, tuple[HAProxyModel, HAProxyModel, int]] = {}


def fit_model(
    model: HAProxyModel,
    facts: BudgetFacts,
    previous: Optional[FdBudget] = None,
    cache: Optional[FitCache] = None,
) -> tuple[HAProxyModel, FdBudget]:
    """``model`` with the ``maxconn`` that fits ``facts.limit`` (parts given up when even the
    floor does not fit), and the budget that explains it."""
    needs = count_needs(model, facts)
    reserve = check_reserve(
        needs.checked_servers, previous.reserved_checks if previous is not None else None
    )
    wanted = facts.wanted
    floor = min(wanted, MAXCONN_FLOOR)
    with_reserve = needs.total(0, reserve)
    budget = FdBudget(
        limit=facts.limit,
        wanted=wanted,
        effective=wanted,
        needed=needs.total(wanted),
        wanted_needs=with_reserve + 2 * wanted,
        floor=floor,
        floor_needs=with_reserve + 2 * floor,
        reserved_checks=reserve,
    )
    if facts.limit is None:
        return with_fit(model, wanted, budget), budget
    room = (facts.limit - with_reserve) // 2
    if room >= floor:
        effective = min(wanted, room)
        budget = replace(budget, effective=effective, needed=needs.total(effective))
        return with_fit(model, effective, budget), budget
    fitted, budget = _give_up_parts(model, facts, budget, floor, cache)
    budget = replace(budget, needed=needs.total(budget.effective))
    return with_fit(fitted, budget.effective, budget), budget


def _give_up_parts(
    model: HAProxyModel,
    facts: BudgetFacts,
    budget: FdBudget,
    floor: int,
    cache: Optional[FitCache] = None,
) -> tuple[HAProxyModel, FdBudget]:
    """Even the floor does not fit: passive checks go, then active ones, then listeners; once
    one step fits, the room it leaves goes to maxconn."""
    assert facts.limit is not None
    budget = replace(budget, effective=floor)
    for left_out, keep_active in ((PASSIVE, True), (CHECKS, False)):
        fitted, unchecked = _without_checks(model, keep_active, cache)
        needs = count_needs(fitted, facts)
        budget = replace(budget, left_out=left_out, unchecked_servers=unchecked)
        room = (facts.limit - needs.total(0, check_reserve(needs.checked_servers))) // 2
        if room >= floor:  # what the checks left goes to maxconn
            return fitted, replace(budget, effective=min(budget.wanted, room))
    return _fit_listeners(fitted, facts, budget, floor)


def _without_checks(
    model: HAProxyModel, keep_active: bool, cache: Optional[FitCache] = None
) -> tuple[HAProxyModel, int]:
    """``model`` without passive checks (and without active ones unless ``keep_active``);
    the number of servers that lost their check."""
    last = cache.stripped.get(keep_active) if cache is not None else None
    result = _patched_strip(model, keep_active, last) if last is not None else None
    if result is None:
        backends: list[BackendSpec] = []
        unchecked = 0
        for b in model.backends:
            stripped, lost = _strip(b, keep_active)
            backends.append(stripped)
            unchecked += lost
        result = replace(model, backends=tuple(backends)), unchecked
    if cache is not None:
        cache.stripped[keep_active] = (model, *result)
    return result


def _strip(backend: BackendSpec, keep_active: bool) -> tuple[BackendSpec, int]:
    """One backend without its checks; the number of servers that lost theirs."""
    active = backend.health_check if keep_active else None
    if backend.passive_check is None and active is backend.health_check:
        return backend, 0
    if active is not None:
        return replace(backend, passive_check=None), 0
    servers = tuple(s._replace(check=False) for s in backend.servers)
    stripped = replace(backend, health_check=None, passive_check=None, servers=servers)
    return stripped, len(servers)


def _patched_strip(
    model: HAProxyModel, keep_active: bool, last: tuple[HAProxyModel, HAProxyModel, int]
) -> Optional[tuple[HAProxyModel, int]]:
    """The last stripped model with the backends the builder changed since stripped again,
    when only servers changed (the same listeners); ``None`` otherwise."""
    before, stripped, unchecked = last
    names = changed_backends(before, model)
    parts, old_parts = listener_signature(model)[:2], listener_signature(before)[:2]
    if names is None or any(a is not b for a, b in zip(parts, old_parts)):
        return None
    at, old_at = backend_positions(model), backend_positions(before)
    changed: dict[str, BackendSpec] = {}
    for name in names:
        if name not in at or name not in old_at:
            return None
        backend, old = model.backends[at[name]], before.backends[old_at[name]]
        if backend is not old:  # the names are a superset
            changed[name], lost = _strip(backend, keep_active)
            unchecked += lost - _strip(old, keep_active)[1]
    return patched_model(stripped, changed), unchecked


def _fit_listeners(
    model: HAProxyModel, facts: BudgetFacts, budget: FdBudget, floor: int
) -> tuple[HAProxyModel, FdBudget]:
    """Keep the frontends that fit at the floor, lowest ports first; the rest are skipped."""
    assert facts.limit is not None
    base = count_needs(replace(model, frontends=()), facts)
    room = facts.limit - base.total(floor, check_reserve(base.checked_servers))
    kept = 0
    blocked: dict[str, str] = {}
    for frontend in model.frontends:
        if kept + len(frontend.binds) <= room:
            kept += len(frontend.binds)
        else:
            blocked[frontend.name] = LEFT_OUT_REASON
    fitted = without_frontends(model, blocked, prefix="")
    apps = tuple(sorted({s.app_id for s in fitted.skipped[len(model.skipped) :]}))
    effective = floor
    if room < 0:  # not even HAProxy alone fits at the floor: the most that does, at least 1
        effective = max(1, (facts.limit - base.total(0, check_reserve(0))) // 2)
    budget = replace(budget, left_out=LISTENERS, apps_left_out=apps, effective=effective)
    return fitted, budget
