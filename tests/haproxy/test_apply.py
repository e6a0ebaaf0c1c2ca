"""The Applier against the real HAProxy: runtime changes without reload, reloads for listeners,
drains, refused reloads, bad apps found and left out, supervision, no request lost."""

from __future__ import annotations

import os
import signal
import socket
import threading
from dataclasses import replace
from typing import Any

import pytest

from sidecar.haproxy.runtime import RuntimeAPI
from sidecar.haproxy_model import ServerSpec
from testkit import free_port, wait_until
from testkit.clock import FakeClock


def admin(kit: Any) -> RuntimeAPI:
    return RuntimeAPI(str(kit.paths.admin_socket))


def server_names(kit: Any, backend: str) -> list[str]:
    return sorted(s.name for s in admin(kit).show_servers_state(backend))


def active_names(kit: Any, backend: str) -> list[str]:
    """Servers not in maintenance (tombstones of drained servers are in MAINT)."""
    states = admin(kit).show_servers_state(backend)
    return sorted(s.name for s in states if not s.in_maintenance)


def tombstone_names(kit: Any, backend: str) -> list[str]:
    return sorted(s.name for s in admin(kit).show_servers_state(backend) if s.in_maintenance)


def hold_request_on(
    kit: Any, port: int, target: Any, other: Any
) -> tuple[list[object], list[threading.Thread]]:
    """Send slow requests until one is held by ``target`` (``other`` answers them at once)."""
    results: list[object] = []
    threads: list[threading.Thread] = []
    other.release.set()

    def slow_request() -> None:
        try:
            results.append(kit.get(port, "/slow", timeout=30))
        except OSError as exc:
            results.append(exc)

    while not target.slow_started.is_set():
        thread = threading.Thread(target=slow_request, daemon=True)
        thread.start()
        threads.append(thread)
        wait_until(
            lambda t=thread: target.slow_started.is_set() or not t.is_alive(),
            message="slow request",
        )
    return results, threads


def test_first_apply_starts_and_an_unchanged_model_does_nothing(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    port = free_port()
    model = kit.model_of(kit.service("/a", port, {"a": a}))
    applier = make_applier()
    first = applier.apply(model)
    assert first.ok and first.started and first.action == "start", first.error
    assert kit.get(port) == (200, "a")
    mtime = os.stat(kit.paths.config).st_mtime_ns
    pid = admin(kit).worker_pid()
    again = applier.apply(model)
    assert again.ok and again.action == "none" and not again.config_written
    assert again.runtime_ops == 0 and not again.reloaded
    assert os.stat(kit.paths.config).st_mtime_ns == mtime
    assert admin(kit).worker_pid() == pid


def test_servers_added_and_removed_without_reload(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a, b, c = backends("a"), backends("b"), backends("c")
    port = free_port()
    be = f"be_{port}"
    applier = make_applier()
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a}))).ok
    pid = admin(kit).worker_pid()

    grown = applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b, "c": c})))
    assert grown.ok and grown.action == "runtime" and not grown.reloaded, grown.error
    assert set(kit.answers(port, 9)) == {"a", "b", "c"}
    assert "server b 127.0.0.1" in kit.paths.config.read_text()  # the file follows

    shrunk = applier.apply(kit.model_of(kit.service("/a", port, {"c": c})))
    assert shrunk.ok and not shrunk.reloaded, shrunk.error
    wait_until(lambda: applier.tick() >= 0 and active_names(kit, be) == ["c"], message="drained")
    assert set(kit.answers(port, 6)) == {"c"}
    # a and b served requests: never "del server" for them, MAINT until the next reload
    assert tombstone_names(kit, be) == ["a", "b"]
    applier.tick()
    text = kit.paths.config.read_text()
    assert "server a " not in text and "server b " not in text and "server c " in text
    assert admin(kit).worker_pid() == pid
    assert applier.counters.reloads == 0 and applier.counters.servers_deleted == 0
    assert applier.counters.servers_tombstoned == 2
    status = applier.haproxy.proc_status()
    assert status is not None and status.reloads == 0


