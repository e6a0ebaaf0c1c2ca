"""Shared pieces for the whole-system benchmarks and the zero-drop tests.

A :class:`System` is one node: the Marathon emulator running real echo tasks, one sidecar (the
:class:`~sidecar.daemon.Daemon` in a thread, or ``python -m sidecar`` as a child process) and the
real HAProxy it starts, everything on free loopback ports under a private temporary directory.
A :class:`LoadGenerator` sends a continuous loopback load (keep-alive ``requests.Session`` clients
and one-connection-per-request clients) and counts every request, failure and answering task.

Nothing here sleeps to wait for something: :func:`wait_until` polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from marathon_bridge.client import MarathonClient  # noqa: E402
from marathon_bridge.testing import MarathonEmulator  # noqa: E402
from marathon_bridge.testing.tasks import echo_server_cmd  # noqa: E402
from sidecar.haproxy.runtime import (  # noqa: E402
    MasterCLI,
    ProcStatus,
    RuntimeAPI,
    RuntimeAPIError,
    ServerState,
)
from sidecar.names import backend_name, server_name  # noqa: E402

EMULATOR_HOST_PORTS = (31000, 32000)
LOG_KEEP_DIR = "/tmp/zero-drop-last-logs"


# ----------------------------------------------------------------------------- small helpers


def wait_until(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02, message: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_error = None
        except Exception as exc:  # things settle: a predicate may fail for a while
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"not within {timeout} s: {message or predicate}{detail}")
        time.sleep(interval)


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports outside the emulator's host port range."""
    found: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(found) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            held.append(s)
            port = int(s.getsockname()[1])
            if not EMULATOR_HOST_PORTS[0] <= port <= EMULATOR_HOST_PORTS[1]:
                found.append(port)
    finally:
        for s in held:
            s.close()
    return found


def echo_app(
    app_id: str, service_port: int, instances: int, *, mode: str = "http", health: bool = True
) -> dict[str, Any]:
    """An app of echo tasks (each answers ``GET /`` with its task id) on one service port."""
    app: dict[str, Any] = {
        "id": app_id,
        "cmd": echo_server_cmd(),
        "instances": instances,
        "cpus": 0.01,
        "mem": 16,
        "portDefinitions": [{"port": service_port, "protocol": "tcp", "name": "http"}],
        "labels": {"HAPROXY_0_MODE": mode},
    }
    if health:
        app["healthChecks"] = [
            {
                "protocol": "HTTP",
                "path": "/health",
                "portIndex": 0,
                "gracePeriodSeconds": 10,
                "intervalSeconds": 1,
                "timeoutSeconds": 1,
                "maxConsecutiveFailures": 0,
            }
        ]
    return app


