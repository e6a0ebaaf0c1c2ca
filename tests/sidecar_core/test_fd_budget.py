"""The descriptor budget with plain data: what fits the open-files limit, and what is given up."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import pytest

from sidecar.fd_budget import (
    CHECK_RESERVE_STEP,
    CHECKS,
    LEFT_OUT_REASON,
    LISTENERS,
    MAXCONN_FLOOR,
    PASSIVE,
    BudgetFacts,
    FdNeeds,
    check_reserve,
    count_needs,
    fit_model,
    template_needs,
)
from sidecar.haproxy_model import (
    BackendSpec,
    FrontendSpec,
    HAProxyModel,
    HealthCheckSpec,
    PassiveCheckSpec,
    ServerSpec,
    listener_signature,
)
from sidecar.render import render_config
from sidecar.render_settings import RenderSettings

PASSIVE_CHECK = PassiveCheckSpec()
ACTIVE_CHECK = HealthCheckSpec(kind="http", path="/health")


def app(
    index: int, servers: int = 3, active: bool = False, passive: bool = True
) -> tuple[FrontendSpec, BackendSpec]:
    port = 10000 + index
    checked = active or passive
    backend = BackendSpec(
        name=f"be_{port}",
        app_id=f"/app-{index:05d}",
        service_port=port,
        mode="tcp",
        balance="roundrobin",
        servers=tuple(
            ServerSpec(f"s{n}", "127.0.0.1", 31000 + n, f"app-{index}.{n}", check=checked)
            for n in range(servers)
        ),
        health_check=ACTIVE_CHECK if active else None,
        passive_check=PASSIVE_CHECK if passive else None,
    )
    frontend = FrontendSpec(f"fe_{port}", port, ("127.0.0.1",), "tcp", backend.name)
    return frontend, backend


def cluster(apps: int, **kwargs: bool) -> HAProxyModel:
    pairs = [app(i, **kwargs) for i in range(apps)]
    return HAProxyModel(tuple(f for f, _ in pairs), tuple(b for _, b in pairs))


def facts(limit: Optional[int], wanted: int = 4096, threads: int = 2) -> BudgetFacts:
    return BudgetFacts(limit=limit, wanted=wanted, threads=threads)


# --- the count -------------------------------------------------------------------------------


def test_the_count_is_haproxys_for_an_empty_config() -> None:
    """Measured: maxconn 4096, 2 threads, -W and one -S, one stats socket -> Maxsock 8231."""
    needs = count_needs(HAProxyModel(), facts(None))
    assert needs == FdNeeds(listeners=1, checked_servers=0, threads=2)
    assert needs.total(4096) == 8231
    assert FdNeeds(1, 0, threads=1).total(1000) == 2036  # measured: one bind, no stats socket


def test_listeners_and_checked_servers_count_one_each() -> None:
    model = cluster(10)  # 10 listeners, 30 servers with a check
    unchecked = cluster(10, passive=False)
    assert count_needs(model, facts(None)) == FdNeeds(11, 30, 2)
    assert count_needs(unchecked, facts(None)) == FdNeeds(11, 0, 2)
    several_binds = replace(
        model, frontends=(replace(model.frontends[0], binds=("127.0.0.1", "::1")),)
    )
    assert count_needs(several_binds, facts(None)).listeners == 1 + 2


def test_template_needs_counts_what_the_template_adds() -> None:
    text = render_config(HAProxyModel(), RenderSettings())
    assert template_needs(text) == (1, 0)  # the stats socket
    extra = (
        text
        + "\nfrontend metrics\n    bind 127.0.0.1:8405,127.0.0.2:8405\n"
        + "backend static\n    server a 127.0.0.1:1 check inter 5s\n    server b 127.0.0.1:2\n"
        + "    # bind 1.2.3.4:5 in a comment\n"
    )
    assert template_needs(extra) == (3, 1)


def test_template_needs_counts_haproxys_metrics_listener() -> None:
    """--haproxy-metrics-listen adds a bind to the template's part; a syslog target adds none."""
    exporter = RenderSettings(metrics_listen="127.0.0.1:9101", stats_page=True)
    assert template_needs(render_config(HAProxyModel(), exporter)) == (2, 0)
    logged = replace(exporter, access_log="127.0.0.1:514")
    assert template_needs(render_config(HAProxyModel(), logged)) == (2, 0)


# --- fitting ---------------------------------------------------------------------------------


def test_the_wanted_maxconn_when_it_fits() -> None:
    model, budget = fit_model(cluster(10), facts(20000))
    assert model.maxconn == budget.effective == budget.wanted == 4096
    assert budget.needed == 2 * 4096 + 38 + 11 + 30
    assert not budget.lowered and not budget.exhausted and budget.reason() == ""
    assert model.budget is budget


def test_maxconn_lowered_to_fit_a_1024_limit() -> None:
    model, budget = fit_model(cluster(10), facts(1024))
    reserve = CHECK_RESERVE_STEP  # 30 checked servers: one step
    assert budget.effective == (1024 - 38 - 11 - reserve) // 2 == 455
    assert model.maxconn == 455
    assert budget.needed <= 1024
    assert budget.needed == 2 * 455 + 38 + 11 + 30
    assert budget.lowered and not budget.exhausted
    reason = budget.reason()
    assert "maxconn 455 instead of 4096" in reason
    assert "limit is 1,024" in reason
    assert f"raise it by {budget.wanted_needs - 1024:,} (to {budget.wanted_needs:,})" in reason
    assert model.backends == cluster(10).backends  # nothing else changes