def test_weight_change_through_the_runtime_api(make_applier: Any, kit: Any, backends: Any) -> None:
    a, b = backends("a"), backends("b")
    port = free_port()
    model = kit.model_of(kit.service("/a", port, {"a": a, "b": b}))
    applier = make_applier()
    assert applier.apply(model).ok
    heavier = kit.with_servers(
        model,
        f"be_{port}",
        tuple(s._replace(weight=3) if s.name == "b" else s for s in model.backends[0].servers),
    )
    result = applier.apply(heavier)
    assert result.ok and result.action == "runtime" and result.runtime_ops == 1
    weights = {s.name: s.uweight for s in admin(kit).show_servers_state(f"be_{port}")}
    assert weights == {"a": 1, "b": 3}
    assert "weight 3" in kit.paths.config.read_text()


@pytest.mark.parametrize("leaving", ["marked drain", "gone from the model"])
def test_killed_task_stops_receiving_traffic_and_its_request_finishes(
    make_applier: Any, kit: Any, backends: Any, leaving: str
) -> None:
    """Marathon says b is going (TASK_KILLING): the model keeps it with state "drain"; from
    ZooKeeper (only instances in rotation are published) b is simply gone. Both drain it."""
    a, b = backends("a"), backends("b")
    port = free_port()
    be = f"be_{port}"
    model = kit.model_of(kit.service("/a", port, {"a": a, "b": b}))
    applier = make_applier()
    assert applier.apply(model).ok
    slow, threads = hold_request_on(kit, port, b, a)
    servers = model.backends[0].servers
    if leaving == "marked drain":
        killing = tuple(s._replace(state="drain") if s.name == "b" else s for s in servers)
    else:
        killing = tuple(s for s in servers if s.name != "b")
    result = applier.apply(kit.with_servers(model, be, killing))
    assert result.ok and not result.reloaded, result.error
    hits_before = b.hits
    assert set(kit.answers(port, 8)) == {"a"}
    assert b.hits == hits_before  # nothing new reached b
    assert applier.tick() == 0 and "b" in server_names(kit, be)  # its request still runs
    b.release.set()
    for t in threads:
        t.join(30)
    assert slow and all(isinstance(r, tuple) and r[0] == 200 for r in slow), slow
    wait_until(lambda: applier.tick() >= 0 and active_names(kit, be) == ["a"], message="b out")
    again = applier.apply(kit.with_servers(model, be, killing))
    assert again.ok and again.runtime_ops == 0 and active_names(kit, be) == ["a"]
    assert tombstone_names(kit, be) == ["b"]


def test_scale_down_and_up_under_load_loses_no_request(
    make_applier: Any, kit: Any, backends: Any, traffic: Any
) -> None:
    servers = {name: backends(name) for name in ("a", "b", "c", "d")}
    port = free_port()
    be = f"be_{port}"
    applier = make_applier()
    assert applier.apply(kit.model_of(kit.service("/a", port, servers))).ok
    loops = [traffic(port), traffic(port, keep_alive=True)]
    wait_until(lambda: all(loop.total_ok() > 20 for loop in loops), message="traffic flowing")
    for keep in (("a", "b", "c"), ("a", "b"), ("b",)):
        result = applier.apply(kit.model_of(kit.service("/a", port, {k: servers[k] for k in keep})))
        assert result.ok and not result.reloaded, result.error
        wait_until(
            lambda keep=keep: applier.tick() >= 0 and active_names(kit, be) == list(keep),
            message=f"only {keep} left",
        )
        marks = [loop.total_ok() for loop in loops]
        wait_until(
            lambda marks=marks: all(lp.total_ok() > m + 20 for lp, m in zip(loops, marks)),
            message="traffic after the change",
        )
    grown = applier.apply(kit.model_of(kit.service("/a", port, servers)))
    assert grown.ok and not grown.reloaded
    wait_until(lambda: all(loop.ok["d"] > 0 for loop in loops), message="d back in rotation")
    for loop in loops:
        loop.stop()
    assert [loop.failures for loop in loops] == [[], []]
    assert applier.counters.reloads == 0


