"""Blue/green and canary deploys end to end, under continuous load, with no failed request.

The emulator runs real echo tasks (each answers with its task id), the sidecar daemon follows it
and drives a real HAProxy; a background thread sends requests through 127.0.0.1:<shared port>
the whole time and counts every failure.
"""

from __future__ import annotations

import http.client
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
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
from marathon_bridge.testing.tasks import echo_server_cmd
from sidecar.daemon import Daemon
from sidecar.haproxy.runtime import RuntimeAPI
from sidecar.main import build_daemon, run_dir
from sidecar.names import server_name
from sidecar.settings import Settings
from testkit import free_ports, wait_until

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


def version(app_id: str, shared: int, alt: int, instances: int, health: str = "/health") -> dict:
    return {
        "id": app_id,
        "cmd": echo_server_cmd(),
        "instances": instances,
        "cpus": 0.01,
        "mem": 16,
        "portDefinitions": [{"port": shared, "protocol": "tcp", "name": "http"}],
        "labels": {"HAPROXY_0_MODE": "http", "HAPROXY_DEPLOYMENT_ALT_PORT": str(alt)},
        "healthChecks": [
            {
                "protocol": "HTTP",
                "path": health,
                "portIndex": 0,
                "gracePeriodSeconds": 5,
                "intervalSeconds": 1,
                "timeoutSeconds": 1,
                "maxConsecutiveFailures": 0,
            }
        ],
    }


@dataclass
class Load:
    """Back-to-back requests on new connections; every answer (task id) or failure is counted."""

    port: int
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/", headers={"Connection": "close"})
                response = conn.getresponse()
                body = response.read().decode("utf-8", "replace").strip()
                result = body if response.status == 200 else f"error:HTTP {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                result = f"error:{type(exc).__name__}"
            finally:
                conn.close()
            with self.lock:
                if result.startswith("error:"):
                    self.failures.append(result)
                else:
                    self.answers[result] += 1
                    self.recent = [*self.recent, result][-40:]
            self.stop.wait(0.005)

    def total(self) -> int:
        with self.lock:
            return sum(self.answers.values())

    def last(self) -> set[str]:
        with self.lock:
            return set(self.recent)


@dataclass
class Cluster:
    emulator: MarathonEmulator
    client: MarathonClient
    daemon: Daemon
    state_dir: str

    def runtime(self) -> RuntimeAPI:
        return RuntimeAPI(str(Path(run_dir(self.daemon.settings)) / "admin.sock"))

    def reloads(self) -> float:
        name = "marathon_sidecar_haproxy_reloads_total"
        return self.daemon.metrics.registry.get_sample_value(name) or 0.0


@pytest.fixture(scope="module")
def cluster(haproxy_bin: str) -> Iterator[Cluster]:
    # kill_grace: TASK_KILLING -> SIGTERM, what taskKillGracePeriodSeconds gives a real task
    emulator = MarathonEmulator(run_tasks=True, heartbeat_interval=1.0, kill_grace=1.0).start()
    state_dir = tempfile.mkdtemp(prefix="mb-strat-", dir="/tmp")
    settings = Settings(
        marathon_urls=(emulator.url,),
        state_dir=state_dir,
        haproxy_bin=haproxy_bin,
        status_host="127.0.0.1",
        status_port=0,
        debounce=0.05,
        min_reload_interval=0.2,
        drain_timeout=2.0,
        marathon_timeout=3.0,
    )
    daemon = build_daemon(settings, stream_silence=3.0)
    thread = threading.Thread(target=daemon.run, name="sidecar-strategies", daemon=True)
    thread.start()
    client = MarathonClient(emulator.url, timeout=(3.0, 10.0))
    try:
        yield Cluster(emulator, client, daemon, state_dir)
    finally:
        daemon.stop()
        thread.join(30)
        client.close()
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def loaded(cluster: Cluster) -> Iterator[Callable[[int], Load]]:
    loads: list[tuple[Load, threading.Thread]] = []

    def start(port: int) -> Load:
        load = Load(port)
        thread = threading.Thread(target=load.run, name=f"load-{port}", daemon=True)
        thread.start()
        loads.append((load, thread))
        return load

    yield start
    for load, thread in loads:
        load.stop.set()
        thread.join(15)


