"""The demo in ZooKeeper mode (``scripts/demo.sh --zookeeper``, ``python -m sidecar.demo
--zookeeper``): the demo's story with the ZooKeeper path in place of the one sidecar.

A ZooKeeper server started as the tests start it (:mod:`testkit.zookeeper`; or a running one,
``--zookeeper-hosts``), the Marathon emulator running real local tasks, one ``marathon-publisher``
process following the emulator and writing the catalog into ZooKeeper, and two
``marathon-sidecar --source zookeeper`` processes, each with its own HAProxy binding the service
ports on its own loopback address (127.0.0.2 and 127.0.0.3): no sidecar holds a connection to
Marathon. Traffic goes through both; a change counts as routed once both sidecars route exactly
the running, healthy tasks. The summary adds up both sidecars and counts Marathon's event streams.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any, Optional, TextIO

from sidecar.demo import Demo, service_rows
from testkit.publisher import PublisherProcess
from testkit.zk_mode import ZooKeeperSidecar
from testkit.zookeeper import ZooKeeperServer

NODES = ("127.0.0.2", "127.0.0.3")
DIFFERS = "(the two sidecars differ)"


class ZooKeeperDemo(Demo):
    def __init__(
        self, haproxy_bin: str, out: TextIO, pace: float, zk_hosts: Optional[str] = None
    ) -> None:
        super().__init__(haproxy_bin, out, pace)
        self.zk_hosts = zk_hosts
        # a path of its own, so a shared server (the tests') never mixes two demos' catalogs
        self.zk_path = f"/demo-{os.getpid()}/services"
        self.zookeeper: Optional[ZooKeeperServer] = None
        self.publisher: Optional[PublisherProcess] = None
        self.sidecars: list[ZooKeeperSidecar] = []

    def start_nodes(self) -> None:
        if self.zk_hosts is None:
            self.zookeeper = ZooKeeperServer(Path(self.state_dir) / "zookeeper")
            self.zookeeper.start()
            self.zk_hosts = self.zookeeper.address
        self.say(f"ZooKeeper on {self.zk_hosts}, catalog at {self.zk_path}")
        self.publisher = PublisherProcess(
            Path(self.state_dir), "publisher", self.emulator.url, self.zk_hosts, self.zk_path
        )
        self.publisher.wait_health("the publisher to lead", role="leader")
        status = f"http://127.0.0.1:{self.publisher.status_port}/health"
        self.say(f"marathon-publisher follows the emulator and leads (status: {status})")
        for address in NODES:
            sidecar = ZooKeeperSidecar(address, self.zk_hosts, self.zk_path, self.haproxy_bin)
            self.sidecars.append(sidecar.start())
            self.say(
                f"sidecar --source zookeeper serving on {address} "
                f"(status page: http://127.0.0.1:{sidecar.process.status_port}/)"
            )

    def start_traffic(self, port: int, host: str = "127.0.0.1") -> None:
        for address in NODES:
            super().start_traffic(port, address)

    def sidecar_services(self, sidecar: ZooKeeperSidecar) -> list[dict[str, Any]]:
        code, body = sidecar.status("/services")
        return list(json.loads(body).get("services", [])) if code == 200 else []

    def services(self) -> list[dict[str, Any]]:
        return self.sidecar_services(self.sidecars[0]) if self.sidecars else []

    def routed_tasks(self, app_id: str) -> set[str]:
        """The tasks both sidecars route to; a marker that matches no task while they differ."""
        seen = []
        for sidecar in self.sidecars:
            routed: set[str] = set()
            for service in self.sidecar_services(sidecar):
                if service["app_id"] == app_id:
                    routed = {e["task_id"] for e in service["endpoints"] if e["in_rotation"]}
            seen.append(routed)
        if all(routed == seen[0] for routed in seen):
            return seen[0]
        return set(itertools.chain(*seen)) | {DIFFERS}

    def print_table(self) -> None:
        lines = [""]
        for address, sidecar in zip(NODES, self.sidecars):
            lines += [f"  sidecar on {address}:", *service_rows(self.sidecar_services(sidecar))]
        with self.stats.lock:
            lines.append(
                f"  traffic so far: {self.stats.requests} requests, {self.stats.errors} errors"
            )
        print("\n".join([*lines, ""]), file=self.out, flush=True)

    def metric(self, name: str) -> float:
        return sum(sidecar.metric(name) for sidecar in self.sidecars)

    def runtime_changes(self) -> float:
        pattern = re.compile(r"^marathon_sidecar_haproxy_runtime_ops_total(?:\{[^}]*\})? (\S+)$")
        total = 0.0
        for sidecar in self.sidecars:
            _code, text = sidecar.status("/metrics")
            for line in text.splitlines():
                found = pattern.match(line)
                if found:
                    total += float(found.group(1))
        return total

    def summary(self) -> str:
        streams = self.emulator.event_stream_count()
        return "\n".join(
            [
                super().summary(),
                f"  Marathon event streams:        {streams} (the publisher's; sidecars hold none)",
                f"  sidecars:                      {len(self.sidecars)} ({', '.join(NODES)}; "
                "reloads and runtime changes above add up both)",
            ]
        )

    def close(self) -> None:
        self.stop_traffic.set()
        for sidecar in self.sidecars:
            sidecar.stop()
        if self.publisher is not None:
            self.publisher.stop()
        if self.zookeeper is not None:
            self.zookeeper.stop()
        super().close()
