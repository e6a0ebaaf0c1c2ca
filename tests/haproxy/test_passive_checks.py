"""The default passive check with real traffic: a dead task leaves rotation on the requests
that find it dead, without a probe, and comes back on its own.

The server lines are the renderer's with :class:`PassiveCheckSpec`'s defaults (``inter 24h``:
no probe while a server is up). A backend stops answering (its port closed, as when a task
dies before Marathon says so): the requests sent meanwhile are all answered by the other
server (``retries`` and ``option redispatch``), HAProxy marks the dead one DOWN from what the
traffic saw (check status ``HANA``, ``hanafail``), and once the port answers again a probe
(``fastinter`` after the failure, then every ``downinter``) brings it back.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import pytest

from sidecar.haproxy.process import HAProxyProcess
from sidecar.haproxy.runtime import RuntimeAPI
from sidecar.haproxy_model import PassiveCheckSpec
from testkit import free_port, wait_until

pytestmark = [pytest.mark.haproxy]


def server_row(admin: RuntimeAPI, backend: str, server: str) -> dict[str, str]:
    for row in admin.show_stat():
        if row.get("pxname") == backend and row.get("svname") == server:
            return row
    raise AssertionError(f"{backend}/{server} not in show stat")


@pytest.mark.parametrize("mode", ["tcp", "http"])
def test_a_dead_task_leaves_rotation_on_real_traffic_and_comes_back(
    haproxy_process: HAProxyProcess,
    hapaths: Any,
    kit: Any,
    backends: Callable[..., Any],
    mode: str,
) -> None:
    alive, dying = backends("alive"), backends("dying")
    port = free_port()
    frontend, backend = kit.service("/web", port, {"alive": alive, "dying": dying})
    passive = PassiveCheckSpec()
    assert passive.inter_ms == 86_400_000  # the default: no probe while up
    backend = replace(
        backend,
        mode=mode,
        passive_check=passive,
        servers=tuple(s._replace(check=True) for s in backend.servers),
    )
    model = kit.model_of((replace(frontend, mode=mode), backend))
    hapaths.config.write_text(kit.render(model))
    assert "check inter 24h fastinter 10s downinter 10s rise 1 fall 2 observe layer4" in (
        hapaths.config.read_text()
    )
    haproxy_process.ensure_started(timeout=30)
    admin = RuntimeAPI(str(hapaths.admin_socket))
    wait_until(lambda: set(kit.answers(port, 6)) == {"alive", "dying"}, timeout=20)

    dead_port = dying.port
    dying.stop()  # the task is gone; nobody told HAProxy
    seen = kit.answers(port, 20)
    assert seen == {"alive": 20}  # every request answered: retried on the live server
    row = server_row(admin, backend.name, "dying")
    assert row["status"] == "DOWN", row
    assert row["check_status"] == "HANA" and int(row["hanafail"]) >= 1, row  # from traffic

    backends("dying", dead_port)  # the task answers again on its port
    # probed fastinter (10 s) after it was marked down, then every downinter (10 s)
    wait_until(lambda: server_row(admin, backend.name, "dying")["status"] == "UP", timeout=30)
    wait_until(lambda: set(kit.answers(port, 6)) == {"alive", "dying"}, timeout=10)
