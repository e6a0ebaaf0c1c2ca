"""The descriptor count of sidecar.fd_budget is HAProxy's own, to the descriptor.

Each config is rendered by the real renderer and started the way the sidecar starts HAProxy
(``-W -S <master socket>``) under ``prlimit``: with ``strict-limits`` (HAProxy's default) it
starts when the hard limit is exactly what the budget counts, reports that count as ``Maxsock``,
and refuses one descriptor less. With the ``no strict-limits`` the template writes, a maxconn too
large still starts (the reason the sidecar must lower it itself: HAProxy would run out).
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import pytest

from sidecar.fd_budget import BudgetFacts, fit_model, template_needs
from sidecar.haproxy.runtime import RuntimeAPI, RuntimeAPIError
from sidecar.haproxy_model import HAProxyModel, HealthCheckSpec, PassiveCheckSpec, ServerSpec
from sidecar.render import render_config
from sidecar.render_settings import RenderSettings
from testkit import free_port, wait_until

pytestmark = [pytest.mark.haproxy]

STRICT_LINE = "    no strict-limits\n"


class Started:
    """``prlimit --nofile=L:L haproxy -W -S ...``: running with its admin socket, or exited."""

    def __init__(self, haproxy_bin: str, config: Path, run_dir: Path, limit: int) -> None:
        self.admin = run_dir / "admin.sock"
        self.log = run_dir / "haproxy.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["prlimit", f"--nofile={limit}:{limit}", haproxy_bin, "-W",
                 "-S", f"{run_dir / 'master.sock'},mode,600", "-f", str(config)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip

    def info(self) -> Optional[dict[str, str]]:
        """``show info`` once the worker answers; None when HAProxy exited."""
        answer: dict[str, dict[str, str]] = {}

        def ready() -> bool:
            if self.proc.poll() is not None:
                return True
            try:
                answer["info"] = RuntimeAPI(str(self.admin), timeout=2).show_info()
            except RuntimeAPIError:
                return False
            return True

        wait_until(ready, timeout=30, message="haproxy answers or exits")
        return answer.get("info")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)
        return self.log.read_text(errors="replace")


def model(kit: Any, apps: int, servers: int, active: int = 0, binds: int = 1) -> HAProxyModel:
    """``apps`` services with ``servers`` checked servers each (``active`` of them with an
    active HTTP check, the rest passive), listening on ``binds`` loopback addresses."""
    addresses = tuple(f"127.0.0.{n + 1}" for n in range(binds))
    services = []
    for i in range(apps):
        fe, be = kit.service(f"/app-{i}", free_port(), {})
        be = replace(
            be,
            servers=tuple(
                ServerSpec(f"s{n}", "127.0.0.1", 9, f"app-{i}.{n}", check=True)
                for n in range(servers)
            ),
            health_check=HealthCheckSpec(kind="http") if i < active else None,
            passive_check=PassiveCheckSpec(),
        )
        services.append((replace(fe, binds=addresses), be))
    return kit.model_of(*services)


@pytest.mark.parametrize(
    ("threads", "apps", "servers", "active", "binds"),
    [(1, 0, 0, 0, 1), (3, 6, 3, 2, 1), (2, 4, 2, 0, 2)],
)
def test_the_budget_counts_what_haproxy_asks_for(
    haproxy_bin: str, hapaths: Any, kit: Any,
    threads: int, apps: int, servers: int, active: int, binds: int,
) -> None:  # fmt: skip
    settings = RenderSettings(
        admin_socket=str(hapaths.admin_socket),
        server_state_file=str(hapaths.state_file),
        nbthread=threads,
    )
    fitted, budget = fit_model(
        model(kit, apps, servers, active, binds), BudgetFacts(None, wanted=300, threads=threads)
    )
    text = render_config(fitted, settings)
    assert STRICT_LINE in text
    hapaths.config.write_text(text.replace(STRICT_LINE, ""))  # HAProxy's default: strict
    needed = budget.needed
    assert needed == 2 * 300 + 20 + 1 + 11 + 3 * threads + 1 + apps * binds + apps * servers

    exact = Started(haproxy_bin, hapaths.config, hapaths.run_dir, needed)
    info = exact.info()
    log = exact.stop()
    assert info is not None, log
    assert (int(info["Maxsock"]), int(info["Maxconn"])) == (needed, 300)

    short = Started(haproxy_bin, hapaths.config, hapaths.run_dir, needed - 1)
    assert short.info() is None
    log = short.stop()
    assert short.proc.returncode != 0
    assert f"Cannot raise FD limit to {needed}, limit is {needed - 1}" in log


def test_no_strict_limits_starts_above_the_limit_but_keeps_the_maxconn(
    haproxy_bin: str, hapaths: Any, kit: Any
) -> None:
    """Why the sidecar lowers maxconn itself: HAProxy would accept more than it can hold."""
    settings = RenderSettings(
        admin_socket=str(hapaths.admin_socket), server_state_file=str(hapaths.state_file)
    )
    fitted, _ = fit_model(model(kit, 1, 1), BudgetFacts(None, wanted=4096, threads=2))
    hapaths.config.write_text(render_config(fitted, settings))
    started = Started(haproxy_bin, hapaths.config, hapaths.run_dir, 1024)
    info = started.info()
    log = started.stop()
    assert info is not None, log
    assert int(info["Maxconn"]) == 4096 and int(info["Ulimit-n"]) == 1024
    assert "FD limit (1024) too low for maxconn=4096" in log


def test_the_budget_counts_the_metrics_listener_as_haproxy_does(
    haproxy_bin: str, hapaths: Any, kit: Any
) -> None:
    """--haproxy-metrics-listen is one more listener, counted from the rendered template (as
    the sidecar counts it: template_needs); a syslog access-log target costs nothing."""
    settings = RenderSettings(
        admin_socket=str(hapaths.admin_socket),
        server_state_file=str(hapaths.state_file),
        nbthread=1,
        metrics_listen=f"127.0.0.1:{free_port()}",
        access_log=f"127.0.0.1:{free_port()}",
    )
    listeners, checks = template_needs(render_config(HAProxyModel(), settings))
    assert (listeners, checks) == (2, 0)
    facts = BudgetFacts(None, wanted=300, threads=1, template_listeners=listeners)
    fitted, budget = fit_model(model(kit, 2, 1), facts)
    hapaths.config.write_text(render_config(fitted, settings).replace(STRICT_LINE, ""))
    assert budget.needed == 2 * 300 + 20 + 1 + 11 + 3 + 2 + 2 + 2

    exact = Started(haproxy_bin, hapaths.config, hapaths.run_dir, budget.needed)
    info = exact.info()
    log = exact.stop()
    assert info is not None, log
    assert int(info["Maxsock"]) == budget.needed
    short = Started(haproxy_bin, hapaths.config, hapaths.run_dir, budget.needed - 1)
    assert short.info() is None
    assert f"Cannot raise FD limit to {budget.needed}" in short.stop()
