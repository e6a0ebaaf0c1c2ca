"""The catalog in ZooKeeper: service names, the options JSON and the instance JSON (pure).

This module is the contract between ``marathon-publisher``, which writes the catalog, and the
sidecar's ZooKeeper source, which reads it; both directions live here. (:mod:`.layout` holds the
paths, child names and nerve's instance JSON itself.)

**Service names.** A catalog service is one port of a Marathon app; its znode is
``<zk-path>/<name>`` with ``name = <app id without the leading slash, "/" -> "_">:<port index>``::

    /shop/web, port index 0   ->  <zk-path>/shop_web:0
    /api, port index 1        ->  <zk-path>/api:1

Marathon app ids are made of ``a-z 0-9 - .`` between slashes, so neither ``_`` nor ``:`` can occur
in one: the name is unique per (app id, port index) and reads back to it (Marathon itself writes
``shop_web`` in task ids). It does not change while the app exists, whatever its service port
does, and the two apps of a blue/green deployment that share a service port keep two names. A
name that does not fit :func:`~.layout.check_service_name` (an app id longer than ~190
characters) is refused; so is a second service on one name, should odd data produce one.

**The options node** (``<bridge>/options/<name>``) holds the catalog's own service JSON
(:func:`sidecar.catalog.service_to_dict`) without ``key`` and ``instances``::

    {"app_id": "/shop/web", "port_index": 0,
     "options": {"service_port": 10000, "bind_port": 10000, "mode": "http", ...}}

Reading it back goes through the catalog's checks (:func:`identity_from_options`).

**Instances.** Only instances in rotation (``ready``) are written: a synapse reading the same
znode must route to every instance it sees, and our sidecar drains a server that leaves its
backend exactly as it drains one whose task is killing, unhealthy or unreachable (the applier
sets every running server the model no longer wants ready to ``drain``). Each is nerve's JSON:
``host`` (the task's host: an agent host name or an IP), ``port`` (the host port of that port
index), ``name`` (the task id), ``weight`` and ``labels``: ``source: marathon-bridge``,
``app_id``, ``task_id`` and, when known, ``version`` (the app version the task runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Optional

from sidecar.catalog import (
    READY,
    Catalog,
    CatalogError,
    Instance,
    Problem,
    Service,
    ServiceOptions,
    service_from_dict,
    service_key,
    service_to_dict,
)
from sidecar.sources.zookeeper import layout
from sidecar.sources.zookeeper.layout import LayoutError

APP_ID_LABEL = "app_id"
TASK_ID_LABEL = "task_id"
VERSION_LABEL = "version"
IN_ZOOKEEPER = "registered in ZooKeeper"  # the reason of an instance read back
NAME_LABEL = "zookeeper"  # the Problem's "label" when a service cannot be written


class Identity(NamedTuple):
    """Who a service is in the catalog, and how it is served (from its options node)."""

    app_id: str
    port_index: int
    options: ServiceOptions


class ZooKeeperService(NamedTuple):
    """What the publisher writes for one catalog service."""

    name: str
    options: Mapping[str, Any]  # the options node's document
    instances: frozenset[layout.Instance]


# --- writing -------------------------------------------------------------------------------------


def service_name(app_id: str, port_index: int) -> str:
    """The znode name of one app port; LayoutError when it is not a usable name."""
    return layout.check_service_name(f"{app_id.strip('/').replace('/', '_')}:{port_index}")


def options_document(service: Service) -> dict[str, Any]:
    """The options node's JSON document for a catalog service."""
    document = service_to_dict(service)
    del document["key"], document["instances"]
    return document


def published_instances(service: Service) -> frozenset[layout.Instance]:
    """The service's instances in rotation, as nerve's JSON describes them."""
    return frozenset(
        zookeeper_instance(instance, instance.port, service.app_id)
        for instance in service.instances
        if instance.state == READY and instance.host and instance.port
    )


def zookeeper_instance(instance: Instance, port: int, app_id: str) -> layout.Instance:
    """One catalog instance (listening on ``port``) as nerve's JSON describes it."""
    labels = {
        layout.SOURCE_LABEL: layout.SOURCE_VALUE,
        APP_ID_LABEL: instance.app_id or app_id,
        TASK_ID_LABEL: instance.id,
    }
    if instance.version:
        labels[VERSION_LABEL] = instance.version
    return layout.Instance.make(instance.host, port, instance.id, instance.weight, labels)


def zookeeper_service(service: Service, name: str) -> ZooKeeperService:
    """What is written for one catalog service under znode ``name``."""
    return ZooKeeperService(name, options_document(service), published_instances(service))


def zookeeper_services(catalog: Catalog) -> tuple[dict[str, ZooKeeperService], list[Problem]]:
    """Every catalog service as it is written, by znode name; the services refused, and why."""
    named, problems = named_services(catalog)
    return {name: zookeeper_service(service, name) for name, service in named.items()}, problems


def named_services(catalog: Catalog) -> tuple[dict[str, Service], list[Problem]]:
    """The catalog's services by znode name; those that cannot have one, and why (the first
    service by catalog key keeps a name two would share)."""
    found: dict[str, Service] = {}
    problems: list[Problem] = []
    for _key, service in sorted(catalog.services.items()):
        try:
            name = service_name(service.app_id, service.port_index)
        except LayoutError as exc:
            problems.append(Problem(service.app_id, NAME_LABEL, str(exc)[:300]))
            continue
        if name in found:
            reason = f"ZooKeeper name {name} is already taken by {found[name].key}"
            problems.append(Problem(service.app_id, NAME_LABEL, reason[:300]))
            continue
        found[name] = service
    return found, problems


# --- reading -------------------------------------------------------------------------------------


def identity_from_options(document: Mapping[str, Any]) -> Identity:
    """The catalog identity and options in an options node; CatalogError names the first field
    that cannot be used."""
    body: dict[str, Any] = {
        "key": "-",
        "app_id": document.get("app_id"),
        "port_index": document.get("port_index"),
        "options": document.get("options"),
        "instances": [],
    }
    service = service_from_dict(body, "options")
    return Identity(service.app_id, service.port_index, service.options)


def catalog_instance(item: layout.Instance, app_id: str) -> Instance:
    """An instance read from ZooKeeper, in rotation. Its id is the task id our publisher labels
    it with, or synapse's ``<name>_<host>:<port>`` for an instance nerve registered."""
    task_id = item.label(TASK_ID_LABEL) if item.owned else None
    return Instance(
        id=task_id or f"{item.name}_{item.host}:{item.port}",
        host=item.host,
        port=item.port,
        state=READY,
        reason=IN_ZOOKEEPER,
        weight=1 if item.weight is None else item.weight,
        app_id=app_id,
        version=item.label(VERSION_LABEL) or "",
    )


def catalog_service(
    options: Mapping[str, Any], instances: Iterable[layout.Instance]
) -> Optional[Service]:
    """One service our publisher wrote, read back (None when its options cannot be used)."""
    try:
        identity = identity_from_options(options)
    except CatalogError:
        return None
    found: dict[str, Instance] = {}
    for item in instances:
        instance = catalog_instance(item, identity.app_id)
        found.setdefault(instance.id, instance)
    key = service_key(identity.app_id, identity.port_index)
    ordered = tuple(found[i] for i in sorted(found))
    return Service(key, identity.app_id, identity.port_index, identity.options, ordered)
