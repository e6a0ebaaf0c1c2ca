"""A master an earlier sidecar run left running keeps serving until ours is ready; its ports
count as served in the applier's free-port checks, and it is soft-stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sidecar.apply import Applier
from sidecar.haproxy.process import HAProxyProcess
from sidecar.haproxy.runtime import RuntimeAPI


def new_process(haproxy_bin: str, hapaths: Any) -> HAProxyProcess:
    return HAProxyProcess(
        haproxy_bin,
        str(hapaths.config),
        str(hapaths.run_dir),
        admin_socket=str(hapaths.admin_socket),
    )


@pytest.fixture
def earlier(haproxy_bin: str, hapaths: Any) -> Iterator[HAProxyProcess]:
    """The earlier run's HAProxy (stopped in teardown if still there)."""
    proc = new_process(haproxy_bin, hapaths)
    yield proc
    proc.stop(timeout=10)


@pytest.fixture
def later(haproxy_bin: str, hapaths: Any) -> Iterator[HAProxyProcess]:
    """The restarted sidecar's HAProxy (stopped in teardown)."""
    proc = new_process(haproxy_bin, hapaths)
    yield proc
    proc.stop(timeout=10)


def test_the_leftover_is_found_and_soft_stopped_once_ours_serves(
    earlier: HAProxyProcess, later: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    port = kit.free_port()
    hapaths.config.write_text(kit.render(kit.model_of(kit.service("/a", port, {"a": a}))))
    earlier.ensure_started()
    assert later.leftover_master_pid() == earlier.master_pid
    later.start()
    assert earlier.running()  # still serving while ours comes up
    later.wait_ready(30)
    kit.wait_until(lambda: not earlier.running(), 30, "the leftover master soft-stopped")
    assert earlier._proc is not None and earlier._proc.returncode == 0  # SIGUSR1: clean exit
    assert later.leftover_master_pid() is None
    assert kit.get(port) == (200, "a")


def test_applier_counts_the_leftover_ports_as_served(
    earlier: HAProxyProcess, later: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    a = backends("a")
    port = kit.free_port()
    model = kit.model_of(kit.service("/a", port, {"a": a}))
    hapaths.config.write_text(kit.render(model))
    earlier.ensure_started()
    applier = Applier(
        later,
        RuntimeAPI(str(hapaths.admin_socket), master_socket=later.master_socket),
        str(hapaths.config),
        kit.render,
        haproxy_bin=later.haproxy_bin,
        config_write_delay=0.0,
    )
    result = applier.apply(model)
    assert result.ok and result.started, result.error
    assert result.skipped == () and result.waiting_for_ports == ()
    kit.wait_until(lambda: not earlier.running(), 30, "the leftover master soft-stopped")
    assert kit.get(port) == (200, "a")