def test_new_service_port_reloads_seamlessly(
    make_applier: Any, kit: Any, backends: Any, traffic: Any
) -> None:
    a = backends("a")
    p1, p2 = free_port(), free_port()
    applier = make_applier()
    assert applier.apply(kit.model_of(kit.service("/a", p1, {"a": a}))).ok
    pid = admin(kit).worker_pid()
    loops = [traffic(p1), traffic(p1, keep_alive=True)]
    wait_until(lambda: all(loop.total_ok() > 20 for loop in loops), message="traffic flowing")
    for _ in range(3):  # a few reloads while the load runs
        p2 = free_port()
        result = applier.apply(
            kit.model_of(kit.service("/a", p1, {"a": a}), kit.service("/b", p2, {"a": a}))
        )
        assert result.ok and result.reloaded, result.error
        assert result.new_worker_pid not in (None, pid)
        assert kit.get(p2) == (200, "a")
        marks = [loop.total_ok() for loop in loops]
        wait_until(
            lambda marks=marks: all(lp.total_ok() > m + 20 for lp, m in zip(loops, marks)),
            message="traffic after the reload",
        )
    for loop in loops:
        loop.stop()
    assert [loop.failures for loop in loops] == [[], []]
    assert applier.counters.reloads == 3 and admin(kit).worker_pid() != pid


