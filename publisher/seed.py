"""What a new leader starts from: the catalog the publishers wrote before, read back from ZooKeeper.

A publisher that wins the election hands this catalog to its Marathon source before following
Marathon (:meth:`~sidecar.sources.base.CatalogSource.seed`): its ready instances count as "in
rotation before" (a task whose health results are blank after a Marathon leader election stays
in), and a first Marathon snapshot without any app has to be confirmed before it may empty
ZooKeeper. The reading is I/O (:func:`read_published`); turning what was read into the catalog is
pure (:func:`published_catalog`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from publisher.plan import ServiceState
from publisher.writer import CatalogWriter
from sidecar.catalog import Catalog, Service
from sidecar.sources.zookeeper import layout, mapping
from sidecar.sources.zookeeper.layout import LayoutError


def read_published(writer: CatalogWriter) -> Catalog:
    """The catalog our publishers wrote (KazooException when ZooKeeper cannot be read)."""
    states = writer.read_services(writer.owned_services())
    return published_catalog(writer.zk_path, states)


def published_catalog(zk_path: str, states: Mapping[str, ServiceState]) -> Catalog:
    """The services whose options and children read back; the others are left out."""
    services: dict[str, Service] = {}
    for name, state in sorted(states.items()):
        service = _service(zk_path, name, state)
        if service is not None and service.key not in services:
            services[service.key] = service
    return Catalog(services)


def _service(zk_path: str, name: str, state: ServiceState) -> Optional[Service]:
    if state.options is None or not state.exists:
        return None
    try:
        options: Mapping[str, Any] = layout.parse_options(state.options)
        base = layout.service_path(zk_path, name)
    except LayoutError:
        return None
    decoded = (layout.decode_child_name(base, child) for child in state.children)
    instances = [i for i in decoded if isinstance(i, layout.Instance) and i.owned]
    return mapping.catalog_service(options, instances)
