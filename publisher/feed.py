"""From the Marathon source's catalog to what the writer wants: one spec per ZooKeeper service.

:class:`CatalogSpecs` maps catalog services through :mod:`sidecar.sources.zookeeper.mapping`
(names, options document, ready instances), looking only at what changed: catalogs are
copy-on-write and tagged (:func:`sidecar.catalog.changed_services`), so a catalog made from the
last one by one event costs the services that event touched, not all of them. The names are
kept by a :class:`~publisher.name_index.NameIndex` (the same answer as naming the whole catalog,
refusals included), and a service object seen before keeps the spec made for it. The specs are a
:class:`~sidecar.persistent_map.ShardedMap` (one changed spec copies a small part of it), tagged
in turn with the names that changed (:mod:`sidecar.changes`), so the writer too looks only at
those.

What cannot be published is reported: :class:`Published` carries the catalog's own problems and
skipped apps (bad labels...) and the services that cannot have a ZooKeeper name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from publisher.name_index import NameIndex
from publisher.plan import ServiceSpec
from sidecar.catalog import Catalog, Problem, Service, Skipped, changed_services
from sidecar.changes import Changes, first_version, next_version
from sidecar.persistent_map import ShardedMap
from sidecar.sources.zookeeper import mapping

BULK_CHANGES = 256  # more changed specs than this: the map is built again, not updated per name


@dataclass(frozen=True)
class Published:
    """One catalog as handed to the writer, with what was left out."""

    specs: Mapping[str, ServiceSpec] = field(default_factory=dict)
    refused: tuple[Problem, ...] = ()  # services without a usable ZooKeeper name
    problems: tuple[Problem, ...] = ()  # the catalog's: options not honored (bad labels...)
    skipped: tuple[Skipped, ...] = ()  # the catalog's: apps, ports or tasks left out
    instances: int = 0  # in every spec
    changes: Optional[Changes] = None  # the spec names changed (sidecar.changes)

    def report(self) -> dict[str, Any]:
        """For /health: what was left out, and why (never a label's value)."""
        return {
            "refused": [vars(p).copy() for p in self.refused],
            "problems": [vars(p).copy() for p in self.problems],
            "skipped": [vars(s).copy() for s in self.skipped],
        }


class CatalogSpecs:
    """Catalog -> specs, for each catalog the services changed since the last one (module doc)."""

    def __init__(self) -> None:
        self._catalog = Catalog()
        self._names = NameIndex()
        self._made: dict[str, tuple[Service, ServiceSpec]] = {}  # name -> from what, the spec
        self._specs: ShardedMap[str, ServiceSpec] = ShardedMap()
        self._instances = 0
        self._changes = first_version()

    def publish(self, catalog: Catalog) -> Published:
        keys = changed_services(self._catalog, catalog)
        names = self._names.update(catalog.services, keys)
        changed = [name for name in names if self._remake(name, catalog.services)]
        self._catalog = catalog
        if changed:
            self._specs = self._updated_specs(changed)
            self._changes = next_version(self._changes, changed)
        refused = self._names.refused()
        return Published(
            self._specs, refused, catalog.problems, catalog.skipped, self._instances, self._changes
        )

    def _remake(self, name: str, services: Mapping[str, Service]) -> bool:
        """Bring the spec made for ``name`` in line with its holder; whether it changed."""
        key = self._names.holder(name)
        last = self._made.get(name)
        if key is None:
            if last is None:
                return False
            del self._made[name]
            self._instances -= len(last[1].instances)
            return True
        service = services[key]
        if last is not None and last[0] is service:
            return False
        written = mapping.zookeeper_service(service, name)
        spec = ServiceSpec(written.instances, written.options)
        if last is not None and spec == last[1]:  # e.g. a task that is not ready changed
            self._made[name] = (service, last[1])
            return False
        self._made[name] = (service, spec)
        self._instances += len(spec.instances) - (len(last[1].instances) if last else 0)
        return True

    def _updated_specs(self, changed: list[str]) -> ShardedMap[str, ServiceSpec]:
        """The specs with the ``changed`` names made again: one shard copied per name, or the
        whole map built again when many changed (a first catalog)."""
        if len(changed) > BULK_CHANGES:
            return ShardedMap({name: spec for name, (_service, spec) in self._made.items()})
        specs = self._specs
        for name in changed:
            made = self._made.get(name)
            specs = specs.remove(name) if made is None else specs.set(name, made[1])
        return specs