def test_an_unknown_limit_changes_nothing() -> None:
    model, budget = fit_model(cluster(3), facts(None))
    assert model.maxconn == budget.effective == 4096
    assert budget.limit is None and budget.reason() == ""


def test_a_wanted_maxconn_below_the_floor_is_kept() -> None:
    model, budget = fit_model(cluster(3), facts(1024, wanted=100))
    assert model.maxconn == 100 and not budget.lowered


def test_never_below_the_floor_passive_checks_go_first() -> None:
    # 150 apps x 3 servers: 150 listeners + 450 checks do not fit beside 2 x 256 in 1,024
    start = cluster(150)
    model, budget = fit_model(start, facts(1024))
    assert budget.exhausted and budget.left_out == PASSIVE
    # what the checks leave goes to maxconn: 151 listeners and the reserve, no checks
    assert model.maxconn == budget.effective == (1024 - 38 - 151 - CHECK_RESERVE_STEP) // 2
    assert budget.effective > MAXCONN_FLOOR
    assert budget.unchecked_servers == 450
    assert all(b.passive_check is None for b in model.backends)
    assert all(not s.check for b in model.backends for s in b.servers)
    assert len(model.frontends) == 150  # every app keeps its listener
    assert count_needs(model, facts(1024)).total(budget.effective) <= 1024
    # the metric: what the whole catalog needs at the effective maxconn, above the limit
    assert budget.needed == count_needs(start, facts(1024)).total(budget.effective) > 1024
    reason = budget.reason()
    assert f"maxconn {budget.effective} instead of 4096" in reason
    assert f"even maxconn {MAXCONN_FLOOR} with every check and listener needs" in reason
    assert "passive checks are off for 450 servers" in reason
    assert f"by {budget.floor_needs - 1024:,} (to {budget.floor_needs:,}) to serve everything" in (
        reason
    )


def test_active_checks_stay_while_dropping_passive_ones_is_enough() -> None:
    pairs = [app(i, active=(i < 5)) for i in range(150)]
    start = HAProxyModel(tuple(f for f, _ in pairs), tuple(b for _, b in pairs))
    model, budget = fit_model(start, facts(1024))
    assert budget.left_out == PASSIVE
    active = [b for b in model.backends if b.health_check is not None]
    assert len(active) == 5
    assert all(s.check for b in active for s in b.servers)
    assert budget.unchecked_servers == 145 * 3


def test_active_checks_go_when_they_alone_do_not_fit() -> None:
    start = cluster(150, active=True)
    model, budget = fit_model(start, facts(1024))
    assert budget.left_out == CHECKS
    assert all(b.health_check is None and b.passive_check is None for b in model.backends)
    assert len(model.frontends) == 150
    assert "health checks are off for 450 servers" in budget.reason()


def test_listeners_that_do_not_fit_are_left_out_highest_ports_first() -> None:
    start = cluster(600)
    model, budget = fit_model(start, facts(1024))
    assert budget.left_out == LISTENERS and model.maxconn == MAXCONN_FLOOR
    room = 1024 - 2 * MAXCONN_FLOOR - 38 - 1 - CHECK_RESERVE_STEP
    assert len(model.frontends) == room
    assert [f.port for f in model.frontends] == [10000 + i for i in range(room)]
    assert len(model.backends) == room
    left = [s for s in model.skipped if s.reason == LEFT_OUT_REASON]
    assert len(left) == 600 - room == len(budget.apps_left_out)
    assert count_needs(model, facts(1024)).total(MAXCONN_FLOOR) <= 1024
    assert f"{600 - room} apps are left out" in budget.reason()


def test_a_limit_too_small_for_haproxy_alone_still_gives_a_config() -> None:
    model, budget = fit_model(cluster(5), facts(200))
    assert model.frontends == () and model.backends == ()
    assert 1 <= budget.effective < MAXCONN_FLOOR
    assert count_needs(model, facts(200)).total(budget.effective) <= 200


def test_maxconn_is_part_of_what_needs_a_reload_and_of_the_text() -> None:
    low, _ = fit_model(cluster(2), facts(1024))
    high, _ = fit_model(cluster(2), facts(20000))
    assert listener_signature(low) != listener_signature(high)
    assert low == replace(high, maxconn=low.maxconn)  # the budget itself is not compared
    text = render_config(low, RenderSettings())
    assert f"\n    maxconn {low.maxconn}\n    no strict-limits\n" in text


# --- the reserve for servers added at runtime ------------------------------------------------


@pytest.mark.parametrize(
    ("checks", "previous", "reserve"),
    [
        (0, None, 64),
        (63, None, 64),
        (64, None, 128),
        (70, 128, 128),  # still covers: kept
        (130, 128, 192),  # outgrown: the next step
        (10, 128, 128),  # within two steps: kept
        (0, 192, 64),  # shrunk by more than two steps: recomputed
    ],
)
def test_check_reserve_steps(checks: int, previous: Optional[int], reserve: int) -> None:
    assert check_reserve(checks, previous) == reserve


def test_scaling_an_app_by_a_few_tasks_keeps_maxconn() -> None:
    """Servers added or removed within the reserve do not change maxconn: no reload."""
    _, first = fit_model(cluster(10), facts(1024))
    grown = cluster(10, servers=4)  # 40 checked servers instead of 30
    model, second = fit_model(grown, facts(1024), first)
    assert second.effective == first.effective == model.maxconn
    shrunk = cluster(10, servers=1)
    assert fit_model(shrunk, facts(1024), second)[1].effective == first.effective
