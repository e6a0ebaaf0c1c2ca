"""Which catalog service holds each ZooKeeper name, kept up to date one changed key at a time
(pure).

:func:`sidecar.sources.zookeeper.mapping.named_services` names a whole catalog at once: every
service by catalog key, the first key keeping a name two would share, and a problem for each
service that cannot have a name (a bad name, or a name already taken). :class:`NameIndex` gives
the same answer while looking only at the keys that changed since the last catalog it saw: it
keeps every key's name, the keys claiming each name (the lowest holds it) and the problems, and
tells which names may have a new holder or a new service.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Optional

from sidecar.catalog import Problem, Service
from sidecar.sources.zookeeper.layout import LayoutError
from sidecar.sources.zookeeper.mapping import NAME_LABEL, service_name


class NameIndex:
    """Catalog key -> ZooKeeper name, name -> the key holding it, and the keys refused."""

    def __init__(self) -> None:
        self._name_of: dict[str, str] = {}  # key -> its usable name
        self._claims: dict[str, set[str]] = {}  # name -> the keys whose name it is
        self._holder: dict[str, str] = {}  # name -> the lowest key claiming it
        self._refused: dict[str, Problem] = {}  # key -> why its service has no name
        self._refused_order: Optional[tuple[Problem, ...]] = ()

    def holder(self, name: str) -> Optional[str]:
        """The catalog key of the service written under ``name`` (None: no service)."""
        return self._holder.get(name)

    def refused(self) -> tuple[Problem, ...]:
        """The services that cannot have a name, and why, in catalog key order."""
        if self._refused_order is None:
            self._refused_order = tuple(self._refused[k] for k in sorted(self._refused))
        return self._refused_order

    def update(self, services: Mapping[str, Service], keys: Iterable[str]) -> set[str]:
        """Take the catalog ``services`` in, where only ``keys`` may differ from the catalog
        seen last (added, replaced or removed); the names whose holder or service may differ."""
        touched: set[str] = set()
        for key in keys:
            self._release(key, touched)
            service = services.get(key)
            if service is not None:
                self._claim(key, service, touched)
        for name in touched:
            self._settle(name, services)
        return touched

    def _release(self, key: str, touched: set[str]) -> None:
        if self._refused.pop(key, None) is not None:
            self._refused_order = None
        name = self._name_of.pop(key, None)
        if name is not None:
            self._claims[name].discard(key)
            touched.add(name)

    def _claim(self, key: str, service: Service, touched: set[str]) -> None:
        try:
            name = service_name(service.app_id, service.port_index)
        except LayoutError as exc:
            self._refuse(key, Problem(service.app_id, NAME_LABEL, str(exc)[:300]))
            return
        self._name_of[key] = name
        self._claims.setdefault(name, set()).add(key)
        touched.add(name)

    def _settle(self, name: str, services: Mapping[str, Service]) -> None:
        """The lowest claiming key holds ``name``; the others are refused, naming it."""
        claims = self._claims.get(name)
        if not claims:
            self._claims.pop(name, None)
            self._holder.pop(name, None)
            return
        holder = min(claims)
        self._holder[name] = holder
        if self._refused.pop(holder, None) is not None:
            self._refused_order = None
        taken_by = services[holder].key
        for key in claims:
            if key != holder:
                reason = f"ZooKeeper name {name} is already taken by {taken_by}"
                self._refuse(key, Problem(services[key].app_id, NAME_LABEL, reason[:300]))

    def _refuse(self, key: str, problem: Problem) -> None:
        if self._refused.get(key) != problem:
            self._refused[key] = problem
            self._refused_order = None