def test_a_taken_new_port_leaves_out_only_its_app(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    p1 = free_port()
    old_model = kit.model_of(kit.service("/a", p1, {"a": a}))
    applier = make_applier()
    assert applier.apply(old_model).ok
    pid = admin(kit).worker_pid()
    before = kit.paths.config.read_text()
    with socket.socket() as squatter:  # a plain listener without SO_REUSEPORT
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(8)
        taken = squatter.getsockname()[1]
        wanted = kit.model_of(kit.service("/a", p1, {"a": a}), kit.service("/b", taken, {"a": a}))
        result = applier.apply(wanted)
        assert result.ok and not result.reloaded, result.error
        assert [s.app_id for s in result.skipped] == ["/b"]
        assert f"127.0.0.1:{taken} is already in use" in result.skipped[0].reason
        assert result.waiting_for_ports == (f"127.0.0.1:{taken} is already in use",)
        assert kit.get(p1) == (200, "a")
        assert applier.counters.refused_ports == 1 and "in use" in applier.counters.last_error
        assert kit.paths.config.read_text() == before
        assert admin(kit).worker_pid() == pid
        assert [b.app_id for b in applier.running_config.backends] == ["/a"]
    assert not [p for p in kit.paths.root.iterdir() if p.name.endswith(".tmp")]
    # the port is free: the next apply of the same model brings the app in (one reload)
    again = applier.apply(wanted)
    assert again.ok and again.reloaded and not again.skipped and not again.waiting_for_ports
    assert kit.get(taken) == (200, "a") and kit.get(p1) == (200, "a")


def test_a_taken_port_does_not_hold_back_other_server_changes(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a, b = backends("a"), backends("b")
    p1 = free_port()
    applier = make_applier()
    assert applier.apply(kit.model_of(kit.service("/a", p1, {"a": a}))).ok
    pid = admin(kit).worker_pid()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(8)
        taken = squatter.getsockname()[1]
        blocked = kit.service("/b", taken, {"a": a})
        first = applier.apply(kit.model_of(kit.service("/a", p1, {"a": a}), blocked))
        assert first.ok and [s.app_id for s in first.skipped] == ["/b"]
        grown = applier.apply(kit.model_of(kit.service("/a", p1, {"a": a, "b": b}), blocked))
        assert grown.ok and grown.action == "runtime" and not grown.reloaded, grown.error
        assert grown.validations == 0  # the running listeners: no haproxy -c for this
        assert [s.app_id for s in grown.skipped] == ["/b"]
        assert set(kit.answers(p1, 6)) == {"a", "b"}
        # another new listener still gets its reload; only the blocked one waits
        p3 = free_port()
        more = applier.apply(
            kit.model_of(
                kit.service("/a", p1, {"a": a, "b": b}), blocked, kit.service("/c", p3, {"b": b})
            )
        )
        assert more.ok and more.reloaded, more.error
        assert [s.app_id for s in more.skipped] == ["/b"] and more.waiting_for_ports
        assert kit.get(p3) == (200, "b")
        assert f"be_{taken}" not in kit.paths.config.read_text()
    assert admin(kit).worker_pid() != pid
    assert applier.counters.reloads == 1


def test_failed_reload_restores_the_file_and_keeps_serving(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    p1 = free_port()
    applier = make_applier(check_ports=False)  # let the reload itself hit the taken port
    assert applier.apply(kit.model_of(kit.service("/a", p1, {"a": a}))).ok
    pid = admin(kit).worker_pid()
    before = kit.paths.config.read_text()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(8)
        taken = squatter.getsockname()[1]
        result = applier.apply(
            kit.model_of(kit.service("/a", p1, {"a": a}), kit.service("/b", taken, {"a": a}))
        )
    assert not result.ok and result.error.startswith("reload failed")
    assert applier.counters.reload_failures == 1
    assert kit.paths.config.read_text() == before  # a restart would load what runs
    wait_until(lambda: admin(kit).worker_pid() == pid, message="old worker answering")
    wait_until(lambda: kit.get(p1) == (200, "a"), message="old port serving")


def test_bad_backend_is_found_from_the_error_lines_and_the_rest_applied(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    ports = [free_port() for _ in range(4)]
    good = [kit.service(f"/app{i}", p, {"a": a}) for i, p in enumerate(ports[:3])]
    bad_fe, bad_be = kit.service("/bad", ports[3], {"a": a}, balance="no-such-algorithm")
    applier = make_applier()
    result = applier.apply(kit.model_of(*good, (bad_fe, bad_be)))
    assert result.ok, result.error
    assert [s.app_id for s in result.skipped] == ["/bad"]
    assert "balance" in result.skipped[0].reason
    assert result.validations == 2  # the failed one, then the one without /bad
    for port in ports[:3]:
        assert kit.get(port) == (200, "a")
    assert f"be_{ports[3]}" not in kit.paths.config.read_text()
    # the same bad app again: no reload, the skip reported again
    again = applier.apply(kit.model_of(*good, (bad_fe, bad_be)))
    assert again.ok and not again.reloaded and [s.app_id for s in again.skipped] == ["/bad"]


def test_unmappable_error_is_found_by_bisection(make_applier: Any, kit: Any, backends: Any) -> None:
    a = backends("a")
    ports = [free_port() for _ in range(5)]
    services = [kit.service(f"/app{i}", p, {"a": a}) for i, p in enumerate(ports)]

    def render(model: Any) -> str:
        text = kit.render(model)
        if any(b.app_id == "/app3" for b in model.backends):  # breaks the global section
            text = text.replace("global\n", "global\n    no-such-global-keyword\n", 1)
        return text

    applier = make_applier(render=render)
    result = applier.apply(kit.model_of(*services))
    assert result.ok, result.error
    assert [s.app_id for s in result.skipped] == ["/app3"]
    assert result.validations < 2 * len(services)
    for i, port in enumerate(ports):
        if i != 3:
            assert kit.get(port) == (200, "a")


def test_config_error_of_no_app_keeps_everything(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    p1, p2 = free_port(), free_port()
    state = {"broken": False}

    def render(model: Any) -> str:
        text = kit.render(model)
        return (
            text.replace("defaults\n", "defaults\n    broken-keyword\n")
            if state["broken"]
            else text
        )

    applier = make_applier(render=render)
    assert applier.apply(kit.model_of(kit.service("/a", p1, {"a": a}))).ok
    before = kit.paths.config.read_text()
    state["broken"] = True
    result = applier.apply(
        kit.model_of(kit.service("/a", p1, {"a": a}), kit.service("/b", p2, {"a": a}))
    )
    assert not result.ok and "broken-keyword" in result.error
    assert applier.counters.validation_failures == 1
    assert kit.paths.config.read_text() == before
    assert kit.get(p1) == (200, "a")


def test_killed_master_comes_back_with_the_current_servers(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a, b = backends("a"), backends("b")
    port = free_port()
    applier = make_applier()
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a}))).ok
    assert (
        applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b}))).action == "runtime"
    )
    proc = applier.haproxy
    os.kill(proc.master_pid, signal.SIGKILL)
    wait_until(lambda: not proc.running(), message="master gone")
    assert proc.restart_if_dead(timeout=30)
    wait_until(lambda: set(kit.answers(port, 6)) == {"a", "b"}, message="both servers back")
    c = backends("c")
    result = applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b, "c": c})))
    assert result.ok and result.action == "runtime" and not result.reloaded
    wait_until(lambda: "c" in kit.answers(port, 6), message="c in rotation")