def ask(port: int, timeout: float = 3.0) -> str:
    """One request on a new connection: the task id that answered, or ``error:<what>``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace").strip()
        return body if response.status == 200 else f"error:{response.status}"
    except (OSError, http.client.HTTPException) as exc:
        return f"error:{type(exc).__name__}"
    finally:
        conn.close()


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine_facts(haproxy_bin: str = "haproxy") -> dict[str, str]:
    """nproc, memory, haproxy and python versions: printed with every benchmark's figures."""
    facts = {"nproc": str(os.cpu_count()), "python": platform.python_version()}
    try:
        out = subprocess.run(["free", "-h"], capture_output=True, text=True, timeout=10).stdout
        facts["mem_total"] = out.splitlines()[1].split()[1]
    except (OSError, IndexError, subprocess.SubprocessError):
        facts["mem_total"] = "?"
    try:
        version = subprocess.run([haproxy_bin, "-v"], capture_output=True, text=True, timeout=10)
        facts["haproxy"] = version.stdout.splitlines()[0].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        facts["haproxy"] = "?"
    with contextlib.suppress(OSError):
        facts["loadavg"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return facts


def _haproxy_scan(marker: str) -> tuple[dict[int, int], bool]:
    """(pid -> parent pid of the live haproxy processes naming ``marker``, whether an haproxy
    was between two programs: a master re-executing itself shows no command line for a
    moment)."""
    found: dict[int, int] = {}
    between = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        comm, _, rest = stat.partition("(")[2].rpartition(")")
        state, parent = rest.split()[:2]
        if "haproxy" not in comm or state == "Z":  # a zombie: a dead master nobody reaped
            continue
        between = between or argv == [b""]
        if any(marker.encode() in a for a in argv):
            found[int(entry.name)] = int(parent)
    return found, between


def haproxy_processes(marker: str) -> dict[int, int]:
    """Live haproxy processes whose command line names ``marker`` (a state dir, config or
    socket path): pid -> parent pid. Read again while one is between two programs."""
    deadline = time.monotonic() + 1.0
    while True:
        found, between = _haproxy_scan(marker)
        if not between or time.monotonic() >= deadline:
            return found
        time.sleep(0.005)


def haproxy_masters(marker: str) -> list[int]:
    """The masters of :func:`haproxy_processes`: a process whose parent is one of them is a
    worker (workers carry their master's command line)."""
    found = haproxy_processes(marker)
    return sorted(pid for pid, parent in found.items() if parent not in found)


def find_haproxy() -> str:
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(found).exists():
        raise RuntimeError("haproxy is not installed")
    return found


# ----------------------------------------------------------------------------- the load


@dataclass
class PortStats:
    """What the clients saw on one service port."""

    sent: int = 0
    ok: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the report
    by_task: Counter[str] = field(default_factory=Counter)
    # per task id: the latest request *start* time (monotonic) that this task answered
    last_start: dict[str, float] = field(default_factory=dict)

    def copy(self) -> PortStats:
        return PortStats(
            self.sent,
            self.ok,
            self.failures,
            list(self.errors),
            Counter(self.by_task),
            dict(self.last_start),
        )


MAX_ERRORS_KEPT = 50


class LoadGenerator:
    """Background clients hammering service ports on 127.0.0.1; counts every outcome.

    ``keepalive`` threads each use one ``requests.Session`` (pooled keep-alive connections, no
    retries); ``fresh`` threads open a new connection per request (``Connection: close``).
    Each thread cycles over the current target ports; :meth:`add_port` adds one under load.
    """

    def __init__(
        self,
        ports: Sequence[int] = (),
        *,
        keepalive: int = 3,
        fresh: int = 2,
        timeout: float = 5.0,
        pause: float = 0.0,
    ) -> None:
        self._ports = list(ports)
        self.keepalive = keepalive
        self.fresh = fresh
        self.timeout = timeout
        self.pause = pause
        self._lock = threading.Lock()
        self._stats: dict[int, PortStats] = {p: PortStats() for p in self._ports}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started_at = 0.0
        self.stopped_at = 0.0

    # -- control

    def start(self) -> LoadGenerator:
        self._stop.clear()
        self.started_at = time.monotonic()
        for i in range(self.keepalive):
            self._spawn(f"load-ka-{i}", self._keepalive_client, i)
        for i in range(self.fresh):
            self._spawn(f"load-new-{i}", self._fresh_client, i)
        return self

    def _spawn(self, name: str, target: Callable[[int], None], index: int) -> None:
        thread = threading.Thread(target=target, args=(index,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self._threads.clear()
        self.stopped_at = time.monotonic()

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_port(self, port: int) -> None:
        with self._lock:
            if port not in self._ports:
                self._ports.append(port)
                self._stats[port] = PortStats()

    def remove_port(self, port: int) -> None:
        with self._lock:
            if port in self._ports:
                self._ports.remove(port)

    # -- reading

    def ports(self) -> list[int]:
        with self._lock:
            return list(self._ports)

    def stats(self, port: int) -> PortStats:
        with self._lock:
            return self._stats[port].copy()

    def totals(self) -> PortStats:
        total = PortStats()
        with self._lock:
            for stats in self._stats.values():
                total.sent += stats.sent
                total.ok += stats.ok
                total.failures += stats.failures
                total.errors.extend(stats.errors)
                total.by_task.update(stats.by_task)
        return total

    def wait_for_requests(self, port: int, more: int, timeout: float = 60.0) -> None:
        """Wait until ``more`` further requests were answered (or failed) on ``port``."""
        target = self.stats(port).sent + more
        wait_until(lambda: self.stats(port).sent >= target, timeout, message=f"{more} requests")

    # -- clients

    def _next_port(self, turn: int) -> Optional[int]:
        with self._lock:
            if not self._ports:
                return None
            return self._ports[turn % len(self._ports)]

    def _record(self, port: int, started: float, task_id: Optional[str], error: str) -> None:
        with self._lock:
            stats = self._stats.setdefault(port, PortStats())
            stats.sent += 1
            if task_id is not None:
                stats.ok += 1
                stats.by_task[task_id] += 1
                if started > stats.last_start.get(task_id, 0.0):
                    stats.last_start[task_id] = started
            else:
                stats.failures += 1
                if len(stats.errors) < MAX_ERRORS_KEPT:
                    stats.errors.append(f"{time.monotonic() - self.started_at:.2f}s {error}")

    def _keepalive_client(self, index: int) -> None:
        session = requests.Session()
        turn = index
        try:
            while not self._stop.is_set():
                port = self._next_port(turn)
                turn += 1
                if port is None:
                    self._stop.wait(0.01)
                    continue
                started = time.monotonic()
                try:
                    resp = session.get(f"http://127.0.0.1:{port}/", timeout=self.timeout)
                    body = resp.text.strip()
                    if resp.status_code == 200 and body:
                        self._record(port, started, body, "")
                    else:
                        self._record(port, started, None, f"ka HTTP {resp.status_code}")
                except requests.RequestException as exc:
                    self._record(port, started, None, f"ka {type(exc).__name__}: {exc}"[:300])
                if self.pause:
                    self._stop.wait(self.pause)
        finally:
            session.close()

    def _fresh_client(self, index: int) -> None:
        turn = index
        while not self._stop.is_set():
            port = self._next_port(turn)
            turn += 1
            if port is None:
                self._stop.wait(0.01)
                continue
            started = time.monotonic()
            answer = ask(port, self.timeout)
            if answer.startswith("error:"):
                self._record(port, started, None, f"new {answer}")
            else:
                self._record(port, started, answer, "")
            if self.pause:
                self._stop.wait(self.pause)


# ----------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    non_2xx: int
    output: str

    @property
    def failures(self) -> int:
        return (
            self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeouts
            + self.non_2xx
        )


def parse_wrk(output: str) -> WrkResult:
    """The counts of wrk 4.1's text summary."""
    requests_done, seconds = 0, 0.0
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    non_2xx = 0
    for line in output.splitlines():
        text = line.strip()
        if " requests in " in text:
            count, _, rest = text.partition(" requests in ")
            requests_done = int(count)
            seconds = _wrk_seconds(rest.split(",")[0].strip())
        elif text.startswith("Socket errors:"):
            for part in text.split(":", 1)[1].split(","):
                name, value = part.split()
                errors[name] = int(value)
        elif text.startswith("Non-2xx or 3xx responses:"):
            non_2xx = int(text.split(":", 1)[1])
    return WrkResult(
        requests_done,
        seconds,
        errors["connect"],
        errors["read"],
        errors["write"],
        errors["timeout"],
        non_2xx,
        output,
    )


def _wrk_seconds(text: str) -> float:
    for suffix, scale in (("ms", 0.001), ("us", 0.000001), ("m", 60.0), ("s", 1.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


class Wrk:
    """One ``wrk`` run in the background (``close=True``: a new connection per request)."""

    def __init__(
        self, port: int, seconds: float, *, connections: int = 8, close: bool = False
    ) -> None:
        args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
        args += ["--timeout", "5s"]
        if close:
            args += ["-H", "Connection: close"]
        args.append(f"http://127.0.0.1:{port}/")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def result(self, timeout: float = 600.0) -> WrkResult:
        out, _ = self.proc.communicate(timeout=timeout)
        return parse_wrk(out.decode("utf-8", "replace"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ----------------------------------------------------------------------------- the system


@dataclass
class SystemOptions:
    """How the node under test is set up."""

    in_process: bool = True  # Daemon in a thread; False: ``python -m sidecar`` child process
    kill_grace: float = 0.5  # TASK_KILLING -> SIGTERM to the task process
    debounce: float = 0.05
    min_reload_interval: float = 0.2
    resync_interval: float = 300.0
    drain_timeout: float = 5.0
    heartbeat_interval: float = 1.0
    log_level: str = "WARNING"
    # experiment: the sidecar child never runs "del server" (drained servers stay in MAINT until
    # the next reload drops them); see run_sidecar_keeping_servers
    keep_deleted_servers: bool = False
    # diagnosis: HAProxy logs every abnormal request (status >= 500, aborts, retries) to its
    # log file (``<state-dir>/run/haproxy.log``, kept in LOG_KEEP_DIR) through a template that
    # adds logging to the built-in one
    log_errors: bool = False
    # experiment: extra lines for the template's "defaults" section (e.g. a retry-on policy)
    extra_defaults: tuple[str, ...] = ()


class System:
    """Emulator (real echo tasks) + one sidecar + its HAProxy, all on loopback."""

    def __init__(
        self, options: Optional[SystemOptions] = None, haproxy_bin: Optional[str] = None
    ) -> None:
        self.options = options or SystemOptions()
        self.haproxy_bin = haproxy_bin or find_haproxy()
        self.state_dir = ""
        self.emulator: Optional[MarathonEmulator] = None
        self.marathon: Optional[MarathonClient] = None
        self.daemon: Any = None
        self._thread: Optional[threading.Thread] = None
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.status_port = 0
        self._recorders: list[Callable[[str, dict[str, Any]], None]] = []

    # -- lifecycle

    def start(self) -> System:
        self.state_dir = tempfile.mkdtemp(prefix="zd-", dir="/tmp")  # short: socket paths
        try:
            self.emulator = MarathonEmulator(
                run_tasks=True,
                kill_grace=self.options.kill_grace,
                heartbeat_interval=self.options.heartbeat_interval,
            ).start()
            self._hook_publish(self.emulator)
            self.marathon = MarathonClient(self.emulator.url, timeout=(3.0, 10.0))
            (self.status_port,) = free_ports(1)
            if self.options.in_process:
                self._start_in_process()
            else:
                self._start_subprocess()
            wait_until(self._haproxy_ready, 60, message="haproxy started by the sidecar")
        except BaseException:
            self.stop()
            raise
        return self

    def _settings_values(self) -> dict[str, Any]:
        o = self.options
        assert self.emulator is not None
        return {
            "marathon_urls": (self.emulator.url,),
            "state_dir": self.state_dir,
            "haproxy_bin": self.haproxy_bin,
            "status_host": "127.0.0.1",
            "status_port": self.status_port,
            "debounce": o.debounce,
            "min_reload_interval": o.min_reload_interval,
            "resync_interval": o.resync_interval,
            "drain_timeout": o.drain_timeout,
            "empty_confirm": 60.0,
            "marathon_timeout": 5.0,
        }

    def _start_in_process(self) -> None:
        from sidecar.main import build_daemon
        from sidecar.settings import Settings

        self.daemon = build_daemon(Settings(**self._settings_values()), startup_wait=15.0)
        self._thread = threading.Thread(target=self.daemon.run, name="sidecar", daemon=True)
        self._thread.start()

    def _start_subprocess(self) -> None:
        v = self._settings_values()
        if self.options.keep_deleted_servers:
            entry = [sys.executable, str(Path(__file__).resolve()), "--sidecar-keeping-servers"]
        else:
            entry = [sys.executable, "-m", "sidecar"]
        args = [*entry, "--marathon", v["marathon_urls"][0]]
        for flag in (
            "state_dir",
            "haproxy_bin",
            "debounce",
            "min_reload_interval",
            "resync_interval",
            "drain_timeout",
            "empty_confirm",
            "marathon_timeout",
        ):
            args += ["--" + flag.replace("_", "-"), str(v[flag])]
        args += ["--status-listen", f"127.0.0.1:{self.status_port}"]
        if self.options.log_errors or self.options.extra_defaults:
            args += ["--template", self._experiment_template()]
        args += ["--log-level", self.options.log_level, "--log-format", "json"]
        log_path = Path(self.state_dir) / "sidecar.log"
        with open(log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                args, stdout=log_file, stderr=subprocess.STDOUT, cwd=str(ROOT)
            )

    def _experiment_template(self) -> str:
        """The built-in template plus error logging (``log stdout``, ``option dontlog-normal``)
        and/or the extra ``defaults`` lines."""
        from sidecar.render import default_template

        text = default_template()
        extra = list(self.options.extra_defaults)
        if self.options.log_errors:
            text = text.replace("\nglobal\n", "\nglobal\n    log stdout format raw local0\n", 1)
            extra += ["log global", "option httplog", "option dontlog-normal"]
        lines = "".join(f"    {line}\n" for line in extra)
        text = text.replace("\ndefaults\n", "\ndefaults\n" + lines, 1)
        path = Path(self.state_dir) / "logging.cfg.j2"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def _haproxy_ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the sidecar exited with {self.proc.returncode}: {self.log_tail()}")
        if not Path(self.admin_socket).exists():
            return False
        return self.runtime.worker_pid() > 0

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            if self._thread is not None:
                self._thread.join(30)
            self.daemon = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self.proc = None
        if self.marathon is not None:
            self.marathon.close()
            self.marathon = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        if self.state_dir:
            self._keep_logs()
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state_dir = ""

    def _keep_logs(self) -> None:
        """Copy the sidecar's and HAProxy's logs to ``LOG_KEEP_DIR`` (the last run's only)."""
        keep = Path(LOG_KEEP_DIR)
        with contextlib.suppress(OSError):
            keep.mkdir(parents=True, exist_ok=True)
            for source in (
                Path(self.state_dir) / "sidecar.log",
                Path(self.state_dir) / "run" / "haproxy.log",
            ):
                if source.exists():
                    shutil.copyfile(source, keep / source.name)

    def __enter__(self) -> System:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return (Path(self.state_dir) / "sidecar.log").read_text()[-size:]
        return ""

    # -- event timestamps

    def _hook_publish(self, emulator: MarathonEmulator) -> None:
        """Call our recorders with every event the emulator publishes, at publish time."""
        state = emulator.state
        assert state is not None
        original = state._publish

        def publish(event_type: str, payload: Any) -> None:
            for recorder in list(self._recorders):
                recorder(event_type, payload)
            original(event_type, payload)

        state._publish = publish

    def on_event(self, recorder: Callable[[str, dict[str, Any]], None]) -> None:
        """``recorder(event_type, payload)`` runs inside the emulator as each event is published."""
        self._recorders.append(recorder)

    # -- HAProxy, seen from outside

    @property
    def admin_socket(self) -> str:
        return str(Path(self.state_dir) / "run" / "admin.sock")

    @property
    def master_socket(self) -> str:
        return str(Path(self.state_dir) / "run" / "master.sock")

    @property
    def runtime(self) -> RuntimeAPI:
        return RuntimeAPI(self.admin_socket, timeout=5.0)

    def show_proc(self) -> ProcStatus:
        return MasterCLI(self.master_socket).show_proc_retrying(10.0)

    def worker_pid(self) -> int:
        """The current worker's pid (``show info`` Pid on the admin socket)."""
        return self.runtime.worker_pid()

    def servers(self, app_id: str, service_port: int) -> dict[str, ServerState]:
        """HAProxy's servers of an app's backend, by server name."""
        states = self.runtime.show_servers_state(backend_name(app_id, service_port))
        return {s.name: s for s in states}

    def server_admin(self, app_id: str, service_port: int, task_id: str) -> str:
        """``ready``/``drain``/``maint`` for a task's server, ``absent`` when HAProxy has none."""
        state = self.servers(app_id, service_port).get(server_name(task_id))
        return "absent" if state is None else state.admin

    # -- the sidecar, seen from outside

    def status(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        except OSError as exc:
            return 0, str(exc)
        finally:
            conn.close()

    def health(self) -> dict[str, Any]:
        status, body = self.status("/health")
        report = json.loads(body) if status else {}
        report["http_status"] = status
        return dict(report)

    def metric(self, name: str, labels: Optional[dict[str, str]] = None) -> float:
        """A sample of the sidecar's /metrics (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        _, text = self.status("/metrics")
        wanted = labels or {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in wanted.items()
                ):
                    return float(sample.value)
        return 0.0

    # -- Marathon side

    @property
    def client(self) -> MarathonClient:
        assert self.marathon is not None
        return self.marathon

    @property
    def emu(self) -> MarathonEmulator:
        assert self.emulator is not None
        return self.emulator

    def healthy_ids(self, app_id: str) -> set[str]:
        out = set()
        for task in self.emu.tasks(app_id, states=["TASK_RUNNING"]):
            results = task.get("healthCheckResults") or []
            if results and all(r.get("alive") for r in results):
                out.add(task["id"])
        return out

    def ready_servers(self, app_id: str, service_port: int) -> set[str]:
        return {
            name
            for name, s in self.servers(app_id, service_port).items()
            if s.admin == "ready" and s.address not in ("-", "0.0.0.0")  # noqa: S104
        }

    def converged(self, app_id: str, service_port: int) -> bool:
        """HAProxy's ready servers are exactly the app's healthy running tasks (False while
        HAProxy has no such backend yet or cannot be asked)."""
        healthy = {server_name(t) for t in self.healthy_ids(app_id)}
        try:
            return bool(healthy) and self.ready_servers(app_id, service_port) == healthy
        except RuntimeAPIError:
            return False

    def deploy(self, app: dict[str, Any], timeout: float = 90.0) -> None:
        """Create an app and wait until HAProxy routes to all its healthy tasks."""
        self.client.create_app(app)
        self.wait_scaled(app["id"], app["portDefinitions"][0]["port"], app["instances"], timeout)

    def wait_scaled(self, app_id: str, service_port: int, instances: int, timeout: float) -> None:
        wait_until(
            lambda: len(self.healthy_ids(app_id)) == instances,
            timeout,
            message=f"{app_id}: {instances} healthy tasks",
        )
        wait_until(
            lambda: self.converged(app_id, service_port),
            timeout,
            message=f"{app_id}: HAProxy routes to its healthy tasks",
        )


@contextlib.contextmanager
def running_system(options: Optional[SystemOptions] = None) -> Iterator[System]:
    system = System(options)
    system.start()
    try:
        yield system
    finally:
        system.stop()


# ----------------------------------------------------------------------------- experiment


def run_sidecar_keeping_servers(argv: list[str]) -> int:
    """``marathon-sidecar`` whose applier puts drained servers in MAINT but never deletes them.

    A benchmark experiment only (``SystemOptions.keep_deleted_servers``): it tells whether the
    HAProxy worker crashes seen under churn come from ``del server``.
    """
    from sidecar import apply as apply_module
    from sidecar.main import main as sidecar_main

    def advance_without_delete(self: Any) -> int:
        if not self.draining:
            return 0
        names = sorted({be for be, _ in self.draining})
        answers = self.runtime.execute_many([f"show stat {be} 4 -1" for be in names])
        rows = [row for answer in answers for row in apply_module.parse_csv_stat(answer)]
        busy = {
            (r["pxname"], r["svname"]): int(r.get("scur") or 0) + int(r.get("qcur") or 0)
            for r in rows
        }
        now = self.clock()
        for key, entry in sorted(self.draining.items()):
            timed_out = now - entry.started_at >= self.drain_timeout
            if key in busy and busy[key] > 0 and not timed_out:
                continue
            if key in busy:
                self.runtime.write_many([apply_module.set_state_command(key[0], key[1], "maint")])
            del self.draining[key]  # a MAINT tombstone until the next reload
        return 0

    apply_module.Applier._advance_drains = advance_without_delete  # type: ignore[method-assign]
    return int(sidecar_main(argv))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--sidecar-keeping-servers":
        sys.exit(run_sidecar_keeping_servers(sys.argv[2:]))
