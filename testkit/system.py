"""One whole node on loopback for the zero-drop tests and the whole-system benchmarks.

A :class:`System` is the Marathon emulator running real echo tasks, one sidecar (the daemon in a
thread, or ``python -m sidecar`` as a child process) and the real HAProxy it starts, everything
on OS-chosen loopback ports under a private temporary directory. With ``source="zookeeper"`` the
sidecar (a child process) watches ZooKeeper instead: a ZooKeeper server and a
``marathon-publisher`` process following the emulator stand between the two. It is read from
outside: the status server, HAProxy's runtime API and master CLI, the emulator's tasks.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from sidecar.haproxy.runtime import MasterCLI, ProcStatus, RuntimeAPI, RuntimeAPIError, ServerState
from sidecar.names import backend_name, server_name
from testkit.apps import healthy_task_ids
from testkit.http import health_of, metric_sample, status_of
from testkit.machine import find_haproxy
from testkit.node import (
    SidecarNode,
    ready_server_names,
    short_state_dir,
    sidecar_settings,
    start_sidecar,
)
from testkit.ports import free_port
from testkit.process import SidecarProcess
from testkit.publisher import PublisherProcess, Publishing
from testkit.waiting import wait_until
from testkit.zookeeper import ZooKeeperServer

LOG_KEEP_DIR = "/tmp/zero-drop-last-logs"

EventRecorder = Callable[[str, dict[str, Any]], None]


@dataclass
class SystemOptions:
    """How the node under test is set up."""

    in_process: bool = True  # the Daemon in a thread; False: ``python -m sidecar``
    kill_grace: float = 0.5  # TASK_KILLING -> SIGTERM to the task process
    debounce: float = 0.05
    min_reload_interval: float = 0.2
    resync_interval: float = 300.0
    drain_timeout: float = 5.0
    heartbeat_interval: float = 1.0
    log_level: str = "WARNING"
    # diagnosis: HAProxy logs every abnormal request (status >= 500, aborts, retries) to the
    # sidecar's output, ``<state-dir>/sidecar.log`` (kept in LOG_KEEP_DIR): ``--haproxy-log
    # stdout`` and ``option dontlog-normal`` added to the built-in template's defaults
    log_errors: bool = False
    # extra lines for the template's "defaults" section (e.g. a retry-on policy)
    extra_defaults: tuple[str, ...] = ()
    # "zookeeper": emulator -> marathon-publisher -> ZooKeeper -> the sidecar (needs in_process
    # False); resync_interval is then the publisher's
    source: str = "marathon"

    def settings_values(self) -> dict[str, Any]:
        """The sidecar settings these options set (as ``Settings`` fields)."""
        return {
            "debounce": self.debounce,
            "min_reload_interval": self.min_reload_interval,
            "resync_interval": self.resync_interval,
            "drain_timeout": self.drain_timeout,
            "empty_confirm": 60.0,
            "marathon_timeout": 5.0,
        }


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
        self.node: Optional[SidecarNode] = None
        self.process: Optional[SidecarProcess] = None
        self.zookeeper: Optional[ZooKeeperServer] = None
        self.publisher: Optional[PublisherProcess] = None
        self.status_port = 0

    # -- lifecycle

    def start(self) -> System:
        self.state_dir = short_state_dir("zd-")
        try:
            self.emulator = MarathonEmulator(
                run_tasks=True,
                kill_grace=self.options.kill_grace,
                heartbeat_interval=self.options.heartbeat_interval,
            ).start()
            self.marathon = MarathonClient(self.emulator.url, timeout=(3.0, 10.0))
            self.status_port = free_port()
            if self.options.in_process:
                self._start_in_process()
            else:
                self._start_subprocess()
            wait_until(self._haproxy_ready, 60, "haproxy started by the sidecar")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_in_process(self) -> None:
        settings = sidecar_settings(
            (self.emu.url,),
            self.state_dir,
            self.haproxy_bin,
            status_port=self.status_port,
            poll_interval=10.0,
            **self.options.settings_values(),
        )
        self.node = start_sidecar(
            settings, stream_silence=15.0, own_state_dir=False, wait_for_haproxy=False
        )

    def _start_subprocess(self) -> None:
        if self.options.source == "zookeeper":
            args = self._start_publishing()
        else:
            args = ["--marathon", self.emu.url]
        for name, value in self.options.settings_values().items():
            args += ["--" + name.replace("_", "-"), str(value)]
        if self.options.log_errors:
            args += ["--haproxy-log", "stdout"]
        if self.options.log_errors or self.options.extra_defaults:
            args += ["--template", self._experiment_template()]
        args += ["--log-level", self.options.log_level, "--log-format", "json"]
        self.process = SidecarProcess(args, self.state_dir, self.status_port, self.haproxy_bin)
        self.process.start()

    def _start_publishing(self) -> list[str]:
        """A ZooKeeper server and a publisher that leads; the sidecar's source flags."""
        resync = str(self.options.resync_interval)
        extra = ("--resync-interval", resync, "--log-level", self.options.log_level)
        publishing = Publishing(Path(self.state_dir), self.emu.url, *extra)
        self.zookeeper, self.publisher = publishing.zookeeper, publishing.publisher
        return publishing.sidecar_args()

    def _experiment_template(self) -> str:
        """The built-in template plus ``option dontlog-normal`` (only abnormal requests in the
        access log) and/or the extra ``defaults`` lines."""
        from sidecar.render import default_template

        text = default_template()
        extra = list(self.options.extra_defaults)
        if self.options.log_errors:
            extra.append("option dontlog-normal")
        lines = "".join(f"    {line}\n" for line in extra)
        text = text.replace("\ndefaults\n", "\ndefaults\n" + lines, 1)
        path = Path(self.state_dir) / "logging.cfg.j2"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def _haproxy_ready(self) -> bool:
        if self.process is not None and self.process.exited():
            raise RuntimeError(f"the sidecar exited: {self.log_tail()}")
        if not Path(self.admin_socket).exists():
            return False
        return self.runtime.worker_pid() > 0

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self.publisher is not None:
            self.publisher.stop()
            self.publisher = None
        if self.zookeeper is not None:
            self.zookeeper.stop()
            self.zookeeper = None
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
        return self.process.log_tail(size) if self.process is not None else ""

    # -- event timestamps

    def on_event(self, recorder: EventRecorder) -> None:
        """``recorder(event_type, payload)`` runs inside the emulator as each event is published."""
        self.emu.on_event(recorder)

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

    def ready_servers(self, app_id: str, service_port: int) -> set[str]:
        return ready_server_names(self.runtime, backend_name(app_id, service_port))

    # -- the sidecar, seen from outside

    def status(self, path: str) -> tuple[int, str]:
        """GET ``path`` from the status server; (0, the error) when it does not answer."""
        return status_of(self.status_port, path)

    def health(self) -> dict[str, Any]:
        """The /health report with ``http_status`` (0 when it does not answer)."""
        return health_of(self.status_port)

    def metric(self, name: str, labels: Optional[dict[str, str]] = None) -> float:
        """A sample of the sidecar's /metrics (0 when absent)."""
        return metric_sample(self.status("/metrics")[1], name, labels)

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
        return healthy_task_ids(self.emu, app_id)

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
            f"{app_id}: {instances} healthy tasks",
        )
        wait_until(
            lambda: self.converged(app_id, service_port),
            timeout,
            f"{app_id}: HAProxy routes to its healthy tasks",
        )
        wait_until(  # Marathon ends a deployment after its tasks are healthy; until then, 409
            lambda: (
                not any(app_id in d.get("affectedApps", ()) for d in self.client.list_deployments())
            ),
            timeout,
            f"{app_id}: no deployment left",
        )


@contextlib.contextmanager
def running_system(options: Optional[SystemOptions] = None) -> Iterator[System]:
    with System(options) as system:
        yield system