def test_runtime_api_failure_falls_back_to_a_reload(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a, b = backends("a"), backends("b")
    port = free_port()
    applier = make_applier()
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a}))).ok
    working = applier.runtime
    applier.runtime = RuntimeAPI(str(kit.paths.root / "run" / "gone.sock"), timeout=1)
    result = applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b})))
    assert result.ok and result.reloaded, result.error
    assert applier.counters.runtime_failures >= 1
    assert set(kit.answers(port, 6)) == {"a", "b"}
    applier.runtime = working
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b}))).ok


def test_new_server_with_a_drain_state_is_not_added(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a, b = backends("a"), backends("b")
    port = free_port()
    applier = make_applier()
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a}))).ok
    model = kit.model_of(kit.service("/a", port, {"a": a, "b": b}))
    draining = tuple(
        s._replace(state="drain") if s.name == "b" else s for s in model.backends[0].servers
    )
    result = applier.apply(kit.with_servers(model, f"be_{port}", draining))
    assert result.ok and result.runtime_ops == 0
    assert server_names(kit, f"be_{port}") == ["a"]
    extra = ServerSpec(name="x", address="127.0.0.1", port=b.port, task_id="t")
    assert extra.state == "ready"


def test_drain_timeout_shuts_the_last_sessions_and_deletes(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a, b = backends("a"), backends("b")
    port = free_port()
    be = f"be_{port}"
    clock = FakeClock()
    applier = make_applier(clock=clock, drain_timeout=5.0)
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b}))).ok
    held, threads = hold_request_on(kit, port, b, a)
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a}))).ok
    assert applier.tick() == 0 and "b" in server_names(kit, be)  # its session keeps it
    clock.now += 5.0
    # time is up: sessions shut, MAINT (the shutdown completes asynchronously); not deleted
    wait_until(lambda: applier.tick() >= 0 and active_names(kit, be) == ["a"], message="b out")
    for t in threads:
        t.join(30)
    assert applier.counters.servers_tombstoned == 1 and applier.counters.servers_deleted == 0
    assert tombstone_names(kit, be) == ["b"]
    # b's held request was cut when its time was up: the client sees the cut, or, since HTTP
    # backends resend a GET that got no answer (retry-on empty-response), a's answer; never b's
    assert held and all(h != (200, "b") for h in held), held
    assert "server b " not in kit.paths.config.read_text()


def test_same_failed_config_is_not_retried_at_once(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    p1 = free_port()
    applier = make_applier(check_ports=False)
    assert applier.apply(kit.model_of(kit.service("/a", p1, {"a": a}))).ok
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(8)
        taken = squatter.getsockname()[1]
        wanted = kit.model_of(kit.service("/a", p1, {"a": a}), kit.service("/b", taken, {"a": a}))
        assert not applier.apply(wanted).ok
        wait_until(lambda: kit.get(p1) == (200, "a"), message="old port serving")
        status = applier.haproxy.proc_status()
        again = applier.apply(wanted)
    assert not again.ok and "failed to load recently" in again.error
    after = applier.haproxy.proc_status()
    assert status is not None and after is not None and after.reloads == status.reloads
    assert applier.counters.reload_failures == 1


def test_checked_and_sticky_servers_added_at_runtime(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    from sidecar.haproxy_model import PassiveCheckSpec

    a, b = backends("a"), backends("b")
    port = free_port()
    fe, be = kit.service("/a", port, {"a": a})
    be = replace(
        be,
        sticky=True,
        passive_check=PassiveCheckSpec(),
        servers=tuple(s._replace(check=True) for s in be.servers),
    )
    applier = make_applier()
    assert applier.apply(kit.model_of((fe, be))).ok
    pid = admin(kit).worker_pid()
    new = ServerSpec(name="b", address="127.0.0.1", port=b.port, task_id="t.b", check=True)
    result = applier.apply(kit.model_of((fe, replace(be, servers=(*be.servers, new)))))
    assert result.ok and result.action == "runtime", result.error
    rows = {r["svname"]: r for r in admin(kit).show_stat(be.name, 4)}
    assert rows["b"]["check_status"] != ""  # the check runs (it was enabled)
    wait_until(lambda: rows_status(kit, be.name, "b").startswith("UP"), message="b UP")
    # a client without the cookie reaches both; the cookie of b pins it to b
    assert set(kit.answers(port, 6)) == {"a", "b"}
    assert admin(kit).worker_pid() == pid


def rows_status(kit: Any, backend: str, server: str) -> str:
    rows = {r["svname"]: r for r in admin(kit).show_stat(backend, 4)}
    return rows[server]["status"]


def test_deferred_config_write_follows_on_tick(make_applier: Any, kit: Any, backends: Any) -> None:
    a, b = backends("a"), backends("b")
    port = free_port()
    clock = FakeClock()
    applier = make_applier(clock=clock, config_write_delay=1.0)
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a}))).ok
    result = applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b})))
    assert result.ok and result.runtime_ops == 2 and not result.config_written  # add, ready
    assert set(kit.answers(port, 6)) == {"a", "b"}  # routing changed at once
    assert "server b " not in kit.paths.config.read_text()
    applier.tick()
    assert "server b " not in kit.paths.config.read_text()  # not yet due
    clock.now += 1.0
    applier.tick()
    assert "server b " in kit.paths.config.read_text()
    assert applier.counters.reloads == 0


