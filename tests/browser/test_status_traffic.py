"""Traffic on the status page, in headless Chromium, with real requests through a real HAProxy.

Two apps of real echo tasks: ``/shop/front`` (http, 2 tasks) and ``/shop/cache`` (tcp, 1 task).
The test sends 12 requests answered 200, 3 answered 400 and 2 answered 503 through the front's
service port, and holds 3 connections open on the cache's. The page must show exactly that: for
the front, 17 requests over the chart's window, 3 4xx and 2 5xx, shared by its two tasks; for the
cache, 3 sessions now and 3 connections, on its one task. When the connections close, the
sessions fall to 0. The page is kept as ``test-artifacts/status-page-traffic.png``.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path
from typing import Callable

import pytest

from sidecar.names import backend_name
from testkit import free_ports, wait_until
from testkit.apps import echo_app
from testkit.chromium import PNG_MAGIC, Chromium, png_size
from testkit.http import get
from testkit.marathon import EmulatedMarathon
from testkit.node import SidecarNode
from testkit.status_page import ServiceRow, StatusPage, load_status_page

pytestmark = [pytest.mark.browser, pytest.mark.haproxy, pytest.mark.slow]

SCREENSHOT = Path(__file__).resolve().parents[2] / "test-artifacts" / "status-page-traffic.png"
SCREEN_WIDTH, SCREEN_HEIGHT = 1600, 900
FRONT, CACHE = "/shop/front", "/shop/cache"
SENT = (("/", 12, 200), ("/sleep/not-a-number", 3, 400), ("/unhealthy", 2, 503))
HELD = 3


def routed(
    marathon: EmulatedMarathon, sidecar: SidecarNode, app_id: str, port: int
) -> Callable[[], bool]:
    """HAProxy's ready servers for the app are its healthy tasks."""
    return lambda: sidecar.routes_exactly(marathon.emulator, app_id, port)


def total(values: list[str]) -> int:
    return sum(int(v) for v in values)


def shows_the_traffic(page: StatusPage) -> bool:
    front, cache = page.service(FRONT), page.service(CACHE)
    return (
        front.traffic.window == "17"
        and total([t.traffic.window or "0" for t in front.tasks]) == 17
        and cache.traffic.sessions == str(HELD)
        and cache.traffic.window == str(HELD)
        and [t.traffic.sessions for t in cache.tasks] == [str(HELD)]
    )


def test_the_page_shows_the_traffic_sent_per_service_and_per_server(
    chromium: Chromium, marathon: EmulatedMarathon, sidecar: SidecarNode
) -> None:
    front_port, cache_port = free_ports(2)
    marathon.deploy(echo_app(FRONT, front_port, 2))
    marathon.deploy(echo_app(CACHE, cache_port, 1, mode="tcp"))
    for app_id, port in ((FRONT, front_port), (CACHE, cache_port)):
        wait_until(routed(marathon, sidecar, app_id, port), timeout=60, message=f"{app_id} routed")
    # the traffic poller has read the worker that runs both (the last reload's): from here on,
    # nothing reloads HAProxy and every request sent falls in a poll interval
    assert sidecar.daemon.traffic is not None
    poller = sidecar.daemon.traffic
    backends = {backend_name(FRONT, front_port), backend_name(CACHE, cache_port)}
    wait_until(lambda: backends <= set(poller.snapshot().backends), 60, "a poll of both")
    for path, count, status in SENT:
        assert [get(front_port, path, timeout=10)[0] for _ in range(count)] == [status] * count
    held = [socket.create_connection(("127.0.0.1", cache_port), timeout=10) for _ in range(HELD)]
    try:
        seen: dict[str, StatusPage] = {}

        def page_shows_it() -> bool:
            seen["page"] = load_status_page(chromium, sidecar.status_url, "q=shop")
            return shows_the_traffic(seen["page"])

        wait_until(page_shows_it, timeout=90, interval=0.5, message="the traffic on the page")
        page = seen["page"]
        assert page.scripts == 0
        assert page.listing == 'showing 2 of the 2 services matching "shop"'
        check_front(page.service(FRONT))
        check_cache(page.service(CACHE))
        chromium.screenshot(
            f"{sidecar.status_url}/?q=shop", SCREENSHOT, SCREEN_WIDTH, SCREEN_HEIGHT
        )
    finally:
        for connection in held:
            with contextlib.suppress(OSError):
                connection.close()
    wait_until(
        lambda: (
            load_status_page(chromium, sidecar.status_url).service(CACHE).traffic.sessions == "0"
        ),
        timeout=60,
        interval=0.5,
        message="the closed connections leave the sessions",
    )
    data = SCREENSHOT.read_bytes()
    assert data.startswith(PNG_MAGIC) and png_size(data) == (SCREEN_WIDTH, SCREEN_HEIGHT)


def check_front(front: ServiceRow) -> None:
    traffic = front.traffic
    assert (front.mode, traffic.e4xx, traffic.e5xx) == ("http", "3", "2"), traffic
    assert (traffic.sessions, traffic.queue) == ("0", "0"), traffic
    assert traffic.rate.endswith(" req/s"), traffic
    assert traffic.chart.startswith("17 requests in the last "), traffic
    assert traffic.lines >= 1, "no line in the sparkline"
    assert len(front.tasks) == 2
    tasks = [task.traffic for task in front.tasks]
    assert total([t.e4xx for t in tasks]) == 3 and total([t.e5xx for t in tasks]) == 2, tasks
    assert all(t.rate.endswith(" req/s") for t in tasks), tasks


def check_cache(cache: ServiceRow) -> None:
    traffic = cache.traffic
    assert (cache.mode, traffic.econ, traffic.queue) == ("tcp", "0", "0"), traffic
    assert traffic.rate.endswith(" conn/s"), traffic
    assert traffic.chart.startswith(f"{HELD} connections in the last "), traffic
    (task,) = cache.tasks
    assert (task.traffic.sessions, task.traffic.window) == (str(HELD), str(HELD)), task
