"""``MarathonEmulator``: a Marathon 1.10 over real HTTP on loopback, for tests and demos.

Use it as a context manager (or ``start()``/``stop()``)::

    with MarathonEmulator() as marathon:
        requests.post(marathon.url + "/v2/apps", json={"id": "/web", "cmd": "sleep 100"})
        marathon.wait_for(lambda: marathon.tasks("/web"))

Fields Marathon does not read are dropped at every depth, as Marathon does
(``keep_unknown_fields=True`` keeps them); what clients sent is in
:attr:`MarathonEmulator.requests`.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Callable, Optional

from marathon_bridge.testing.events import EventBus
from marathon_bridge.testing.faults import FaultInjector
from marathon_bridge.testing.health import HealthProber
from marathon_bridge.testing.server import (
    EmulatorServer,
    RecordedRequest,
    RequestLog,
    ServerContext,
)
from marathon_bridge.testing.state import Agent, EmulatorState, Options

LOG = logging.getLogger(__name__)


class MarathonEmulator:
    """An emulated Marathon leader (or, with ``leader=False``, a standby)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        run_tasks: bool = False,
        agent_host: str = "127.0.0.1",
        agent_ip: Optional[str] = None,
        agents: Optional[Sequence[str]] = None,
        deployment_delay: float = 0.0,
        task_start_delay: float = 0.05,
        health_delay: float = 0.05,
        health_interval: float = 0.1,
        health_grace: float = 1.0,
        kill_grace: float = 0.2,
        kill_timeout: float = 3.0,
        auth: Any = None,
        heartbeat_interval: float = 10.0,
        leader: bool = True,
        leader_url: Optional[Callable[[], Optional[str]]] = None,
        version: str = "1.10.26",
        max_outstanding: int = 1024,
        host_port_range: Optional[tuple[int, int]] = None,
        service_port_range: tuple[int, int] = (10000, 20000),
        backoff_scale: float = 0.05,
        keep_unknown_fields: bool = False,
        kill_unhealthy: bool = False,
        tick_interval: float = 0.01,
    ) -> None:
        params = dict(locals())  # first: the parameters only (the state's knobs among them)
        self.host = host
        self.port = port
        self.auth = auth
        self.is_leader = leader
        self.version = version
        self.heartbeat_interval = heartbeat_interval
        self.health_interval = health_interval
        self.tick_interval = tick_interval
        self.faults = FaultInjector()
        self._requests = RequestLog()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._standbys: list[MarathonEmulator] = []
        self._server: Optional[EmulatorServer] = None
        self._suspended: Optional[EmulatorServer] = None
        self._prober: Optional[HealthProber] = None
        self._leader_url = leader_url
        self._running = False
        self.bus: Optional[EventBus] = EventBus(max_outstanding) if leader else None
        self.state: Optional[EmulatorState] = None
        if self.bus is not None:
            self.state = EmulatorState(state_options(params), self.bus.publish, self._lock)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (valid once started)."""
        if self._server is None:
            raise RuntimeError("emulator not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def running(self) -> bool:
        return self._running

    def _current_leader(self) -> Optional[str]:
        if self.is_leader:
            return self.url if self._running else None
        return self._leader_url() if self._leader_url else None

    def _context(self) -> ServerContext:
        return ServerContext(
            state=self.state,
            bus=self.bus,
            faults=self.faults,
            requests=self._requests,
            auth=self.auth,
            heartbeat_interval=self.heartbeat_interval,
            version=self.version,
            leader_url=self._current_leader,
            self_url=lambda: self.url,
            on_abdicate=lambda: self.leader_election(blank_health_for=0.0),
            stopping=self._stop,
        )

    def start(self) -> MarathonEmulator:
        """Bind, serve and (for a leader) run the scheduler; returns self. Not restartable."""
        if self._running:
            return self
        if self._stop.is_set():
            raise RuntimeError("a stopped emulator cannot start again (use suspend/resume)")
        self._server = EmulatorServer((self.host, self.port), self._context())
        self.port = self._server.server_address[1]
        self._running = True
        self._spawn("emu-http", self._serve)
        if self.state is not None:
            self._spawn("emu-scheduler", self._schedule)
            if self.state.options.run_tasks:
                self._prober = HealthProber(
                    self.state.probe_targets, self.state.record_probe, self.health_interval
                )
                self._prober.start()
        LOG.info("marathon emulator started", extra={"url": self.url, "leader": self.is_leader})
        return self

    def _serve(self) -> None:
        """Serve until stopped; a short poll so that stop() returns at once, not after 0.5 s."""
        server = self._server
        assert server is not None
        server.serve_forever(poll_interval=0.05)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _schedule(self) -> None:
        state = self.state
        assert state is not None
        last_error = ""
        while not self._stop.wait(self.tick_interval):
            try:
                state.tick()
            except Exception as exc:  # keep ticking: one bad tick must not freeze the cluster
                if repr(exc) != last_error:
                    LOG.exception("emulator tick failed")
                last_error = repr(exc)

    def suspend(self) -> None:
        """Marathon goes away: the port closes and every connection drops; tasks keep running."""
        server = self._server
        if server is None or self._suspended is not None:
            return
        if self.bus is not None:
            self.bus.close_all("suspended")
        server.shutdown()
        server.close_connections()
        server.server_close()
        self._suspended = server

    def resume(self) -> None:
        """Marathon is back on the same port, with the same state."""
        if self._suspended is None:
            return
        self._suspended = None
        self._server = EmulatorServer((self.host, self.port), self._context())
        self._spawn("emu-http", self._serve)

    def stop(self) -> None:
        """Stop serving, close every connection and kill every task process."""
        for standby in self._standbys:
            standby.stop()
        self._standbys.clear()
        if not self._running:
            if self.state is not None:
                self.state.shutdown()
            return
        self._running = False
        self._stop.set()
        if self.bus is not None:
            self.bus.close_all("shutdown")
        server = self._server
        if server is not None and self._suspended is None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._prober is not None:
            self._prober.stop()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        if self.state is not None:
            self.state.shutdown()

    def __enter__(self) -> MarathonEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ HA

    def standby(self, **kwargs: Any) -> MarathonEmulator:
        """Start a standby that proxies to this leader (302 for /v2/events); stopped with us."""
        kwargs.setdefault("auth", self.auth)
        kwargs.setdefault("host", self.host)
        other = MarathonEmulator(leader=False, leader_url=self._current_leader, **kwargs)
        other.start()
        self._standbys.append(other)
        return other

    # ------------------------------------------------------------------ test hooks

    def _cluster(self) -> EmulatorState:
        if self.state is None:
            raise RuntimeError("a standby has no cluster state")
        return self.state

    def set_task_health(self, task_id: str, alive: Optional[bool]) -> None:
        """Force a task's health results: True/False, or None for "no result" (blank)."""
        self._cluster().set_task_health(task_id, alive)

    def fail_task(self, task_id: str, message: str = "Command exited with status 1") -> None:
        """The task fails (TASK_FAILED); Marathon relaunches it after a backoff."""
        self._cluster().fail_task(task_id, message)

    def kill_task(self, task_id: str) -> None:
        """Kill a task (TASK_KILLING, then TASK_KILLED); it gets replaced."""
        self._cluster().kill_task(task_id)

    def set_task_reachable(self, task_id: str, reachable: bool) -> None:
        """The task's agent drops off (TASK_UNREACHABLE, replaced) or comes back (RUNNING)."""
        self._cluster().set_task_reachable(task_id, reachable)

    def close_event_streams(self) -> int:
        """Close every /v2/events connection; returns how many."""
        return self.bus.close_all("closed by test") if self.bus is not None else 0

    def leader_election(self, blank_health_for: float = 1.0) -> None:
        """Like a new leader: every stream closes and health results are [] for a while."""
        cluster = self._cluster()
        if blank_health_for > 0:
            cluster.blank_health(blank_health_for)
        self.close_event_streams()

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01
    ) -> Any:
        """Poll ``predicate`` until it returns something truthy; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(interval)

    # ------------------------------------------------------------------ snapshots

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (method, path, query, headers without auth, body)."""
        return self._requests.all()

    @property
    def request_count(self) -> int:
        """How many requests this server received since it started (not capped)."""
        return self._requests.total

    def on_event(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """Call ``listener(event_type, payload)`` as each event is published (in the emulator)."""
        if self.bus is None:
            raise RuntimeError("a standby publishes no events")
        self.bus.add_listener(listener)

    def events(self, event_type: Optional[str] = None) -> list[dict[str, Any]]:
        """Events published so far (payloads), optionally of one type."""
        return self.bus.history(event_type) if self.bus is not None else []

    def apps(self) -> list[dict[str, Any]]:
        """Every app as GET /v2/apps/{id} shows it (with tasks)."""
        return self._cluster().snapshot_apps()

    def app(self, app_id: str) -> Optional[dict[str, Any]]:
        """One app (with tasks) or None."""
        for app in self.apps():
            if app["id"] == app_id:
                return app
        return None

    def tasks(
        self, app_id: Optional[str] = None, states: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Tasks (of one app), optionally only in the given states."""
        tasks = self._cluster().snapshot_tasks(app_id)
        return [t for t in tasks if not states or t["state"] in states]

    def deployments(self) -> list[dict[str, Any]]:
        """GET /v2/deployments."""
        return self._cluster().deployments_json()

    def task_pids(self) -> dict[str, int]:
        """Task id -> pid of its process group leader (run_tasks=True)."""
        return self._cluster().process_pids()

    def task_sandbox(self, task_id: str) -> str:
        """The working directory of a task's process (run_tasks=True)."""
        runner = self._cluster().runner
        if runner is None:
            raise RuntimeError("run_tasks is off: tasks have no sandbox")
        return runner.sandbox(task_id)

    def event_stream_count(self) -> int:
        """How many /v2/events clients are connected."""
        return self.bus.subscriber_count() if self.bus is not None else 0


def state_options(params: Mapping[str, Any]) -> Options:
    """The leader state's options from :class:`MarathonEmulator`'s parameters: the knobs of the
    same name as :class:`Options` fields, the agents, and the port ranges."""
    names = {f.name for f in dataclasses.fields(Options)} - {"agent_ip", "agents"}
    options = Options(**{k: v for k, v in params.items() if k in names})
    agent_host = options.agent_host
    options.agent_ip = params["agent_ip"] or (agent_host if _is_ipv4(agent_host) else "127.0.0.1")
    options.agents = tuple(
        Agent(name, name if _is_ipv4(name) else "127.0.0.1", f"emulated-agent-S{i}")
        for i, name in enumerate(params["agents"] or ())
    )
    host_ports = params["host_port_range"]
    if host_ports is None:
        # real processes need real free ports: below Linux's ephemeral range (32768+) and above
        # the service ports; a wide range (random start) keeps emulators running side by side
        # apart. Simulated tasks bind nothing, so they may use many more.
        host_ports = (21000, 32000) if options.run_tasks else (31000, 64999)
    options.host_port_min, options.host_port_max = host_ports
    options.service_port_min, options.service_port_max = params["service_port_range"]
    return options


def _is_ipv4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and 0 <= int(p) <= 255 for p in parts)


def run_emulator(
    host: str = "127.0.0.1",
    port: int = 8080,
    run_tasks: bool = False,
    ready: Optional[Callable[[MarathonEmulator], None]] = None,
    stop_event: Optional[threading.Event] = None,
    **kwargs: Any,
) -> int:
    """Serve until SIGINT/SIGTERM (or ``stop_event``), then clean up. Returns an exit code."""
    stop = stop_event or threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    emulator = MarathonEmulator(host=host, port=port, run_tasks=run_tasks, **kwargs)
    try:
        emulator.start()
        print(f"Marathon emulator listening on {emulator.url}", flush=True)
        if ready is not None:
            ready(emulator)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
