"""The demo: the Marathon emulator running real local tasks, the sidecar and a real HAProxy.

``python -m sidecar.demo`` (what ``scripts/demo.sh`` runs) deploys two apps, sends traffic through
``127.0.0.1:<servicePort>`` from keep-alive and new-connection clients, prints the services and
their endpoints as they change, scales an app up, kills a task, adds an app (a new listener),
scales down, and ends with a summary: requests, errors, reloads, runtime changes. Ctrl-C stops
everything it started (tasks, HAProxy, threads) and still prints the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TextIO

from marathon_bridge.client import MarathonClient
from marathon_bridge.deploy import deploy_apps
from marathon_bridge.testing import MarathonEmulator
from marathon_bridge.testing.tasks import echo_health_check, echo_server_cmd

from .daemon import Daemon
from .main import build_daemon
from .settings import Settings


@dataclass
class TrafficStats:
    """What the traffic threads saw; guarded by ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    errors: int = 0
    by_task: Counter[str] = field(default_factory=Counter)
    last_errors: list[str] = field(default_factory=list)

    def record(self, answer: Optional[str], error: str = "") -> None:
        with self.lock:
            self.requests += 1
            if answer is None:
                self.errors += 1
                self.last_errors = [*self.last_errors[-4:], error]
            else:
                self.by_task[answer] += 1


def echo_app(app_id: str, service_port: int, instances: int) -> dict[str, Any]:
    """An app of the demo: the echo server, an HTTP health check, a fixed service port."""
    return {
        "id": app_id,
        "cmd": echo_server_cmd(),
        "instances": instances,
        "cpus": 0.01,
        "mem": 16,
        "portDefinitions": [{"port": service_port, "protocol": "tcp", "name": "http"}],
        "labels": {"HAPROXY_0_MODE": "http"},
        "healthChecks": [echo_health_check()],
    }


def free_service_ports(count: int, start: int = 10000) -> list[int]:
    """``count`` ports from ``start`` up that nothing on 127.0.0.1 listens on now."""
    found: list[int] = []
    port = start
    while len(found) < count and port < 65535:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
                found.append(port)
            except OSError:
                pass
        port += 1
    return found


def ask(
    conn: Optional[http.client.HTTPConnection], port: int, host: str = "127.0.0.1"
) -> tuple[Optional[str], str]:
    """One GET / through HAProxy: (task id, "") or (None, what went wrong)."""
    own = conn is None
    connection = conn or http.client.HTTPConnection(host, port, timeout=5)
    try:
        headers = {} if not own else {"Connection": "close"}
        connection.request("GET", "/", headers=headers)
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace").strip()
        if response.status != 200:
            return None, f"HTTP {response.status}"
        return body, ""
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        return None, type(exc).__name__
    finally:
        if own:
            connection.close()


def traffic_loop(
    port: int, keep_alive: bool, stats: TrafficStats, stop: threading.Event, host: str = "127.0.0.1"
) -> None:
    """Requests to ``host:port`` back to back (with a short pause) until ``stop`` is set."""
    conn = http.client.HTTPConnection(host, port, timeout=5) if keep_alive else None
    while not stop.is_set():
        answer, error = ask(conn, port, host)
        stats.record(answer, error)
        stop.wait(0.01)
    if conn is not None:
        conn.close()


