"""What passive health checks cost one node: probes per second, HAProxy's CPU and descriptors.

Run (as root: each variant runs in a network namespace of its own, so the kernel's TCP counters
of that namespace count HAProxy's probes and nothing else):

    python -m bench.bench_probes [--apps 10000] [--tasks 3] [--seconds 90] [--variants ...]

For each variant a real HAProxy runs the config the sidecar renders for ``--apps`` services of
``--tasks`` servers each (one listener per service on 127.0.0.1, servers on 50 loopback ports
that accept and close), with ``maxconn 1000`` and ``no strict-limits`` so that a variant whose
checks need more descriptors than this machine's limit still runs. It is started, watched for
``--seconds``, reloaded the way the sidecar reloads (``show servers state`` written to the
server-state file through the applier's own filter, master CLI ``reload``) and watched again.
Every second: probes (``ActiveOpens`` of the namespace: HAProxy makes no other connection), the
worker's CPU time and open descriptors. Variants:

- ``before``: the earlier default, ``inter 60s fastinter 2s downinter 2s rise 2 fall 3``;
- ``after``: today's default (:class:`sidecar.haproxy_model.PassiveCheckSpec`);
- ``after-raw-state``: the same, reloaded with the server-state file as HAProxy dumps it (what
  the applier's filter prevents: HAProxy 2.6 restores a running server at full health, where
  the first check's ``inter x position`` overflows: about half the servers probed at once);
- ``off``: no passive checks (``passive_checks=False``).

Prints one JSON object per variant and the machine (nproc, load average, haproxy version).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from sidecar.apply.runtime_plan import (
    passive_backends,
    server_state_for_reload,
    wanted_admin_states,
)
from sidecar.catalog import READY, Catalog, Instance, Service, ServiceOptions, service_key
from sidecar.desired import build_model
from sidecar.haproxy.runtime import MasterCLI, RuntimeAPI, RuntimeAPIError
from sidecar.haproxy_model import HAProxyModel, PassiveCheckSpec
from sidecar.render import render_config
from sidecar.render_settings import RenderSettings
from testkit.machine import find_haproxy, machine_facts
from testkit.waiting import wait_until

TARGET_ADDRESS = "127.0.0.2"
TARGET_PORT = 40000
TARGETS = 50
BEFORE = PassiveCheckSpec(60_000, 2_000, 2_000, 2, 3, 3)
VARIANTS = ("before", "after", "after-raw-state", "off")


# --- the targets: accept and close (runs inside the namespace) ---------------------------------


def serve_targets(address: str, first_port: int, count: int) -> None:
    selector = selectors.DefaultSelector()
    for port in range(first_port, first_port + count):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((address, port))
        listener.listen(4096)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            while True:
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                except BlockingIOError:
                    break
                except OSError:
                    continue
                conn.close()


# --- the config -------------------------------------------------------------------------------


def catalog(apps: int, tasks: int) -> Catalog:
    services = {}
    for i in range(apps):
        app_id = f"/bench/app-{i}"
        instances = tuple(
            Instance(f"app-{i}.task-{t}", TARGET_ADDRESS, TARGET_PORT + (i * tasks + t) % TARGETS,
                     READY, "running", app_id=app_id)
            for t in range(tasks)
        )  # fmt: skip
        options = ServiceOptions(service_port=10000 + i, bind_port=10000 + i)
        services[service_key(app_id, 0)] = Service(
            service_key(app_id, 0), app_id, 0, options, instances
        )
    return Catalog(services)


def settings_of(variant: str, work: Path) -> RenderSettings:
    spec = BEFORE if variant == "before" else PassiveCheckSpec()
    return RenderSettings(
        admin_socket=str(work / "admin.sock"),
        server_state_file=str(work / "server-state"),
        passive_checks=variant != "off",
        passive_check=spec,
    )


# --- one HAProxy in its own namespace ---------------------------------------------------------


class Node:
    def __init__(self, variant: str, work: Path, model: HAProxyModel, haproxy_bin: str) -> None:
        self.variant = variant
        self.work = work
        self.model = model
        self.namespace = f"mb-probes-{os.getpid()}-{variant}"
        self.settings = settings_of(variant, work)
        self.admin = RuntimeAPI(self.settings.admin_socket, timeout=30)
        self.master = MasterCLI(str(work / "master.sock"), timeout=30)
        self.haproxy_bin = haproxy_bin
        self.procs: list[subprocess.Popen[bytes]] = []

    def netns(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def start(self) -> None:
        subprocess.run(["ip", "netns", "add", self.namespace], check=True)
        subprocess.run(["ip", "-n", self.namespace, "link", "set", "lo", "up"], check=True)
        targets = subprocess.Popen(
            self.netns(sys.executable, "-m", "bench.bench_probes", "--serve-targets"),
            stdout=subprocess.PIPE,
        )
        self.procs.append(targets)
        assert targets.stdout is not None and targets.stdout.readline().strip() == b"ready"
        config = self.work / "haproxy.cfg"
        config.write_text(render_config(self.model, self.settings))
        log = (self.work / "haproxy.log").open("wb")
        self.procs.append(subprocess.Popen(
            self.netns(self.haproxy_bin, "-W", "-S", str(self.work / "master.sock"), "-f",
                       str(config)), stdout=log, stderr=log,
        ))  # fmt: skip
        wait_until(self.worker_pid, 120, "haproxy's worker answers")

    def worker_pid(self) -> Optional[int]:
        try:
            return self.admin.worker_pid() or None
        except (RuntimeAPIError, ValueError):
            return None

    def reload(self, raw_state: bool) -> int:
        """As the applier does: the server-state file, then the master CLI; the new worker."""
        old = self.worker_pid()
        dump = self.admin.servers_state_text()
        if not raw_state:
            dump = server_state_for_reload(
                dump, wanted_admin_states(self.model), passive_backends(self.model)
            )
        Path(self.settings.server_state_file).write_text(dump)
        self.master.reload()
        return int(wait_until(lambda: (p := self.worker_pid()) != old and p, 120, "new worker"))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait(30)
        subprocess.run(["ip", "netns", "del", self.namespace], check=False)


def sample(pid: int) -> tuple[int, float, int]:
    """(probes so far: ActiveOpens of the worker's namespace, CPU seconds, open descriptors)."""
    rows = [ln.split() for ln in Path(f"/proc/{pid}/net/snmp").read_text().splitlines()]
    tcp = [r for r in rows if r[0] == "Tcp:"]
    opens = int(tcp[1][tcp[0].index("ActiveOpens")])
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return opens, cpu, len(os.listdir(f"/proc/{pid}/fd"))


def watch(pid: int, seconds: int) -> dict[str, Any]:
    """Probes per second, CPU and descriptors of worker ``pid`` for ``seconds``."""
    series: list[tuple[int, float, int]] = [sample(pid)]
    started = time.monotonic()
    for second in range(1, seconds + 1):
        time.sleep(max(0.0, started + second - time.monotonic()))
        series.append(sample(pid))
    probes = [b[0] - a[0] for a, b in zip(series, series[1:])]
    tail = max(1, seconds // 3)  # the last third: past the first probes
    cpu = (series[-1][1] - series[-1 - tail][1]) / tail
    return {
        "probes_first_10s": sum(probes[:10]),
        "probes_peak_per_s": max(probes),
        "probes_per_s_last_third": round(statistics.mean(probes[-tail:]), 1),
        "probes_total": sum(probes),
        "cpu_percent_last_third": round(100 * cpu, 1),
        "fds_open": series[-1][2],
        "probes_per_10s": [sum(probes[i : i + 10]) for i in range(0, seconds, 10)],
    }


def run_variant(variant: str, apps: int, tasks: int, seconds: int) -> dict[str, Any]:
    haproxy_bin = find_haproxy()
    work = Path(tempfile.mkdtemp(prefix="mb-probes-", dir="/tmp"))
    model = build_model(catalog(apps, tasks), settings_of(variant, work))
    model = replace(model, maxconn=1000)
    node = Node(variant, work, model, haproxy_bin)
    try:
        node.start()
        pid = node.worker_pid()
        assert pid is not None
        info = node.admin.show_info()
        result: dict[str, Any] = {
            "variant": variant,
            "servers": sum(len(b.servers) for b in model.backends),
            "maxsock": int(info["Maxsock"]),
            "ulimit_n": int(info["Ulimit-n"]),
            "start": watch(pid, seconds),
        }
        result["reload"] = watch(node.reload(raw_state=variant == "after-raw-state"), seconds)
        return result
    finally:
        node.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=10000)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=90)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--serve-targets", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_targets:
        serve_targets(TARGET_ADDRESS, TARGET_PORT, TARGETS)
        return 0
    if os.geteuid() != 0:
        print("needs root (ip netns)", file=sys.stderr)
        return 2
    print(json.dumps({"machine": machine_facts(find_haproxy())}), flush=True)
    for variant in args.variants.split(","):
        print(json.dumps(run_variant(variant, args.apps, args.tasks, args.seconds)), flush=True)
    print(json.dumps({"load_after": machine_facts(find_haproxy())["loadavg"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
