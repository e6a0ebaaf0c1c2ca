"""With a real HAProxy: the runtime commands of an event follow from its backend alone, and a
catalog that changed nothing sends no command and reloads nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.catalog import READY, Catalog, Instance, Service, ServiceOptions, updated_catalog
from sidecar.desired import BuildCache, build_model
from sidecar.haproxy.runtime import RuntimeAPI
from sidecar.render_settings import RenderSettings
from testkit import free_ports

SETTINGS = RenderSettings(bind_addrs=("127.0.0.1",))


class RecordingRuntime(RuntimeAPI):
    """The runtime API client, keeping every command it sends."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(socket_path)
        self.sent: list[str] = []

    def execute_many(self, commands: Sequence[str]) -> list[str]:
        self.sent.extend(commands)
        return super().execute_many(commands)


def service(app_id: str, port: int, servers: dict[str, Any]) -> Service:
    instances = tuple(
        Instance(f"{app_id.strip('/')}.{name}", "127.0.0.1", srv.port, READY, "running")
        for name, srv in sorted(servers.items())
    )
    options = ServiceOptions(service_port=port, bind_port=port, mode="http")
    return Service(f"{app_id}:0", app_id, 0, options, instances)


def test_an_event_touches_its_backend_only_and_an_unchanged_catalog_nothing(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a, b, c, b2 = backends("a"), backends("b"), backends("c"), backends("b2")
    ports = free_ports(3)
    services = [service(f"/{n}", p, {n: s}) for n, p, s in zip("abc", ports, (a, b, c))]
    catalog = Catalog({s.key: s for s in services})
    cache = BuildCache()
    applier = make_applier()
    first = build_model(catalog, SETTINGS, cache=cache)
    assert applier.apply(first).started
    recorder = RecordingRuntime(str(kit.paths.admin_socket))
    applier.runtime = applier.drains.runtime = recorder

    grown = updated_catalog(catalog, {"/b:0": service("/b", ports[1], {"b": b, "b2": b2})})
    result = applier.apply(build_model(grown, SETTINGS, cache=cache))
    assert result.ok and result.action == "runtime" and not result.reloaded, result.error
    touched = f"be_b_{ports[1]}"
    assert recorder.sent and all(touched in command for command in recorder.sent), recorder.sent
    assert any(command.startswith(f"add server {touched}/") for command in recorder.sent)
    assert set(kit.answers(ports[1], 6)) == {"b", "b2"}

    recorder.sent.clear()
    snapshot = Catalog(  # read anew: equal services, other objects, no tags
        {key: Service(*s) for key, s in grown.services.items()}, grown.problems, grown.skipped
    )
    again = applier.apply(build_model(snapshot, SETTINGS, cache=cache))
    assert again.ok and again.action == "none" and not again.reloaded, again.error
    assert recorder.sent == [] and applier.counters.reloads == 0


class StateReadsRecorder(RecordingRuntime):
    """Also keeps the whole-dump reads (``show servers state`` for every backend)."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(socket_path)
        self.full_dumps = 0

    def show_servers_state(self, backend: str | None = None) -> list[Any]:
        self.full_dumps += backend is None
        return super().show_servers_state(backend)


def test_a_batch_touching_some_backends_reads_only_their_servers_state(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    task = backends("t")
    ports = free_ports(200)
    catalog = Catalog(
        {s.key: s for s in (service(f"/s{i}", p, {"t": task}) for i, p in enumerate(ports))}
    )
    cache = BuildCache()
    applier = make_applier()
    assert applier.apply(build_model(catalog, SETTINGS, cache=cache)).started
    recorder = StateReadsRecorder(str(kit.paths.admin_socket))
    applier.runtime = applier.drains.runtime = recorder

    extra = backends("extra")
    touched = {f"/s{i}:0": service(f"/s{i}", ports[i], {"t": task, "x": extra}) for i in range(20)}
    result = applier.apply(build_model(updated_catalog(catalog, touched), SETTINGS, cache=cache))
    assert result.ok and not result.reloaded, result.error
    reads = [c for c in recorder.sent if c.startswith("show servers state ")]
    assert recorder.full_dumps == 0  # 20 of 200 backends: not the dump of every server
    assert sorted(reads) == sorted(f"show servers state be_s{i}_{ports[i]}" for i in range(20))