class Demo:
    """Owns every process and thread of the demo; :meth:`close` stops them all."""

    def __init__(self, haproxy_bin: str, out: TextIO, pace: float) -> None:
        self.out = out
        self.pace = pace
        self.stop_traffic = threading.Event()
        self.stats = TrafficStats()
        self.threads: list[threading.Thread] = []
        self.state_dir = tempfile.mkdtemp(prefix="mb-demo-", dir="/tmp")
        self.emulator = MarathonEmulator(
            run_tasks=True, heartbeat_interval=1.0, agent_host="localhost", agent_ip="127.0.0.1"
        )
        self.haproxy_bin = haproxy_bin
        self.client: Optional[MarathonClient] = None
        self.daemon: Optional[Daemon] = None
        self.daemon_thread: Optional[threading.Thread] = None
        self.changes: list[str] = []

    def say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {text}", file=self.out, flush=True)

    def start(self) -> None:
        self.emulator.start()
        self.client = MarathonClient(self.emulator.url, timeout=(3.0, 10.0))
        self.say(f"Marathon emulator on {self.emulator.url} (tasks are real local processes)")
        self.start_nodes()

    def start_nodes(self) -> None:
        """The sidecar (in this process) that follows the emulator and drives HAProxy."""
        settings = Settings(
            marathon_urls=(self.emulator.url,),
            state_dir=self.state_dir,
            haproxy_bin=self.haproxy_bin,
            status_host="127.0.0.1",
            status_port=0,
            debounce=0.05,
            min_reload_interval=0.5,
            drain_timeout=2.0,
        )
        self.daemon = build_daemon(settings, stream_silence=3.0)
        self.daemon_thread = threading.Thread(target=self.daemon.run, name="sidecar", daemon=True)
        self.daemon_thread.start()
        self.wait(lambda: bool(self.daemon and self.daemon.status_server_address), 30, "status")
        self.say(f"sidecar status page: http://{self.daemon.status_server_address}/")

    def deploy(self, app: dict[str, Any]) -> None:
        assert self.client is not None
        deploy_apps(self.client, [app], timeout=120)
        self.changes.append(f"deploy {app['id']}")
        self.say(
            f"deployed {app['id']} ({app['instances']} tasks) on service port "
            f"{app['portDefinitions'][0]['port']}"
        )

    def start_traffic(self, port: int, host: str = "127.0.0.1") -> None:
        for keep_alive in (True, True, False):
            thread = threading.Thread(
                target=traffic_loop,
                args=(port, keep_alive, self.stats, self.stop_traffic, host),
                name=f"traffic-{host}:{port}",
                daemon=True,
            )
            thread.start()
            self.threads.append(thread)
        self.say(f"traffic: 2 keep-alive clients and 1 new-connection client on {host}:{port}")

    def services(self) -> list[dict[str, Any]]:
        assert self.daemon is not None
        address = self.daemon.status_server_address
        host, _, port = address.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", "/services")
            body = conn.getresponse().read()
        finally:
            conn.close()
        return list(json.loads(body).get("services", []))

    def routed_tasks(self, app_id: str) -> set[str]:
        for service in self.services():
            if service["app_id"] == app_id:
                return {e["task_id"] for e in service["endpoints"] if e["in_rotation"]}
        return set()

    def running_healthy(self, app_id: str) -> set[str]:
        out = set()
        for task in self.emulator.tasks(app_id, states=["TASK_RUNNING"]):
            results = task.get("healthCheckResults") or []
            if results and all(r.get("alive") for r in results):
                out.add(str(task["id"]))
        return out

    def wait_routed(self, app_id: str, count: int) -> None:
        self.wait(
            lambda: (
                len(self.running_healthy(app_id)) == count
                and self.routed_tasks(app_id) == self.running_healthy(app_id)
            ),
            120,
            f"{app_id} routed to {count} tasks",
        )

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting for {what}")
            time.sleep(0.05)

    def print_table(self) -> None:
        lines = ["", *service_rows(self.services())]
        with self.stats.lock:
            lines.append(
                f"  traffic so far: {self.stats.requests} requests, {self.stats.errors} errors"
            )
        print("\n".join([*lines, ""]), file=self.out, flush=True)

    def pause(self) -> None:
        time.sleep(self.pace)

    def metric(self, name: str) -> float:
        if self.daemon is None:
            return 0.0
        return self.daemon.metrics.registry.get_sample_value(name) or 0.0

    def runtime_changes(self) -> float:
        """Server changes sent through HAProxy's runtime API (every kind of operation)."""
        return sum(
            sample.value
            for metric in (self.daemon.metrics.registry.collect() if self.daemon else [])
            if metric.name == "marathon_sidecar_haproxy_runtime_ops"
            for sample in metric.samples
            if sample.name.endswith("_total")
        )

    def summary(self) -> str:
        with self.stats.lock:
            requests, errors = self.stats.requests, self.stats.errors
            spread = dict(self.stats.by_task)
            last = list(self.stats.last_errors)
        reloads = self.metric("marathon_sidecar_haproxy_reloads_total")
        lines = [
            "Summary",
            f"  requests sent through HAProxy: {requests}",
            f"  failed requests:               {errors}" + (f" (last: {last})" if last else ""),
            f"  tasks that answered:           {len(spread)}",
            f"  changes made in Marathon:      {len(self.changes)} ({', '.join(self.changes)})",
            f"  HAProxy reloads:               {int(reloads)} (new listeners only)",
            f"  runtime API server changes:    {int(self.runtime_changes())}",
        ]
        return "\n".join(lines)

    def close(self) -> None:
        self.stop_traffic.set()
        for thread in self.threads:
            thread.join(10)
        if self.daemon is not None:
            self.daemon.stop()
        if self.daemon_thread is not None:
            self.daemon_thread.join(30)
        if self.client is not None:
            self.client.close()
        self.emulator.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)