def task_ids(cluster: Cluster, app_id: str) -> set[str]:
    return {str(t["id"]) for t in cluster.client.list_app_tasks(app_id)}


def first_version(cluster: Cluster, app: dict[str, Any]) -> str:
    """Deploy v1 (a first run creates ``<id>-blue``) and wait until HAProxy serves it."""
    report = blue_green_deploy(cluster.client, app, drain_delay=0.5, timeout=120)
    shared = app["portDefinitions"][0]["port"]
    wait_until(lambda: _one_answer(shared) in task_ids(cluster, report.new_app), 60, "v1 served")
    return report.new_app


def _one_answer(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        return conn.getresponse().read().decode().strip()
    finally:
        conn.close()


def serves_only(cluster: Cluster, load: Load, app_id: str) -> bool:
    before = load.total()
    wait_until(lambda: load.total() >= before + 40, 60, "40 more answers")
    return load.last() <= task_ids(cluster, app_id)


def test_blue_green_under_load_drops_nothing(cluster: Cluster, loaded: Any) -> None:
    shared, alt = free_ports(2)
    old_id = first_version(cluster, version("/bg/web", shared, alt, 2))
    load = loaded(shared)
    wait_until(lambda: load.total() > 20, 30, "load running")
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
    assert load.failures == [], load.failures
    assert any(s.startswith("deleted /bg/web-blue") for s in steps)
    seen = set(load.answers)
    assert seen & task_ids(cluster, "/bg/web-green")  # both versions answered during the run


def test_canary_steps_under_load_drop_nothing(cluster: Cluster, loaded: Any) -> None:
    shared, alt = free_ports(2)
    first_version(cluster, version("/cn/web", shared, alt, 4))
    load = loaded(shared)
    wait_until(lambda: load.total() > 20, 30, "load running")
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
    assert load.failures == [], load.failures


def test_aborted_canary_returns_everything_to_the_old_version(
    cluster: Cluster, loaded: Any
) -> None:
    shared, alt = free_ports(2)
    old_id = first_version(cluster, version("/ab/web", shared, alt, 2))
    load = loaded(shared)
    wait_until(lambda: load.total() > 20, 30, "load running")
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
    assert load.failures == [], load.failures


def test_new_version_never_healthy_rolls_back(cluster: Cluster, loaded: Any) -> None:
    shared, alt = free_ports(2)
    old_id = first_version(cluster, version("/uh/web", shared, alt, 2))
    load = loaded(shared)
    wait_until(lambda: load.total() > 20, 30, "load running")
    with pytest.raises(StrategyError, match="rolled back"):
        blue_green_deploy(
            cluster.client,
            version("/uh/web", shared, alt, 2, health="/unhealthy"),
            drain_delay=0.5,
            timeout=8,
        )
    assert [a["id"] for a in cluster.client.list_apps() if a["id"].startswith("/uh/")] == [old_id]
    assert serves_only(cluster, load, old_id)
    assert load.failures == [], load.failures
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
    wait_until(lambda: load.total() > 20, 30, "load running")

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
        lambda: load.last() & task_ids(cluster, "/rs/web-green"), 60, "new version answering"
    )
    report = resume(cluster.client, "rs.web", drain_delay=1.0, timeout=120)
    assert report.serving == {"/rs/web-green": 2}
    assert serves_only(cluster, load, "/rs/web-green")
    assert load.failures == [], load.failures


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
    wait_until(lambda: _one_answer(shared) in task_ids(cluster, "/wt/web-blue"), 60, "blue")
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
    assert load.failures == [], load.failures
