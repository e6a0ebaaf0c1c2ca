"""The desired HAProxy state, as plain frozen data (pure).

``build_model`` turns the sidecar's view of Marathon into an :class:`HAProxyModel`; ``render``
turns that into ``haproxy.cfg`` text and ``apply`` compares two models to decide between runtime
API changes (servers only) and a reload (anything in :func:`listener_signature`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ServerSpec:
    """One task behind a backend. ``name`` is derived from the task id and unique in the backend."""

    name: str
    address: str
    port: int
    task_id: str
    weight: int = 1
    state: str = "ready"  # "ready" | "drain"
    check: bool = False  # an active HAProxy check on this server (only when a label asks)


@dataclass(frozen=True)
class HealthCheckSpec:
    """An active HAProxy check derived from the app's Marathon health check (opt-in by label)."""

    kind: str  # "http" | "tcp"
    path: str = "/"
    interval_ms: int = 10000
    timeout_ms: int = 5000
    rise: int = 2
    fall: int = 3
    port: Optional[int] = None


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


@dataclass(frozen=True)
class RouteSpec:
    """HTTP routing on a shared frontend: requests for ``hosts`` (and ``path`` prefix) go to ``backend``."""

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
class SkippedApp:
    """An app (or one of its ports) left out of the config, with a reason that names no label value."""

    app_id: str
    reason: str
    port_index: Optional[int] = None


@dataclass(frozen=True)
class HAProxyModel:
    frontends: tuple[FrontendSpec, ...] = ()
    backends: tuple[BackendSpec, ...] = ()
    skipped: tuple[SkippedApp, ...] = ()
