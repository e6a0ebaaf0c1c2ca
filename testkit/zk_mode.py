"""The sidecar's end of the ZooKeeper path on loopback (Marathon emulator -> ``marathon-publisher``
(:class:`testkit.publisher.PublisherProcess`) -> ZooKeeper -> sidecars).

:class:`ZooKeeperSidecar` is ``python -m sidecar --source zookeeper`` as a child process
(:class:`testkit.process.SidecarProcess`) with its own HAProxy, state dir and bind address
(127.0.0.2, 127.0.0.3...): no Marathon URL anywhere. Its owner's ``stop()`` stops it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import yaml

from sidecar.haproxy.runtime import RuntimeAPI, RuntimeAPIError
from sidecar.names import backend_name, server_name
from testkit.http import metric_sample, status_of
from testkit.ports import free_port
from testkit.process import SidecarProcess, tcp_connections_to
from testkit.waiting import wait_until


class ZooKeeperSidecar:
    """One ``marathon-sidecar --source zookeeper`` process binding every service port on
    ``bind``; ``services`` is the YAML ``services:`` map. No Marathon URL (nor any ``MARATHON_*``
    variable) reaches it."""

    def __init__(
        self,
        bind: str,
        zk_hosts: str,
        zk_path: str,
        haproxy_bin: str,
        services: Optional[dict[str, Any]] = None,
    ) -> None:
        self.bind = bind
        state_dir = tempfile.mkdtemp(prefix="zks-", dir="/tmp")  # short: socket paths
        config = Path(state_dir) / "sidecar.yaml"
        config.write_text(yaml.safe_dump({"services": services or {}}))
        args = [
            "--source", "zookeeper",
            "--zookeeper", zk_hosts,
            "--zk-path", zk_path,
            "--config", str(config),
            "--bind", bind,
            "--debounce", "0.05",
            "--min-reload-interval", "0.2",
            "--drain-timeout", "5",
            "--empty-confirm", "30",
            "--log-format", "json",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARATHON_")}
        self.process = SidecarProcess(args, state_dir, free_port(), haproxy_bin, env=env)

    def start(self) -> ZooKeeperSidecar:
        self.process.start()
        wait_until(self._haproxy_serves, 60, f"the sidecar on {self.bind} to run HAProxy")
        return self

    def _haproxy_serves(self) -> bool:
        if self.process.exited():
            raise AssertionError(f"sidecar {self.bind} exited: {self.process.log_tail()}")
        return self.runtime.worker_pid() > 0

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.process.state_dir, ignore_errors=True)

    @property
    def pid(self) -> Optional[int]:
        return self.process.proc.pid if self.process.proc is not None else None

    # --- seen from outside ---------------------------------------------------------------------
    @property
    def runtime(self) -> RuntimeAPI:
        return RuntimeAPI(str(Path(self.process.state_dir) / "run" / "admin.sock"), timeout=5.0)

    def servers(self, app_id: str, port: int) -> dict[str, str]:
        """Server name -> admin state (ready, drain, maint) of the app's backend; {} without one."""
        try:
            states = self.runtime.show_servers_state(backend_name(app_id, port))
        except (OSError, RuntimeAPIError):
            return {}
        return {s.name: s.admin for s in states}

    def ready(self, app_id: str, port: int) -> set[str]:
        return {name for name, admin in self.servers(app_id, port).items() if admin == "ready"}

    def routes_to(self, app_id: str, port: int, task_ids: set[str]) -> bool:
        """HAProxy's ready servers of the app are exactly these tasks (and there are some)."""
        return bool(task_ids) and self.ready(app_id, port) == {server_name(t) for t in task_ids}

    def status(self, path: str) -> tuple[int, str]:
        return self.process.status(path)

    def health(self) -> dict[str, Any]:
        return self.process.health()

    def connections_to(self, port: int) -> int:
        """Established TCP connections the sidecar process holds to ``port`` (e.g. Marathon's)."""
        return tcp_connections_to(self.process.proc.pid, port) if self.process.proc else 0

    def metric(self, name: str) -> float:
        return metric_sample(status_of(self.process.status_port, "/metrics")[1], name)

    def config_text(self) -> str:
        return (Path(self.process.state_dir) / "haproxy.cfg").read_text(encoding="utf-8")

    def log_text(self) -> str:
        return self.process.log_text()
