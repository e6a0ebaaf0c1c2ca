"""Several nodes on one machine: network namespaces as nodes, each with its own sidecar + HAProxy.

Topology (every address exists only inside namespaces created here, in 10.200.0.0/24)::

    <p>-hub:  bridge br0, one veth end per namespace below
    <p>-m:    10.200.0.1   the Marathon emulator (a thread of this test process entered it)
    <p>-n11:  10.200.0.11  node A: marathon-sidecar + HAProxy, echo tasks
    <p>-n12:  10.200.0.12  node B: echo tasks (its link is cut in the test)
    <p>-n13:  10.200.0.13  node C: marathon-sidecar + HAProxy, echo tasks

The emulator's agents are the nodes' addresses; each task's ``cmd`` runs its echo server inside the
namespace of the agent it was placed on (``ip netns exec <p>-n<last octet of $HOST>``), listening
on the node's address. An app on node A calls ``127.0.0.1:<servicePort>`` inside A and reaches
the tasks on A, B and C. Then B's link goes down and Marathon marks B's tasks unhealthy (as after
a lost agent): traffic from A and C goes to the remaining tasks only, without failed requests.

Needs root and iproute2 (CI runs as root). If namespaces cannot be created, the test fails with
a message saying so (it does not skip). Names are unique per run; everything is removed even
when the test fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from testkit import wait_until
from testkit.apps import healthy_task_ids
from testkit.http import ask

pytestmark = [pytest.mark.netns, pytest.mark.haproxy, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SUBNET = "10.200.0"
MARATHON_IP = f"{SUBNET}.1"
NODE_OCTETS = (11, 12, 13)  # A, B, C
SIDECAR_NODES = (11, 13)  # B only runs tasks: it is the node that gets cut off
STATUS_PORT = 9090  # inside each node namespace (every namespace has its own loopback)
CLONE_NEWNET = 0x40000000

T = TypeVar("T")


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


# ----------------------------------------------------------------------------- namespaces


def enter_netns(name: str) -> None:
    """Move the *calling thread* into network namespace ``name`` (threads it starts follow)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns({name}): {os.strerror(error)}")
    finally:
        os.close(fd)


def in_netns(name: str, work: Callable[[], T], timeout: float = 60.0) -> T:
    """Run ``work`` in a fresh thread inside namespace ``name``; its result (or exception)."""
    out: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def run() -> None:
        try:
            enter_netns(name)
            out.put((True, work()))
        except BaseException as exc:
            out.put((False, exc))

    threading.Thread(target=run, daemon=True).start()
    ok, value = out.get(timeout=timeout)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