def get_with_cookie(port: int, cookie: str = "") -> tuple[str, str]:
    """(body, Set-Cookie value) of one request, sending ``cookie`` if given."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Connection": "close", **({"Cookie": cookie} if cookie else {})}
        conn.request("GET", "/", headers=headers)
        resp = conn.getresponse()
        return resp.read().decode(), (resp.getheader("Set-Cookie") or "").split(";")[0]
    finally:
        conn.close()


def test_sticky_client_of_a_going_task_is_sent_elsewhere(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a, b = backends("a"), backends("b")
    port = free_port()
    fe, be = kit.service("/a", port, {"a": a, "b": b})
    be = replace(be, sticky=True)
    applier = make_applier()
    assert applier.apply(kit.model_of((fe, be))).ok
    cookies = {}
    while len(cookies) < 2:
        body, cookie = get_with_cookie(port)
        cookies[body] = cookie
    assert all(get_with_cookie(port, cookies["b"])[0] == "b" for _ in range(4))  # pinned to b
    held, threads = hold_request_on(kit, port, b, a)  # keeps b from being deleted at once
    going = tuple(s._replace(state="drain") if s.name == "b" else s for s in be.servers)
    result = applier.apply(kit.model_of((fe, replace(be, servers=going))))
    assert result.ok and not result.reloaded
    assert "b" in server_names(kit, be.name)
    assert all(get_with_cookie(port, cookies["b"])[0] == "a" for _ in range(4))  # redispatched
    b.release.set()
    for t in threads:
        t.join(30)
    assert any(isinstance(r, tuple) and r == (200, "b") for r in held)  # b's request finished


def test_apply_while_haproxy_is_dead_starts_it_again(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a, b = backends("a"), backends("b")
    port = free_port()
    applier = make_applier()
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a}))).ok
    proc = applier.haproxy
    os.kill(proc.master_pid, signal.SIGKILL)
    wait_until(lambda: not proc.running(), message="master gone")
    # a change arrives before supervision noticed: the applier starts HAProxy itself
    result = applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b})))
    assert result.ok and result.started, result.error
    wait_until(lambda: set(kit.answers(port, 6)) == {"a", "b"}, message="both servers")
    assert proc.restart_if_dead() is False


def test_a_server_that_never_took_a_session_is_deleted(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a, b = backends("a"), backends("b")
    port = free_port()
    be = f"be_{port}"
    applier = make_applier()
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a}))).ok
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b}))).ok
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a}))).ok  # before traffic
    wait_until(lambda: applier.tick() >= 0 and server_names(kit, be) == ["a"], message="b gone")
    assert applier.counters.servers_deleted == 1 and applier.counters.servers_tombstoned == 0
    assert not applier.tombstones


def test_tombstones_go_with_the_next_reload_and_can_come_back(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a, b = backends("a"), backends("b")
    port = free_port()
    be = f"be_{port}"
    applier = make_applier()
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b}))).ok
    assert set(kit.answers(port, 4)) == {"a", "b"}
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a}))).ok
    wait_until(lambda: applier.tick() >= 0 and tombstone_names(kit, be) == ["b"], message="b")
    # the same task healthy again: the tombstone is simply set ready
    back = applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b})))
    assert back.ok and not back.reloaded and back.runtime_ops == 1, back
    assert set(kit.answers(port, 4)) == {"a", "b"} and not applier.tombstones
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a}))).ok
    wait_until(lambda: applier.tick() >= 0 and tombstone_names(kit, be) == ["b"], message="b")
    p2 = free_port()
    reloaded = applier.apply(
        kit.model_of(kit.service("/a", port, {"a": a}), kit.service("/b", p2, {"a": a}))
    )
    assert reloaded.ok and reloaded.reloaded, reloaded.error
    assert server_names(kit, be) == ["a"] and not applier.tombstones


def test_too_many_tombstones_force_one_seamless_tidy_up_reload(
    make_applier: Any, kit: Any, backends: Any, traffic: Any
) -> None:
    servers = {name: backends(name) for name in ("a", "b", "c")}
    port = free_port()
    be = f"be_{port}"
    clock = FakeClock()
    applier = make_applier(clock=clock, tombstone_limit=1, tidy_reload_quiet=30.0)
    assert applier.apply(kit.model_of(kit.service("/a", port, servers))).ok
    pid = admin(kit).worker_pid()
    loops = [traffic(port), traffic(port, keep_alive=True)]
    wait_until(lambda: all(len(loop.ok) == 3 for loop in loops), message="all three serve")
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": servers["a"]}))).ok
    wait_until(
        lambda: applier.tick() >= 0 and tombstone_names(kit, be) == ["b", "c"], message="tombstones"
    )
    applier.tick()
    assert admin(kit).worker_pid() == pid  # over the limit, but a reload happened just now
    clock.now += 30.0
    applier.tick()
    assert applier.counters.tidy_reloads == 1 and applier.counters.reloads == 1
    wait_until(lambda: admin(kit).worker_pid() != pid, message="new worker")
    assert server_names(kit, be) == ["a"] and not applier.tombstones
    marks = [loop.total_ok() for loop in loops]
    wait_until(
        lambda: all(lp.total_ok() > m + 20 for lp, m in zip(loops, marks)), message="traffic after"
    )
    for loop in loops:
        loop.stop()
    assert [loop.failures for loop in loops] == [[], []]
    applier.tick()
    assert applier.counters.tidy_reloads == 1  # nothing left to tidy


def test_a_server_drained_in_the_old_worker_is_ready_right_after_the_reload(
    make_applier: Any, kit: Any, backends: Any
) -> None:
    a, b = backends("a"), backends("b")
    port = free_port()
    be = f"be_{port}"
    model = kit.model_of(kit.service("/a", port, {"a": a, "b": b}))
    applier = make_applier()
    assert applier.apply(model).ok
    held, threads = hold_request_on(kit, port, b, a)  # keeps b draining
    drained = tuple(
        s._replace(state="drain") if s.name == "b" else s for s in model.backends[0].servers
    )
    assert applier.apply(kit.with_servers(model, be, drained)).ok
    assert {s.name: s.admin for s in admin(kit).show_servers_state(be)}["b"] == "drain"
    # b is healthy again in the same batch as a new service port: a reload
    seen: list[dict[str, str]] = []
    sync = applier._sync_runtime

    def look_first(*args: Any, **kwargs: Any) -> int:
        if not seen:  # the first thing after the reload is confirmed
            seen.append({s.name: s.admin for s in admin(kit).show_servers_state(be)})
        return sync(*args, **kwargs)

    applier._sync_runtime = look_first
    p2 = free_port()
    result = applier.apply(
        kit.model_of(kit.service("/a", port, {"a": a, "b": b}), kit.service("/b", p2, {"a": a}))
    )
    assert result.ok and result.reloaded, result.error
    assert seen == [{"a": "ready", "b": "ready"}]
    b.release.set()
    for t in threads:
        t.join(30)
    assert held and all(isinstance(r, tuple) and r[0] == 200 for r in held), held
