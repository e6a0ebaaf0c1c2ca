"""HAProxyProcess / ExternalHAProxy and the runtime client against the real HAProxy 2.6."""

from __future__ import annotations

import os
import signal
import socket
import stat
from typing import Any

import pytest

from sidecar.haproxy.process import ExternalHAProxy, HAProxyProcess
from sidecar.haproxy.runtime import RuntimeAPI, RuntimeAPIError
from testkit import free_port, wait_until


def start_with(proc: HAProxyProcess, paths: Any, text: str) -> None:
    paths.config.write_text(text)
    assert proc.ensure_started(timeout=30) is True


def test_start_serves_and_run_dir_is_private(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    port = free_port()
    start_with(
        haproxy_process, hapaths, kit.render(kit.model_of(kit.service("/a", port, {"a": a})))
    )
    assert kit.get(port) == (200, "a")
    assert stat.S_IMODE(os.stat(hapaths.run_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(haproxy_process.master_socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(hapaths.admin_socket).st_mode) == 0o600
    assert haproxy_process.ensure_started() is False  # already running: nothing to do
    assert haproxy_process.alive()


def test_runtime_reads_real_output(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    port = free_port()
    start_with(
        haproxy_process, hapaths, kit.render(kit.model_of(kit.service("/a", port, {"a": a})))
    )
    api = RuntimeAPI(str(hapaths.admin_socket))
    status = haproxy_process.proc_status()
    assert status is not None and len(status.workers) == 1
    assert api.worker_pid() == status.workers[0].pid
    rows = api.show_stat()
    server_row = next(r for r in rows if r["pxname"] == f"be_{port}" and r["svname"] == "a")
    assert server_row["addr"] == f"127.0.0.1:{a.port}"
    (state,) = api.show_servers_state(f"be_{port}")
    assert (state.name, state.port, state.admin, state.operational) == (
        "a",
        a.port,
        "ready",
        "running",
    )
    assert api.server_sessions(f"be_{port}") == {"a": 0}
    assert api.server_connections(f"be_{port}", "a") == 0
    with pytest.raises(RuntimeAPIError, match="No such server"):
        api.execute_checked(["show info", f"set server be_{port}/nope state ready"])
    sent = api.commands_sent
    api.execute("show info")
    assert api.commands_sent == sent + 1
    assert f"be_{port}" in api.show_backends()
    try:
        api.del_server(f"be_{port}", "a")
    except RuntimeAPIError as exc:
        assert "maintenance" in exc.message
    else:
        raise AssertionError("del server of an active server must fail")
    try:
        api.set_server_state(f"be_{port}", "nope", "drain")
    except RuntimeAPIError as exc:
        assert exc.message == "No such server."
    else:
        raise AssertionError("unknown server must fail")


def test_add_drain_delete_server_without_reload(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    b = backends("b")
    port = free_port()
    be = f"be_{port}"
    start_with(
        haproxy_process, hapaths, kit.render(kit.model_of(kit.service("/a", port, {"a": a})))
    )
    api = RuntimeAPI(str(hapaths.admin_socket))
    pid = api.worker_pid()
    api.add_server(be, "b", "127.0.0.1", b.port, "weight 1")
    assert set(kit.answers(port, 6)) == {"a"}  # dynamic servers start in maintenance
    api.set_server_state(be, "b", "ready")
    assert set(kit.answers(port, 6)) == {"a", "b"}
    api.set_server_state(be, "a", "drain")
    assert set(kit.answers(port, 6)) == {"b"}
    api.set_server_state(be, "a", "maint")
    api.del_server(be, "a")
    assert [s.name for s in api.show_servers_state(be)] == ["b"]
    assert api.worker_pid() == pid
    status = haproxy_process.proc_status()
    assert status is not None and status.reloads == 0


def test_batch_over_one_connection(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    port = free_port()
    be = f"be_{port}"
    start_with(
        haproxy_process, hapaths, kit.render(kit.model_of(kit.service("/a", port, {"a": a})))
    )
    api = RuntimeAPI(str(hapaths.admin_socket))
    errors = api.write_many(
        [
            f"add server {be}/x 127.0.0.1:{a.port}",
            f"add server {be}/x 127.0.0.1:{a.port}",
            f"set server {be}/x state maint",
            f"del server {be}/x",
            f"set server {be}/x weight 2",
        ]
    )
    assert errors[0] is None and errors[2] is None and errors[3] is None
    assert errors[1] is not None and errors[1].message.startswith("Already exists")
    assert errors[4] is not None and errors[4].message == "No such server."
    # more than one connection's worth (HAProxy drops a connection whose input outgrows its buffer)
    many = [f"add server {be}/m{i} 127.0.0.1:{a.port}" for i in range(600)]
    assert api.write_many(many) == [None] * 600
    assert len(api.show_servers_state(be)) == 601


def test_reload_brings_a_new_worker_and_a_new_port(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    p1, p2 = free_port(), free_port()
    start_with(haproxy_process, hapaths, kit.render(kit.model_of(kit.service("/a", p1, {"a": a}))))
    old_pid = RuntimeAPI(str(hapaths.admin_socket)).worker_pid()
    hapaths.config.write_text(
        kit.render(kit.model_of(kit.service("/a", p1, {"a": a}), kit.service("/b", p2, {"a": a})))
    )
    result = haproxy_process.reload(timeout=30)
    assert result.ok, result.message
    assert result.new_pid != old_pid
    assert RuntimeAPI(str(hapaths.admin_socket)).worker_pid() == result.new_pid
    assert kit.get(p2) == (200, "a") and kit.get(p1) == (200, "a")
    assert haproxy_process.reloads == 1


def test_failed_reload_keeps_the_old_worker(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    p1 = free_port()
    start_with(haproxy_process, hapaths, kit.render(kit.model_of(kit.service("/a", p1, {"a": a}))))
    old_pid = RuntimeAPI(str(hapaths.admin_socket)).worker_pid()
    with socket.socket() as squatter:  # a plain listener, no SO_REUSEPORT
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(8)
        taken = squatter.getsockname()[1]
        hapaths.config.write_text(
            kit.render(
                kit.model_of(kit.service("/a", p1, {"a": a}), kit.service("/b", taken, {"a": a})),
            )
        )
        result = haproxy_process.reload(timeout=30)
    assert not result.ok
    assert "Address already in use" in result.message or "refused" in result.message
    wait_until(lambda: RuntimeAPI(str(hapaths.admin_socket)).worker_pid() == old_pid)
    wait_until(lambda: kit.get(p1) == (200, "a"), message="old port serving again")
    assert haproxy_process.reload_failures == 1


def test_killed_master_is_restarted(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    port = free_port()
    start_with(
        haproxy_process, hapaths, kit.render(kit.model_of(kit.service("/a", port, {"a": a})))
    )
    assert haproxy_process.restart_if_dead() is False
    master_pid = haproxy_process.master_pid
    assert master_pid is not None
    os.kill(master_pid, signal.SIGKILL)
    wait_until(lambda: not haproxy_process.running(), message="master gone")
    assert haproxy_process.restart_if_dead(timeout=30) is True
    assert haproxy_process.master_pid != master_pid
    wait_until(lambda: kit.get(port) == (200, "a"), message="serving after restart")
    assert haproxy_process.starts == 2


def test_stop_leaves_no_process(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    port = free_port()
    start_with(
        haproxy_process, hapaths, kit.render(kit.model_of(kit.service("/a", port, {"a": a})))
    )
    status = haproxy_process.proc_status()
    assert status is not None
    pids = [status.master.pid] if status.master else []
    pids += [w.pid for w in status.workers]
    haproxy_process.stop()
    for pid in pids:
        wait_until(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), message=f"pid {pid} gone")
    assert not haproxy_process.running()


def test_external_haproxy_reloads_through_the_master_socket(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    port = free_port()
    start_with(
        haproxy_process, hapaths, kit.render(kit.model_of(kit.service("/a", port, {"a": a})))
    )
    external = ExternalHAProxy(haproxy_process.master_socket, str(hapaths.admin_socket))
    assert external.running()
    assert external.ensure_started() is False
    before = RuntimeAPI(str(hapaths.admin_socket)).worker_pid()
    result = external.reload(timeout=30)
    assert result.ok and result.new_pid != before
    external.stop()  # not ours: the process keeps running
    assert haproxy_process.running()
    assert external.restart_if_dead() is False