@dataclass
class Topology:
    prefix: str
    created: list[str] = field(default_factory=list)

    def ns(self, octet: int) -> str:
        return f"{self.prefix}-n{octet}"

    @property
    def hub(self) -> str:
        return f"{self.prefix}-hub"

    @property
    def marathon(self) -> str:
        return f"{self.prefix}-m"

    def hub_side(self, octet: int) -> str:
        return f"{self.prefix[-6:]}h{octet}"  # interface names: at most 15 characters

    def build(self) -> None:
        try:
            ip("netns", "add", self.hub)
        except RuntimeError as exc:
            pytest.fail(
                "cannot create network namespaces here (needs root and iproute2; CI runs as "
                f"root): {exc}"
            )
        self.created.append(self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")
        for octet, name in [(1, self.marathon)] + [(o, self.ns(o)) for o in NODE_OCTETS]:
            ip("netns", "add", name)
            self.created.append(name)
            hub_end, node_end = self.hub_side(octet), f"{self.prefix[-6:]}n{octet}"
            ip("link", "add", node_end, "netns", name, "type", "veth", "peer", "name", hub_end,
               "netns", self.hub)  # fmt: skip
            ip("-n", self.hub, "link", "set", hub_end, "master", "br0")
            ip("-n", self.hub, "link", "set", hub_end, "up")
            ip("-n", name, "addr", "add", f"{SUBNET}.{octet}/24", "dev", node_end)
            ip("-n", name, "link", "set", node_end, "up")
            ip("-n", name, "link", "set", "lo", "up")

    def cut(self, octet: int) -> None:
        ip("-n", self.hub, "link", "set", self.hub_side(octet), "down")

    def destroy(self) -> None:
        for name in reversed(self.created):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                pids = subprocess.run(
                    ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10
                ).stdout.split()
                for pid in pids:  # only processes this test started live in these namespaces
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                ip("netns", "del", name)
        self.created.clear()


# ----------------------------------------------------------------------------- sidecars


@dataclass
class SidecarInNode:
    octet: int
    namespace: str
    state_dir: str
    proc: subprocess.Popen[bytes]

    def get(self, path: str) -> tuple[int, str]:
        def fetch() -> tuple[int, str]:
            conn = http.client.HTTPConnection("127.0.0.1", STATUS_PORT, timeout=5)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                return response.status, response.read().decode("utf-8", "replace")
            finally:
                conn.close()

        return in_netns(self.namespace, fetch)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (Path(self.state_dir) / "sidecar.log").read_text()[-3000:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.state_dir, ignore_errors=True)


def start_sidecar(
    topology: Topology, octet: int, marathon_url: str, haproxy_bin: str
) -> SidecarInNode:
    state_dir = tempfile.mkdtemp(prefix=f"nsn{octet}-", dir="/tmp")
    args = [
        "ip", "netns", "exec", topology.ns(octet),
        sys.executable, "-m", "sidecar",
        "--marathon", marathon_url,
        "--state-dir", state_dir,
        "--haproxy-bin", haproxy_bin,
        "--status-listen", f"127.0.0.1:{STATUS_PORT}",
        "--poll-interval", "1", "--min-reload-interval", "0.5", "--drain-timeout", "3",
        "--marathon-timeout", "3",
    ]  # fmt: skip
    with open(Path(state_dir) / "sidecar.log", "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return SidecarInNode(octet, topology.ns(octet), state_dir, proc)


# ----------------------------------------------------------------------------- traffic


def answers(namespace: str, port: int, count: int) -> Counter[str]:
    return in_netns(
        namespace, lambda: Counter(ask(port, timeout=8) for _ in range(count)), timeout=300
    )


# ----------------------------------------------------------------------------- the test


@dataclass
class Cluster:
    topology: Topology
    emulator: MarathonEmulator
    sidecars: dict[int, SidecarInNode]

    def client_call(self, work: Callable[[MarathonClient], T]) -> T:
        def call() -> T:
            with MarathonClient(self.emulator.url, timeout=(3.0, 10.0)) as client:
                return work(client)

        return in_netns(self.topology.marathon, call)

    def tasks_by_node(self, app_id: str) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for task in self.emulator.tasks(app_id, states=["TASK_RUNNING"]):
            out.setdefault(int(task["host"].rsplit(".", 1)[1]), set()).add(task["id"])
        return out

    def healthy(self, app_id: str) -> set[str]:
        return healthy_task_ids(self.emulator, app_id)


@pytest.fixture
def cluster(haproxy_bin: str, netns_root: None) -> Iterator[Cluster]:
    topology = Topology(f"mb{uuid.uuid4().hex[:6]}")
    emulator: Optional[MarathonEmulator] = None
    sidecars: dict[int, SidecarInNode] = {}
    try:
        topology.build()
        emulator = in_netns(
            topology.marathon,
            lambda: MarathonEmulator(
                host=MARATHON_IP,
                run_tasks=True,
                agents=[f"{SUBNET}.{o}" for o in NODE_OCTETS],
                heartbeat_interval=1.0,
                kill_grace=0.5,
            ).start(),
        )
        for octet in SIDECAR_NODES:
            sidecars[octet] = start_sidecar(topology, octet, emulator.url, haproxy_bin)
        yield Cluster(topology, emulator, sidecars)
    finally:
        for sidecar in sidecars.values():
            sidecar.stop()
        if emulator is not None:
            emulator.stop()
        topology.destroy()


def dependency_app(port: int, prefix: str) -> dict[str, Any]:
    """Three echo tasks, one per agent, each in its agent's namespace on the agent's address."""
    echo = f"{sys.executable} -m marathon_bridge.testing.echo_server"
    cmd = f'exec ip netns exec "{prefix}-n${{HOST##*.}}" {echo} --host "$HOST"'
    return {
        "id": "/dep/api",
        "cmd": cmd,
        "instances": 3,
        "cpus": 0.01,
        "mem": 16,
        "portDefinitions": [{"port": port, "protocol": "tcp", "name": "http"}],
        "labels": {"HAPROXY_0_MODE": "http"},
        "healthChecks": [
            {"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 10,
             "intervalSeconds": 1, "timeoutSeconds": 1, "maxConsecutiveFailures": 0}
        ],
    }  # fmt: skip


def test_nodes_reach_a_dependency_through_their_own_loopback_and_survive_a_lost_node(
    cluster: Cluster,
) -> None:
    port = 18080
    topology = cluster.topology
    cluster.client_call(lambda c: c.create_app(dependency_app(port, topology.prefix)))
    wait_until(lambda: len(cluster.healthy("/dep/api")) == 3, 90, "three healthy tasks")
    by_node = cluster.tasks_by_node("/dep/api")
    assert sorted(by_node) == list(NODE_OCTETS), by_node  # one task per node
    everyone = set().union(*by_node.values())

    for octet in SIDECAR_NODES:  # an app on node A (and on C) calls 127.0.0.1:<servicePort>
        sidecar = cluster.sidecars[octet]
        wait_until(
            lambda s=sidecar: s.get("/health")[0] == 200,
            60,
            f"sidecar on n{octet} healthy: {sidecar.log_tail()}",
        )
        wait_until(
            lambda s=sidecar: set(answers(s.namespace, port, 9)) == everyone,
            60,
            f"n{octet} routes to the tasks on every node",
        )

    # node B is lost: its link goes down, and Marathon marks its tasks unhealthy
    topology.cut(12)
    for task_id in by_node[12]:
        cluster.emulator.set_task_health(task_id, False)
    remaining = by_node[11] | by_node[13]
    for octet in SIDECAR_NODES:
        sidecar = cluster.sidecars[octet]

        def left(s: SidecarInNode = sidecar) -> bool:
            services = json.loads(s.get("/services")[1])["services"]
            entry = next(e for e in services if e["service_port"] == port)
            return {e["task_id"] for e in entry["endpoints"] if e["in_rotation"]} == remaining

        wait_until(left, 60, f"n{octet} took node B's task out of rotation")
        counts = answers(sidecar.namespace, port, 30)
        assert set(counts) == remaining, counts  # no failure, nothing from B, both others
