"""The admin socket file deleted under a running HAProxy: runtime commands go through the master
CLI (``@1 <command>``), reloads are still confirmed, and supervision brings the file back."""

from __future__ import annotations

import os
from typing import Any

from sidecar.haproxy.process import HAProxyProcess
from sidecar.haproxy.runtime import RuntimeAPI, RuntimeUnavailable, split_master_prompt_answers
from testkit import free_port


def start_serving_a(proc: HAProxyProcess, hapaths: Any, kit: Any, backends: Any) -> int:
    a = backends("a")
    port = free_port()
    hapaths.config.write_text(kit.render(kit.model_of(kit.service("/a", port, {"a": a}))))
    assert proc.ensure_started(timeout=30) is True
    return port


def test_split_master_prompt_answers_reads_each_answer() -> None:
    stream = "master> \nmaster> 1\n# be_id\n3 b 1 s1\n\nmaster> No such server.\nmaster> "
    assert split_master_prompt_answers(stream, 3) == ["", "1\n# be_id\n3 b 1 s1", "No such server."]
    failed = "master[ReloadFailed]> New server registered.\nmaster[ReloadFailed]> "
    assert split_master_prompt_answers(failed, 1) == ["New server registered."]


def test_commands_reach_the_worker_through_the_master_when_the_file_is_gone(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    port = start_serving_a(haproxy_process, hapaths, kit, backends)
    be = f"be_{port}"
    b = backends("b")
    api = RuntimeAPI(str(hapaths.admin_socket), master_socket=haproxy_process.master_socket)
    pid = api.worker_pid()
    os.unlink(hapaths.admin_socket)
    assert api.worker_pid() == pid
    api.add_server(be, "b", "127.0.0.1", b.port, "weight 1")
    errors = api.write_many([f"set server {be}/b state ready", f"set server {be}/zz state ready"])
    assert errors[0] is None
    assert errors[1] is not None and errors[1].message == "No such server."
    assert set(kit.answers(port, 6)) == {"a", "b"}
    assert api.sent_via_master == 4


def test_without_the_master_socket_a_missing_file_is_unavailable(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    start_serving_a(haproxy_process, hapaths, kit, backends)
    os.unlink(hapaths.admin_socket)
    api = RuntimeAPI(str(hapaths.admin_socket))
    try:
        api.show_info()
    except RuntimeUnavailable as exc:
        assert "No such file" in exc.message
    else:
        raise AssertionError("show info answered without a socket to send it on")


def test_reload_is_confirmed_and_supervision_restores_the_file(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    start_serving_a(haproxy_process, hapaths, kit, backends)
    os.unlink(hapaths.admin_socket)
    result = haproxy_process.reload(timeout=30)
    assert result.ok, result.message
    assert not os.path.exists(hapaths.admin_socket)  # HAProxy itself does not bring it back
    assert haproxy_process.restart_if_dead() is False
    assert os.path.exists(hapaths.admin_socket)
    assert RuntimeAPI(str(hapaths.admin_socket)).worker_pid() == result.new_pid
