"""The services view (pure): every backend with the catalog services behind it, each instance
with its state, health, whether it is in rotation and why not. ``/services`` answers it as JSON
and the status page shows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from .catalog import READY, Catalog, Instance, Service
from .haproxy_model import BackendSpec, HAProxyModel, ServerSpec


def services_view(
    catalog: Optional[Catalog],
    model: Optional[HAProxyModel],
    haproxy_states: Optional[Mapping[tuple[str, str], str]] = None,
    backends: Optional[Sequence[BackendSpec]] = None,
) -> list[dict[str, Any]]:
    """One entry per backend (of ``model``, or only ``backends``): its port and app, every
    instance of the services behind it with its state, health, in/out and why (the verdicts the
    catalog holds).

    ``haproxy_states`` (backend, server) -> status adds what HAProxy itself reports.
    """
    if catalog is None or model is None:
        return []
    seen = haproxy_states or {}
    out: list[dict[str, Any]] = []
    chosen = model.backends if backends is None else backends
    for backend in sorted(chosen, key=lambda b: (b.service_port, b.app_id, b.name)):
        servers = {s.task_id: s for s in backend.servers}
        endpoints = []
        for service in _services_of(catalog, backend):
            for instance in service.instances:
                server = servers.get(instance.id)
                entry = _endpoint_entry(instance, server)
                if server is not None:
                    entry["haproxy"] = seen.get((backend.name, server.name), "")
                endpoints.append(entry)
        out.append(
            {
                "service_port": backend.service_port,
                "app_id": backend.app_id,
                "backend": backend.name,
                "mode": backend.mode,
                "balance": backend.balance,
                "servers_in": sum(1 for s in backend.servers if s.state == "ready"),
                "endpoints": endpoints,
            }
        )
    return out


def _services_of(catalog: Catalog, backend: BackendSpec) -> list[Service]:
    """The catalog services behind a backend (several for a deployment group), by app id."""
    found = [catalog.services[k] for k in backend.service_keys if k in catalog.services]
    return sorted(found, key=lambda s: (s.app_id, s.port_index))


def _endpoint_entry(instance: Instance, server: Optional[ServerSpec]) -> dict[str, Any]:
    in_rotation = server is not None and server.state == "ready"
    if in_rotation:
        reason = ""
    elif server is None and instance.state == READY:
        reason = "not in the config"
    else:
        reason = instance.reason
    address, port = (
        (server.address, server.port) if server is not None else (instance.host, instance.port)
    )
    return {
        "task_id": instance.id,
        "server": server.name if server is not None else None,
        "host": instance.host,
        "address": address,
        "port": port,
        "state": instance.status,
        "healthy": instance.healthy,
        "in_rotation": in_rotation,
        "server_state": server.state if server is not None else "out",
        "reason": reason,
    }
