"""The operator's `services:` map: how to serve services that nerve registered (pure).

A service our publisher wrote carries its options (port, mode, ...) in ZooKeeper. A service that
nerve registered has only instances (`<host>_<seq>` children with JSON data), so the sidecar's
YAML file says how to serve it::

    services:
      legacy-api:            # the service's znode name under --zk-path
        port: 10100          # required: the service port HAProxy listens on
        mode: http           # tcp (default) or http
        balance: leastconn   # roundrobin (default), leastconn, source, ... (http: uri, hdr(...))
        groups: [internal]   # for --group (default: none)
        vhosts: [api.example.com]   # http only: routes on --vhost-port
        path: /v1            # with vhosts: a path prefix
        sticky: false        # http only: a cookie pins a client to a server
        route_weight: 0      # order of vhost routes: higher first
        bind_addr: 10.0.0.1  # one address asked for (the operator's --bind rules decide)
        health_check: {kind: http, path: /health, interval_ms: 5000, timeout_ms: 2000, fall: 3}

Every value is checked by the catalog's own rules (:func:`sidecar.catalog.service_from_dict`),
the same ones a catalog read back from disk passes; a bad entry is a settings error naming the
service and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from sidecar.catalog import (
    CatalogError,
    Service,
    ServiceOptions,
    service_from_dict,
    service_key,
    service_to_dict,
)
from sidecar.sources.zookeeper.layout import LayoutError, check_service_name

PORT_KEY = "port"
OPTION_KEYS = frozenset(
    {
        "mode",
        "balance",
        "groups",
        "vhosts",
        "path",
        "sticky",
        "route_weight",
        "bind_addr",
        "health_check",
    }
)


class LocalService(NamedTuple):
    """How to serve one service that has no options in ZooKeeper."""

    name: str  # the znode name under --zk-path
    options: ServiceOptions


def parse_local_services(data: Any) -> tuple[LocalService, ...]:
    """The `services:` map, checked; ValueError names the service and the key."""
    if data is None:
        return ()
    if not isinstance(data, Mapping):
        raise ValueError("expected a mapping of service name: {port: ..., ...}")
    return tuple(_parse_one(str(name), body) for name, body in sorted(data.items(), key=_by_name))


def _by_name(item: tuple[Any, Any]) -> str:
    return str(item[0])


def _parse_one(name: str, body: Any) -> LocalService:
    try:
        check_service_name(name)
    except LayoutError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(body, Mapping):
        raise ValueError(f"{name}: expected a mapping like {{port: 10100, mode: http}}")
    unknown = sorted(str(k) for k in body if k != PORT_KEY and k not in OPTION_KEYS)
    if unknown:
        known = ", ".join([PORT_KEY, *sorted(OPTION_KEYS)])
        raise ValueError(f"{name}: unknown key {unknown[0]!r} (known: {known})")
    if PORT_KEY not in body:
        raise ValueError(f"{name}: 'port' is required (the service port HAProxy listens on)")
    options = {k: v for k, v in body.items() if k != PORT_KEY}
    options["service_port"] = options["bind_port"] = body[PORT_KEY]
    document = {
        "key": service_key(name, 0),
        "app_id": name,
        "port_index": 0,
        "options": options,
        "instances": [],
    }
    try:
        service = service_from_dict(document, name)
    except CatalogError as exc:
        field = exc.path.replace(f"{name}.options.", "").replace("service_port", PORT_KEY)
        reason = str(exc)[len(exc.path) + 2 :]
        raise ValueError(f"{name}: {field}: {reason}") from None
    return LocalService(name, service.options)


def as_dict(services: tuple[LocalService, ...]) -> dict[str, dict[str, Any]]:
    """Plain data for logs and the status page."""
    return {
        entry.name: service_to_dict(Service(entry.name, entry.name, 0, entry.options))["options"]
        for entry in services
    }
