"""The catalog in ZooKeeper for tests: what a publisher writes, and a listener that keeps catalogs.

Builders go through the publisher/source contract (:mod:`sidecar.sources.zookeeper.mapping`), so
tests write exactly what ``marathon-publisher`` writes; :func:`register_nerve` writes what nerve
does. :class:`CatalogRecorder` is a :class:`~sidecar.sources.base.CatalogListener` that tests
wait on.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

import orjson
from kazoo.client import KazooClient

from publisher.plan import ServiceSpec
from sidecar.catalog import READY, Catalog, Instance, Service, ServiceOptions, service_key
from sidecar.sources.zookeeper import layout, mapping
from testkit.waiting import wait_until


def options_doc(app_id: str, port: int, mode: str = "http", **options: Any) -> dict[str, Any]:
    """A publisher's options node for the first port of `app_id`."""
    service_options = ServiceOptions(port, port, mode=mode, **options)
    return mapping.options_document(Service(service_key(app_id, 0), app_id, 0, service_options))


def task(app_id: str, n: int, version: str = "v1") -> layout.Instance:
    """Task `n` of an app as the publisher writes it."""
    task_id = f"{app_id.strip('/').replace('/', '_')}.{n}"
    host = f"10.0.{n // 250}.{n % 250 + 1}"
    instance = Instance(task_id, host, 31000 + n, READY, "running", 1, app_id, version)
    return mapping.zookeeper_instance(instance, 31000 + n, app_id)


def spec(app_id: str, port: int, count: int, version: str = "v1") -> ServiceSpec:
    return ServiceSpec.of(
        [task(app_id, n, version) for n in range(count)], options_doc(app_id, port)
    )


def register_nerve(
    client: KazooClient, base: str, name: str, host: str, port: int, *, ephemeral: bool = False
) -> str:
    """An instance registered as nerve does: a sequential child ``<name>_`` of the service node
    ``base`` holding nerve's JSON (host, port, name). Returns the path created."""
    data = orjson.dumps({"host": host, "port": port, "name": name})
    path: str = client.create(
        f"{base}/{name}_", data, ephemeral=ephemeral, sequence=True, makepath=True
    )
    return path


class CatalogRecorder:
    """A CatalogListener that keeps every catalog and the current problem; tests wait on them."""

    def __init__(self) -> None:
        self.catalogs: list[Catalog] = []
        self.reasons: list[str] = []
        self.problem: Optional[str] = None
        self.contacts = 0
        self._lock = threading.Lock()

    def catalog_changed(self, catalog: Catalog, reason: str) -> None:
        with self._lock:
            self.catalogs.append(catalog)
            self.reasons.append(reason)

    def source_problem(self, problem: Optional[str]) -> None:
        self.problem = problem

    def source_contact(self) -> None:
        self.contacts += 1

    @property
    def latest(self) -> Optional[Catalog]:
        with self._lock:
            return self.catalogs[-1] if self.catalogs else None

    def wait_for(
        self, check: Callable[[Catalog], bool], what: str, timeout: float = 30.0
    ) -> Catalog:
        def matched() -> Optional[tuple[Catalog]]:  # a tuple: an empty catalog is falsy
            catalog = self.latest
            return (catalog,) if catalog is not None and check(catalog) else None

        return wait_until(matched, timeout, f"{what} (latest: {self.latest})")[0]

    def wait_problem(self, text: str, timeout: float = 30.0) -> str:
        found = wait_until(
            lambda: self.problem if self.problem and text in self.problem else None,
            timeout,
            f"a problem saying {text!r} (now: {self.problem!r})",
        )
        return str(found)


def versions(catalog: Catalog, key: str) -> set[str]:
    service = catalog.services.get(key)
    return {i.version for i in service.instances} if service is not None else set()


def instance_ids(catalog: Catalog, key: str) -> set[str]:
    service = catalog.services.get(key)
    return {i.id for i in service.instances} if service is not None else set()
