"""The status page's traffic at 10k services: what one poll of HAProxy's counters costs, and what
one page view costs.

Run: ``python -m bench.bench_status_traffic [--apps 10000] [--polls 15] [--views 15]``.

A real HAProxy runs the sidecar's own config for ``--apps`` apps x 3 tasks (the test kit's
generated cluster, its agents on 127.0.0.0/8 here; the servers' active checks are left out of the
config so that 30k servers do not probe ports nobody listens on, and ``maxconn`` is lowered to
fit the machine's descriptor limit: neither changes how many rows ``show stat`` returns). Then:

- ``poll``: :meth:`TrafficPoller.poll` -- ``show info`` + ``show stat -1 2 -1`` (every backend's
  row) + the servers of the 20 busiest backends, parsed, turned into intervals and history;
  wall and CPU seconds of this process (HAProxy's own time to write the CSV is in the wall
  time), median of ``--polls``; the poll interval the budget gives it (``max(3 s, poll / 2%)``);
- ``poll while viewed``: the same while a page shows the busiest 50 (their servers are read too);
- RSS of the process before the first poll and after ``--polls`` (history filled for every
  backend and the polled servers);
- ``view``: one status page as the server renders it (the busiest 50 with their servers and
  sparklines, the search ``?q=`` for about 1% of the apps, and ``?top=500``): median wall time
  and page size.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from bench.bench_render import rss_mb
from sidecar.desired import build_model
from sidecar.haproxy.process import HAProxyProcess
from sidecar.haproxy.runtime import RuntimeAPI
from sidecar.metrics import SidecarMetrics
from sidecar.render import render_config
from sidecar.render_settings import RenderSettings
from sidecar.sources.marathon.model import MarathonState
from sidecar.sources.marathon.translate import MarathonTranslator
from sidecar.status import StatusBoard
from sidecar.status_page import parse_page_query, render_page
from sidecar.traffic_poller import TrafficPoller
from testkit.cluster import AGENTS, generated_cluster
from testkit.machine import find_haproxy, machine_facts

CHECKS = re.compile(r" check inter \S+ fastinter \S+ downinter \S+ rise \d+ fall \d+")
PASSIVE = re.compile(r" observe layer4 error-limit \d+ on-error mark-down")


def bench_config(apps: int, work: Path) -> tuple[Any, Any, str]:
    """(catalog, model, config text) for ``apps`` generated apps, run from ``work``."""
    settings = RenderSettings(
        admin_socket=str(work / "admin.sock"),
        server_state_file=str(work / "server-state"),
        maxconn=2000,
    )
    hosts = {name: f"127.0.{n // 250}.{n % 250 + 1}" for n, name in enumerate(sorted(AGENTS))}
    catalog = MarathonTranslator().translate(MarathonState.from_apps(generated_cluster(apps)))
    model = build_model(catalog, settings, hosts.get)
    text = PASSIVE.sub("", CHECKS.sub("", render_config(model, settings)))
    return catalog, model, text


def timed(action: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """(median wall s, median CPU s, last result) of ``runs`` calls."""
    walls, cpus, result = [], [], None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = action()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def measure(apps: int, polls: int, views: int, haproxy_bin: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bst-", dir="/tmp"))
    haproxy = HAProxyProcess(haproxy_bin, str(work / "haproxy.cfg"), str(work / "run"))
    try:
        catalog, model, text = bench_config(apps, work)
        (work / "haproxy.cfg").write_text(text, encoding="utf-8")
        started = time.perf_counter()
        haproxy.ensure_started(timeout=300)
        start_s = time.perf_counter() - started
        poller = TrafficPoller(RuntimeAPI(str(work / "admin.sock"), timeout=60))
        rss_before = rss_mb()
        poll_wall, poll_cpu, snapshot = timed(poller.poll, polls)
        rss_after = rss_mb()
        assert not snapshot.error, snapshot.error
        board = StatusBoard(SidecarMetrics(), max_sync_age=60)
        board.set_view(catalog, model, "")
        board.traffic = poller
        health, summary = board.health(), board.summary()
        board.listing(parse_page_query(""))  # a page shows the busiest 50: read their servers
        viewed_wall, viewed_cpu, viewed = timed(poller.poll, polls)

        def view(query: str) -> str:
            return render_page(health, summary, board.listing(parse_page_query(query)), [])

        pages = {}
        for name, query in (("top 50", ""), ("search 1%", "q=svc-99"), ("top 500", "top=500")):
            wall, _, page = timed(functools.partial(view, query), views)
            pages[name] = {"wall_ms": round(wall * 1000, 1), "kbytes": round(len(page) / 1024)}
        return {
            "apps": apps,
            "backends": len(snapshot.backends),
            "servers_polled": len(snapshot.servers),
            "haproxy_start_s": round(start_s, 2),
            "poll_wall_ms": round(poll_wall * 1000, 1),
            "poll_cpu_ms": round(poll_cpu * 1000, 1),
            "poll_interval_s": round(
                poller.next_delay(replace(snapshot, poll_seconds=poll_wall)), 2
            ),
            "viewed_servers_polled": len(viewed.servers),
            "viewed_poll_wall_ms": round(viewed_wall * 1000, 1),
            "viewed_poll_cpu_ms": round(viewed_cpu * 1000, 1),
            "viewed_poll_interval_s": round(
                poller.next_delay(replace(viewed, poll_seconds=viewed_wall)), 2
            ),
            "rss_before_polls_mb": round(rss_before, 1),
            "rss_after_polls_mb": round(rss_after, 1),
            "views": pages,
        }
    finally:
        haproxy.stop(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=10000)
    parser.add_argument("--polls", type=int, default=15)
    parser.add_argument("--views", type=int, default=15)
    parser.add_argument("--haproxy-bin", default=find_haproxy())
    args = parser.parse_args()
    print(json.dumps(machine_facts(args.haproxy_bin)))
    print(json.dumps(measure(args.apps, args.polls, args.views, args.haproxy_bin), indent=2))


if __name__ == "__main__":
    main()
