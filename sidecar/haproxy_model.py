"""The desired HAProxy state, as plain frozen data (pure).

:func:`sidecar.desired.build_model` turns a catalog into an :class:`HAProxyModel`;
:mod:`sidecar.render` turns that into ``haproxy.cfg`` text and :mod:`sidecar.apply` compares two
models to decide between runtime API changes (servers only) and a reload (anything in
:func:`listener_signature`).

Models are values built copy-on-write, like catalogs: a backend that did not change is the very
same :class:`BackendSpec` object in the next model, and the builder tags each model with the
names of the backends it changed (:mod:`sidecar.changes`), so the applier compares only those
(:func:`changed_backends`). :func:`patched_model` replaces the servers of a few backends and
keeps what the model derived (its listener signature, where each backend is).

Everything in the model that reaches the config file was derived and checked by the builder:
proxy and server names are sanitized ids (:mod:`sidecar.names`), addresses are IP literals,
numbers are ints, modes and algorithms are members of fixed sets, host names and paths passed the
grammars in :mod:`sidecar.grammar`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from sidecar.catalog import Problem, Skipped
from sidecar.changes import Changes, changed_between, first_version, next_version

if TYPE_CHECKING:
    from sidecar.fd_budget import FdBudget


class ServerSpec(NamedTuple):
    """One instance behind a backend. ``name`` is derived from its id and unique in the backend.

    A NamedTuple (immutable; ``_replace`` for changed copies): a build makes one per server, and
    a tuple costs a third of a frozen dataclass.
    """

    name: str
    address: str
    port: int
    task_id: str
    weight: int = 1
    state: str = "ready"  # "ready" | "drain"
    check: bool = False  # the server line carries "check" (passive and/or active): `enable health`


@dataclass(frozen=True)
class HealthCheckSpec:
    """An active HAProxy check (a service asked for one; the operator's limits applied)."""

    kind: str  # "http" | "tcp"
    path: str = "/"
    interval_ms: int = 10000
    timeout_ms: int = 5000
    rise: int = 2
    fall: int = 3
    port: Optional[int] = None


@dataclass(frozen=True)
class PassiveCheckSpec:
    """The default check of every server: watch real traffic (layer 4), probe only a server
    that failed it.

    ``observe layer4`` marks a server down after ``error_limit`` consecutive connection errors
    on real traffic; HAProxy probes it ``fastinter`` later, then every ``downinter``, and one
    good connect (``rise 1``) brings it back. While up it is probed once a day (``inter``).
    With ``fall 2`` a server is fully healthy at 2 and starts at 1 (after a reload too: the
    applier leaves running servers out of the server-state file), in transition, where HAProxy
    uses ``fastinter``: the first probes after a start spread over ``fastinter`` instead of
    coming at once. docs/health.md has the measurements.
    """

    inter_ms: int = 86_400_000
    fastinter_ms: int = 10_000
    downinter_ms: int = 10_000
    rise: int = 1
    fall: int = 2
    error_limit: int = 3


@dataclass(frozen=True)
class BackendSpec:
    name: str
    app_id: str
    service_port: int
    mode: str  # "http" | "tcp"
    balance: str
    servers: tuple[ServerSpec, ...] = ()
    sticky: bool = False
    health_check: Optional[HealthCheckSpec] = None
    passive_check: Optional[PassiveCheckSpec] = None
    port_index: int = 0
    service_keys: tuple[str, ...] = ()  # the catalog services behind it (several for a group)


@dataclass(frozen=True)
class RouteSpec:
    """Shared-frontend HTTP routing: ``hosts`` (and the ``path`` prefix) go to ``backend``."""

    backend: str
    hosts: tuple[str, ...] = ()
    path: str = ""


@dataclass(frozen=True)
class FrontendSpec:
    name: str
    port: int
    binds: tuple[str, ...]
    mode: str
    default_backend: Optional[str] = None
    routes: tuple[RouteSpec, ...] = ()


@dataclass(frozen=True)
class HAProxyModel:
    frontends: tuple[FrontendSpec, ...] = ()
    backends: tuple[BackendSpec, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    problems: tuple[Problem, ...] = ()
    maxconn: Optional[int] = None  # global maxconn; None: the operator's (RenderSettings.maxconn)
    # why maxconn is what it is (sidecar.fd_budget.fit_model); not part of the config itself
    budget: Optional[FdBudget] = field(default=None, compare=False, repr=False)
    # how the builder made it from its previous model (backend names); not part of its value
    changes: Optional[Changes] = field(default=None, init=False, compare=False, repr=False)


# what a model derived once, kept on the model itself: its listeners apart from maxconn
# (listener_signature), where each backend is (backend_positions), its counts (model_counts)
_LISTENERS, _POSITIONS, _COUNTS = "_listeners", "_backend_positions", "_counts"


def listener_signature(model: HAProxyModel) -> tuple[Any, ...]:
    """Everything that needs a reload when it changes: frontends and backends minus servers,
    and the global ``maxconn``.

    The frontends and backends are worked out once per model (and shared by the models
    :func:`patched_model` and :func:`with_fit` make from it).
    """
    known: Optional[tuple[Any, Any]] = model.__dict__.get(_LISTENERS)
    if known is None:
        frontends = tuple(
            (f.name, f.port, f.binds, f.mode, f.default_backend, f.routes) for f in model.frontends
        )
        backends = tuple(
            (b.name, b.mode, b.balance, b.sticky, b.health_check, b.passive_check)
            for b in model.backends
        )
        known = (frontends, backends)
        object.__setattr__(model, _LISTENERS, known)
    return (*known, model.maxconn)


def _checked(backend: BackendSpec) -> int:
    return len(backend.servers) if backend.health_check or backend.passive_check else 0


def model_counts(model: HAProxyModel) -> tuple[int, int]:
    """(bind addresses of every frontend, servers with a check): worked out once per model."""
    known: Optional[tuple[int, int]] = model.__dict__.get(_COUNTS)
    if known is None:
        binds = sum(len(f.binds) for f in model.frontends)
        known = (binds, sum(_checked(b) for b in model.backends))
        object.__setattr__(model, _COUNTS, known)
    return known


def with_fit(model: HAProxyModel, maxconn: Optional[int], budget: Any) -> HAProxyModel:
    """``model`` with this ``maxconn`` and descriptor budget, keeping what it derived."""
    fitted = replace(model, maxconn=maxconn, budget=budget)
    listener_signature(model)  # worked out on the model, so both share it
    for name in (_LISTENERS, _POSITIONS, _COUNTS):
        if name in model.__dict__:
            object.__setattr__(fitted, name, model.__dict__[name])
    object.__setattr__(fitted, "changes", model.changes)
    return fitted


def backend_positions(model: HAProxyModel) -> Mapping[str, int]:
    """Backend name -> its index in ``model.backends`` (worked out once per model)."""
    known: Optional[Mapping[str, int]] = model.__dict__.get(_POSITIONS)
    if known is None:
        known = {b.name: i for i, b in enumerate(model.backends)}
        object.__setattr__(model, _POSITIONS, known)
    return known


def backends_named(model: HAProxyModel, names: Collection[str]) -> list[BackendSpec]:
    """The backends of ``model`` with these names, in the model's order (others ignored)."""
    at = backend_positions(model)
    return [model.backends[i] for i in sorted(at[name] for name in names if name in at)]


def patched_model(model: HAProxyModel, backends: Mapping[str, BackendSpec]) -> HAProxyModel:
    """``model`` with the backends of these names replaced by others that differ from them in
    their servers only (the caller's promise): the listener signature and the positions carry
    over, and the result is tagged with the names."""
    if not backends:
        return model
    positions = backend_positions(model)
    items = list(model.backends)
    for name, backend in backends.items():
        items[positions[name]] = backend
    patched = replace(model, backends=tuple(items))  # every other field as it was
    object.__setattr__(patched, _POSITIONS, positions)
    listener_signature(model)
    object.__setattr__(patched, _LISTENERS, model.__dict__[_LISTENERS])
    if _COUNTS in model.__dict__:
        binds, checked = model.__dict__[_COUNTS]
        for name, backend in backends.items():
            checked += _checked(backend) - _checked(model.backends[positions[name]])
        object.__setattr__(patched, _COUNTS, (binds, checked))
    object.__setattr__(patched, "changes", next_version(model.changes, backends))
    return patched


def tagged_after(model: HAProxyModel, previous: Optional[HAProxyModel]) -> HAProxyModel:
    """``model`` (new, built in full) tagged with the backends that differ from ``previous``,
    the builder's model before it (found by walking both)."""
    if previous is None:
        object.__setattr__(model, "changes", first_version())
        return model
    before = {b.name: b for b in previous.backends}
    names = [b.name for b in model.backends if before.pop(b.name, None) is not b]
    names.extend(before)  # removed
    object.__setattr__(model, "changes", next_version(previous.changes, names))
    known = previous.__dict__.get(_LISTENERS)
    if known is not None and listener_signature(model)[:2] == known:
        # the same listeners: the very same parts, so comparing them later costs nothing
        object.__setattr__(model, _LISTENERS, known)
    return model


def changed_backends(old: HAProxyModel, new: HAProxyModel) -> Optional[Collection[str]]:
    """The names of the backends that may differ from ``old`` to ``new`` (superset), when the
    builder's tags tell; ``None`` when they do not (compare every backend)."""
    if old is new:
        return ()
    return changed_between(old.changes, new.changes)


def in_rotation(model: HAProxyModel) -> frozenset[str]:
    """Ids of the instances that take traffic in ``model``."""
    return frozenset(s.task_id for b in model.backends for s in b.servers if s.state == "ready")