def service_rows(services: list[dict[str, Any]]) -> list[str]:
    """The table of services and endpoints a sidecar's /services lists."""
    lines = ["  service port  app          task                                     state"]
    for service in services:
        for endpoint in service["endpoints"]:
            state = "in" if endpoint["in_rotation"] else f"out ({endpoint['reason']})"
            lines.append(
                f"  {service['service_port']:<12}  {service['app_id']:<11}  "
                f"{endpoint['task_id'][-40:]:<40} {state}"
            )
    return lines


def run_script(demo: Demo) -> None:
    """The demo's story, step by step."""
    assert demo.client is not None
    web_port, api_port, admin_port = free_service_ports(3)
    demo.deploy(echo_app("/demo/web", web_port, 3))
    demo.deploy(echo_app("/demo/api", api_port, 2))
    demo.wait_routed("/demo/web", 3)
    demo.wait_routed("/demo/api", 2)
    demo.start_traffic(web_port)
    demo.print_table()
    demo.pause()

    demo.say("scaling /demo/web from 3 to 5 tasks")
    demo.client.scale_app("/demo/web", 5)
    demo.changes.append("scale /demo/web 5")
    demo.wait_routed("/demo/web", 5)
    demo.print_table()
    demo.pause()

    victim = sorted(demo.running_healthy("/demo/web"))[0]
    demo.say(f"killing task {victim} (Marathon replaces it)")
    demo.client.kill_task("/demo/web", victim)
    demo.changes.append("kill a task")
    demo.wait(lambda: victim not in demo.routed_tasks("/demo/web"), 60, "the killed task out")
    demo.wait_routed("/demo/web", 5)
    demo.print_table()
    demo.pause()

    demo.say("deploying /demo/admin: a new service port, so HAProxy reloads (seamlessly)")
    demo.deploy(echo_app("/demo/admin", admin_port, 1))
    demo.wait_routed("/demo/admin", 1)
    demo.pause()

    demo.say("scaling /demo/web down to 2 tasks (drained, then removed)")
    demo.client.scale_app("/demo/web", 2)
    demo.changes.append("scale /demo/web 2")
    demo.wait_routed("/demo/web", 2)
    demo.print_table()
    demo.pause()


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sidecar.demo", description=__doc__)
    parser.add_argument("--haproxy-bin", default=shutil.which("haproxy") or "/usr/sbin/haproxy")
    parser.add_argument(
        "--pace", type=float, default=2.0, help="seconds to pause between steps (default 2)"
    )
    parser.add_argument(
        "--zookeeper",
        action="store_true",
        help="ZooKeeper mode: a ZooKeeper server, marathon-publisher and two sidecars on "
        "127.0.0.2 and 127.0.0.3 (runs from a clone of the repository: it uses the test kit)",
    )
    parser.add_argument(
        "--zookeeper-hosts",
        default=None,
        help="with --zookeeper: use this running ZooKeeper (HOST:PORT) instead of starting one",
    )
    return parser.parse_args(argv)


def make_demo(args: argparse.Namespace, out: TextIO) -> Demo:
    if not args.zookeeper:
        return Demo(args.haproxy_bin, out, args.pace)
    try:
        from testkit.demo_zookeeper import ZooKeeperDemo
    except ImportError as exc:
        raise SystemExit(
            f"--zookeeper runs from a clone of the repository (it needs the test kit): {exc}"
        ) from None
    return ZooKeeperDemo(args.haproxy_bin, out, args.pace, args.zookeeper_hosts)


@contextlib.contextmanager
def running_demo(args: argparse.Namespace, out: TextIO) -> Iterator[Demo]:
    demo = make_demo(args, out)
    try:
        demo.start()
        yield demo
    finally:
        demo.close()


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout) -> int:
    args = parse_args(argv)
    status = 0
    summary = ""
    try:
        with running_demo(args, out) as demo:
            try:
                run_script(demo)
            except KeyboardInterrupt:
                demo.say("interrupted: stopping everything")
                status = 130
            except TimeoutError as exc:
                demo.say(f"stopped: {exc}")
                status = 1
            summary = demo.summary()
    except KeyboardInterrupt:
        status = 130
    if summary:
        print(summary, file=out, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
