"""From the Marathon source's catalog to what the writer wants: one spec per ZooKeeper service.

:class:`CatalogSpecs` maps each catalog service through :mod:`sidecar.sources.zookeeper.mapping`
(names, options document, ready instances) and reuses the spec it made for a service object it
saw before: catalogs are copy-on-write, so an unchanged service costs nothing, and the writer
skips a spec it already handled (the very same object). What cannot be published is reported:
:class:`Published` carries the catalog's own problems and skipped apps (bad labels...) and the
services that cannot have a ZooKeeper name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from publisher.plan import ServiceSpec
from sidecar.catalog import Catalog, Problem, Service, Skipped
from sidecar.sources.zookeeper import mapping


@dataclass(frozen=True)
class Published:
    """One catalog as handed to the writer, with what was left out."""

    specs: dict[str, ServiceSpec] = field(default_factory=dict)
    refused: tuple[Problem, ...] = ()  # services without a usable ZooKeeper name
    problems: tuple[Problem, ...] = ()  # the catalog's: options not honored (bad labels...)
    skipped: tuple[Skipped, ...] = ()  # the catalog's: apps, ports or tasks left out

    @property
    def instances(self) -> int:
        return sum(len(spec.instances) for spec in self.specs.values())

    def report(self) -> dict[str, Any]:
        """For /health: what was left out, and why (never a label's value)."""
        return {
            "refused": [vars(p).copy() for p in self.refused],
            "problems": [vars(p).copy() for p in self.problems],
            "skipped": [vars(s).copy() for s in self.skipped],
        }


class CatalogSpecs:
    """Catalog -> specs, reusing the spec of every service object seen in the last catalog."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[Service, ServiceSpec]] = {}

    def publish(self, catalog: Catalog) -> Published:
        named, refused = mapping.named_services(catalog)
        made: dict[str, tuple[Service, ServiceSpec]] = {}
        for name, service in named.items():
            hit = self._last.get(name)
            if hit is not None and hit[0] is service:
                made[name] = hit
                continue
            written = mapping.zookeeper_service(service, name)
            made[name] = (service, ServiceSpec(written.instances, written.options))
        self._last = made
        specs = {name: spec for name, (_service, spec) in made.items()}
        return Published(specs, tuple(refused), catalog.problems, catalog.skipped)
