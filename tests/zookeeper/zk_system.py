"""The whole ZooKeeper path on loopback: Marathon emulator -> publisher -> ZooKeeper -> sidecars.

- :class:`PublisherBridge`: the publisher's side in this process: a Marathon source follows the
  emulator, each catalog goes through the contract (:mod:`sidecar.sources.zookeeper.mapping`) to
  a leader-elected :class:`~publisher.publisher.Publisher` (what ``marathon-publisher`` does);
- :class:`SidecarNode`: ``python -m sidecar --source zookeeper`` as a child process with its own
  HAProxy, state dir and bind address (127.0.0.2, 127.0.0.3...): no Marathon URL anywhere;
- :class:`LoadProcess`: ``load_process.py`` in a child process (its own GIL), a new connection for
  every request, its figures read from the stats file it keeps.

Every process and thread started here is stopped by the owner's ``stop()``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import yaml

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from _harness import echo_app, free_ports  # noqa: E402

from marathon_bridge.client import MarathonClient  # noqa: E402
from publisher.plan import ServiceSpec  # noqa: E402
from publisher.publisher import Publisher  # noqa: E402
from sidecar.catalog import Catalog  # noqa: E402
from sidecar.haproxy.runtime import RuntimeAPI, RuntimeAPIError  # noqa: E402
from sidecar.names import backend_name, server_name  # noqa: E402
from sidecar.sources.marathon.source import MarathonSource  # noqa: E402
from sidecar.sources.zookeeper import mapping  # noqa: E402
from sidecar.sources.zookeeper.source import make_client  # noqa: E402
from testkit.zookeeper import wait_until  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LOAD_SCRIPT = Path(__file__).with_name("load_process.py")
__all__ = ["LoadProcess", "PublisherBridge", "SidecarNode", "echo_app", "free_ports"]


class PublisherBridge:
    """Marathon (the emulator) followed here and written into ZooKeeper by a Publisher."""

    def __init__(self, marathon_url: str, zk_hosts: str, zk_path: str) -> None:
        self.client = make_client([zk_hosts])
        self.client.start(timeout=30)
        self.publisher = Publisher(self.client, zk_path, "bridge", heartbeat_interval=0.5)
        self.marathon = MarathonSource(MarathonClient(marathon_url), empty_confirm=30.0)
        self.catalogs = 0

    def start(self) -> PublisherBridge:
        self.publisher.start()
        self.marathon.start(self)
        return self

    # the Marathon source's listener
    def catalog_changed(self, catalog: Catalog, reason: str) -> None:
        services, _problems = mapping.zookeeper_services(catalog)
        self.publisher.publish(
            {name: ServiceSpec(s.instances, s.options) for name, s in services.items()}
        )
        self.catalogs += 1

    def source_problem(self, problem: Optional[str]) -> None:
        pass

    def source_contact(self) -> None:
        pass

    def stop(self) -> None:
        self.marathon.stop()
        self.publisher.stop()
        self.client.stop()
        self.client.close()


class SidecarNode:
    """One ZooKeeper-mode sidecar process binding every service port on ``bind``."""

    def __init__(
        self,
        bind: str,
        zk_hosts: str,
        zk_path: str,
        haproxy_bin: str,
        services: Optional[dict[str, Any]] = None,
    ) -> None:
        self.bind = bind
        self.zk_hosts = zk_hosts
        self.zk_path = zk_path
        self.haproxy_bin = haproxy_bin
        self.state_dir = tempfile.mkdtemp(prefix="zks-", dir="/tmp")  # short: socket paths
        self.status_port = free_ports(1)[0]
        self.config = Path(self.state_dir) / "sidecar.yaml"
        self.config.write_text(yaml.safe_dump({"services": services or {}}))
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> SidecarNode:
        args = [
            sys.executable, "-m", "sidecar",
            "--source", "zookeeper",
            "--zookeeper", self.zk_hosts,
            "--zk-path", self.zk_path,
            "--config", str(self.config),
            "--bind", self.bind,
            "--state-dir", self.state_dir,
            "--haproxy-bin", self.haproxy_bin,
            "--status-listen", f"127.0.0.1:{self.status_port}",
            "--debounce", "0.05",
            "--min-reload-interval", "0.2",
            "--drain-timeout", "5",
            "--empty-confirm", "30",
            "--log-format", "json",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARATHON_")}
        with open(Path(self.state_dir) / "sidecar.log", "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env
            )
        wait_until(self._haproxy_serves, 60, f"the sidecar on {self.bind} to run HAProxy")
        return self

    def _haproxy_serves(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"sidecar {self.bind} exited: {self.log_tail()}")
        try:
            return self.runtime.worker_pid() > 0
        except (OSError, RuntimeAPIError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # --- seen from outside ---------------------------------------------------------------------
    @property
    def runtime(self) -> RuntimeAPI:
        return RuntimeAPI(str(Path(self.state_dir) / "run" / "admin.sock"), timeout=5.0)

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
        """HAProxy's ready servers of the app are exactly these tasks."""
        return bool(task_ids) and self.ready(app_id, port) == {server_name(t) for t in task_ids}

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
        code, body = self.status("/health")
        report: dict[str, Any] = json.loads(body) if code else {"status": "", "reasons": [body]}
        report["http_status"] = code
        return report

    def metric(self, name: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        _code, body = self.status("/metrics")
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == name:
                    return float(sample.value)
        return 0.0

    def config_text(self) -> str:
        return (Path(self.state_dir) / "haproxy.cfg").read_text(encoding="utf-8")

    def log_tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return (Path(self.state_dir) / "sidecar.log").read_text()[-size:]
        return ""


class LoadProcess:
    """``load_process.py`` against some ``host:port`` targets at ``rate`` requests per second."""

    def __init__(self, targets: list[str], rate: float = 600.0) -> None:
        self.targets = targets
        self.workdir = tempfile.mkdtemp(prefix="zk-load-", dir="/tmp")
        self.stats_path = str(Path(self.workdir) / "stats.json")
        self.proc = subprocess.Popen(
            [sys.executable, str(LOAD_SCRIPT), self.stats_path, str(rate), *targets],
            cwd=str(ROOT),
        )
        self.final: Optional[dict[str, Any]] = None

    def stats(self) -> dict[str, Any]:
        if self.final is not None:
            return self.final
        try:
            return dict(json.loads(Path(self.stats_path).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {"started": 0.0, "now": 0.0, "targets": {}}

    def sent(self) -> int:
        return sum(t["sent"] for t in self.stats()["targets"].values())

    def wait_for_requests(self, more: int, timeout: float = 120.0) -> None:
        target = self.sent() + more
        wait_until(lambda: self.sent() >= target, timeout, f"{more} more requests")

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.final = self.stats()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.final

    def summary(self) -> dict[str, Any]:
        """Requests, failures, the rate, and the first errors over every target."""
        stats = self.stats()
        targets = stats["targets"].values()
        sent = sum(t["sent"] for t in targets)
        seconds = max(1e-9, stats["now"] - stats["started"])
        return {
            "requests": sent,
            "failures": sum(t["failures"] for t in targets),
            "rate": round(sent / seconds, 1),
            "errors": [e for t in targets for e in t["errors"]][:10],
        }
