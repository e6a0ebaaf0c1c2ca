"""Blue/green and canary deploys end to end, under continuous load, with no failed request.

The emulator runs real echo tasks (each answers with its task id), the sidecar daemon follows it
and drives a real HAProxy; a background thread sends requests through 127.0.0.1:<shared port>
the whole time and counts every failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.deploy import deploy_apps
from marathon_bridge.strategies import (
    StrategyError,
    blue_green_deploy,
    canary_deploy,
    resume,
    rollback,
)
from marathon_bridge.testing import MarathonEmulator
from sidecar.haproxy.runtime import RuntimeAPI
from sidecar.names import server_name
from testkit import free_ports, wait_until
from testkit.apps import echo_app
from testkit.http import ask
from testkit.load import LoadGenerator
from testkit.marathon import emulated_marathon
from testkit.node import SidecarNode, short_state_dir, sidecar_settings, start_sidecar

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


def version(app_id: str, shared: int, alt: int, instances: int, health: str = "/health") -> dict:
    """One colour of a blue/green pair: echo tasks on the shared port, checked on ``health``."""
    app = echo_app(
        app_id,
        shared,
        instances,
        labels={"HAPROXY_0_MODE": "http", "HAPROXY_DEPLOYMENT_ALT_PORT": str(alt)},
    )
    app["healthChecks"][0].update(path=health, gracePeriodSeconds=5)
    return app


@dataclass
class Cluster:
    emulator: MarathonEmulator
    client: MarathonClient
    node: SidecarNode

    def runtime(self) -> RuntimeAPI:
        return self.node.runtime

    def reloads(self) -> float:
        return self.node.metric("marathon_sidecar_haproxy_reloads_total")


@pytest.fixture(scope="module")
def cluster(haproxy_bin: str) -> Iterator[Cluster]:
    # kill_grace: TASK_KILLING -> SIGTERM, what taskKillGracePeriodSeconds gives a real task
    with emulated_marathon(kill_grace=1.0) as marathon:
        settings = sidecar_settings(
            (marathon.emulator.url,), short_state_dir("mb-strat-"), haproxy_bin
        )
        with start_sidecar(settings, wait_for_haproxy=False) as node:
            yield Cluster(marathon.emulator, marathon.client, node)


@pytest.fixture
def loaded(cluster: Cluster) -> Iterator[Callable[[int], LoadGenerator]]:
    """``loaded(port)``: back-to-back requests on new connections, every answer counted."""
    loads: list[LoadGenerator] = []

    def start(port: int) -> LoadGenerator:
        load = LoadGenerator([port], keepalive=0, fresh=1, pause=0.005).start()
        loads.append(load)
        return load

    yield start
    for load in loads:
        load.stop()


def task_ids(cluster: Cluster, app_id: str) -> set[str]:
    return {str(t["id"]) for t in cluster.client.list_app_tasks(app_id)}


def first_version(cluster: Cluster, app: dict[str, Any]) -> str:
    """Deploy v1 (a first run creates ``<id>-blue``) and wait until HAProxy serves it."""
    report = blue_green_deploy(cluster.client, app, drain_delay=0.5, timeout=120)
    shared = app["portDefinitions"][0]["port"]
    wait_until(lambda: ask(shared) in task_ids(cluster, report.new_app), 60, "v1 served")
    return report.new_app


def serves_only(cluster: Cluster, load: LoadGenerator, app_id: str) -> bool:
    before = load.answered()
    wait_until(lambda: load.answered() >= before + 40, 60, "40 more answers")
    return load.recent_answers() <= task_ids(cluster, app_id)


def test_blue_green_under_load_drops_nothing(cluster: Cluster, loaded: Any) -> None:
    shared, alt = free_ports(2)
    old_id = first_version(cluster, version("/bg/web", shared, alt, 2))
    load = loaded(shared)
    wait_until(lambda: load.answered() > 20, 30, "load running")
    steps: list[str] = []
    report = blue_green_deploy(
        cluster.client,
        version("/bg/web", shared, alt, 3),
        drain_delay=1.5,
        timeout=120,
        progress=steps.append,
    )
    assert (report.old_app, report.new_app) == (old_id, "/bg/web-green")
    assert report.serving == {"/bg/web-green": 3}
    assert serves_only(cluster, load, "/bg/web-green")
    assert load.totals().failures == 0, load.totals().errors
    assert any(s.startswith("deleted /bg/web-blue") for s in steps)
    seen = set(load.totals().by_task)
    assert seen & task_ids(cluster, "/bg/web-green")  # both versions answered during the run


def test_canary_steps_under_load_drop_nothing(cluster: Cluster, loaded: Any) -> None:
    shared, alt = free_ports(2)
    first_version(cluster, version("/cn/web", shared, alt, 4))
    load = loaded(shared)
    wait_until(lambda: load.answered() > 20, 30, "load running")
    shares: list[tuple[int, int, int]] = []

    def confirm(share: int, new: int, old: int) -> bool:
        shares.append((share, new, old))
        return True

    report = canary_deploy(
        cluster.client,
        version("/cn/web", shared, alt, 4),
        steps=(25, 50),
        confirm=confirm,
        drain_delay=1.0,
        timeout=120,
    )
    assert shares == [(25, 1, 3), (50, 2, 2)]
    assert report.serving == {"/cn/web-green": 4}
    assert serves_only(cluster, load, "/cn/web-green")
    assert load.totals().failures == 0, load.totals().errors


def test_aborted_canary_returns_everything_to_the_old_version(
    cluster: Cluster, loaded: Any
) -> None:
    shared, alt = free_ports(2)
    old_id = first_version(cluster, version("/ab/web", shared, alt, 2))
    load = loaded(shared)
    wait_until(lambda: load.answered() > 20, 30, "load running")
    with pytest.raises(StrategyError, match="aborted at 50%"):
        canary_deploy(
            cluster.client,
            version("/ab/web", shared, alt, 2),
            steps=(50, 100),
            confirm=lambda share, new, old: False,
            drain_delay=1.0,
            timeout=120,
        )
    assert [a["id"] for a in cluster.client.list_apps() if a["id"].startswith("/ab/")] == [old_id]
    assert cluster.client.get_app(old_id)["instances"] == 2
    assert serves_only(cluster, load, old_id)
    assert load.totals().failures == 0, load.totals().errors


def test_new_version_never_healthy_rolls_back(cluster: Cluster, loaded: Any) -> None:
    shared, alt = free_ports(2)
    old_id = first_version(cluster, version("/uh/web", shared, alt, 2))
    load = loaded(shared)
    wait_until(lambda: load.answered() > 20, 30, "load running")
    with pytest.raises(StrategyError, match="rolled back"):
        blue_green_deploy(
            cluster.client,
            version("/uh/web", shared, alt, 2, health="/unhealthy"),
            drain_delay=0.5,
            timeout=8,
        )
    assert [a["id"] for a in cluster.client.list_apps() if a["id"].startswith("/uh/")] == [old_id]
    assert serves_only(cluster, load, old_id)
    assert load.totals().failures == 0, load.totals().errors
    with pytest.raises(StrategyError, match="no interrupted run"):
        rollback(cluster.client, "uh.web")


class Interrupted(Exception):
    """Stands for Ctrl-C in the middle of a run."""


def test_interrupted_canary_is_resumed_from_labels_under_load(
    cluster: Cluster, loaded: Any
) -> None:
    shared, alt = free_ports(2)
    first_version(cluster, version("/rs/web", shared, alt, 2))
    load = loaded(shared)
    wait_until(lambda: load.answered() > 20, 30, "load running")

    def stop_after_first_step(text: str) -> None:
        if text.startswith("step 1/"):
            raise Interrupted

    with pytest.raises(Interrupted):
        canary_deploy(
            cluster.client,
            version("/rs/web", shared, alt, 2),
            steps=(50, 100),
            drain_delay=1.0,
            timeout=120,
            progress=stop_after_first_step,
        )
    both = {"/rs/web-blue", "/rs/web-green"}
    assert {a["id"] for a in cluster.client.list_apps() if a["id"].startswith("/rs/")} == both
    wait_until(
        lambda: load.recent_answers() & task_ids(cluster, "/rs/web-green"),
        60,
        "new version answering",
    )
    report = resume(cluster.client, "rs.web", drain_delay=1.0, timeout=120)
    assert report.serving == {"/rs/web-green": 2}
    assert serves_only(cluster, load, "/rs/web-green")
    assert load.totals().failures == 0, load.totals().errors


def test_weight_label_keeps_a_member_without_traffic_and_needs_no_reload(
    cluster: Cluster, loaded: Any
) -> None:
    shared, alt = free_ports(2)
    group = {
        "HAPROXY_DEPLOYMENT_GROUP": "wt",
        "HAPROXY_0_PORT": str(shared),
        "HAPROXY_0_MODE": "http",
    }
    blue = version("/wt/web-blue", shared, alt, 2)
    blue["labels"] = {**group, "HAPROXY_DEPLOYMENT_STARTED_AT": "2026-01-01T00:00:00Z"}
    deploy_apps(cluster.client, [blue], timeout=120)
    wait_until(lambda: ask(shared) in task_ids(cluster, "/wt/web-blue"), 60, "blue")
    load = loaded(shared)
    reloads = cluster.reloads()
    green = version("/wt/web-green", alt, shared, 2)
    green["labels"] = {
        **group,
        "HAPROXY_DEPLOYMENT_STARTED_AT": "2026-01-02T00:00:00Z",
        "HAPROXY_DEPLOYMENT_WEIGHT": "0",
    }
    deploy_apps(cluster.client, [green], timeout=120)
    green_tasks = task_ids(cluster, "/wt/web-green")

    def green_in_haproxy_with_weight_0() -> bool:
        states = cluster.runtime().show_servers_state(f"be_dg_wt_{shared}")
        weights = {s.name: s.uweight for s in states if s.admin == "ready"}
        return all(weights.get(server_name(t)) == 0 for t in green_tasks) and len(weights) == 4

    wait_until(green_in_haproxy_with_weight_0, 60, "green servers in HAProxy with weight 0")
    assert serves_only(cluster, load, "/wt/web-blue")
    assert cluster.reloads() == reloads
    assert load.totals().failures == 0, load.totals().errors
