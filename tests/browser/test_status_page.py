"""The sidecar's status page in headless Chromium, against a real sidecar and HAProxy.

The page loads with its services table; an app deployed in the emulator afterwards appears on
the page (its app id and service port) once Chromium loads it again; a screenshot is kept as
``test-artifacts/status-page.png``. A page left open in Chromium fetches itself again and again
(its meta refresh), so it picks up a service deployed while it is open. The machine endpoints
(/health, /livez, /readyz, /metrics, /config, /services) answer with their key facts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import pytest

from testkit import free_ports, wait_until
from testkit.apps import echo_app
from testkit.chromium import PNG_MAGIC, Chromium, png_size
from testkit.http import http_get
from testkit.marathon import EmulatedMarathon
from testkit.node import SidecarNode
from testkit.status_page import StatusPage, TaskRow, load_status_page

pytestmark = [pytest.mark.browser, pytest.mark.haproxy, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOT = ARTIFACTS / "status-page.png"
SCREEN_WIDTH, SCREEN_HEIGHT = 1280, 900


def haproxy_sees_all_up(sidecar: SidecarNode, port: int) -> bool:
    """HAProxy's own view (read every few seconds) has every endpoint of ``port`` up."""
    services = json.loads(http_get(f"{sidecar.status_url}/services")[1])["services"]
    service = next((s for s in services if s["service_port"] == port), None)
    states = [e.get("haproxy") for e in (service or {}).get("endpoints", [])]
    return bool(states) and all(state == "up" for state in states)


@pytest.fixture(scope="module")
def web(marathon: EmulatedMarathon, sidecar: SidecarNode) -> tuple[str, int]:
    """An app served before the browser looks: (app id, service port)."""
    (port,) = free_ports(1)
    marathon.deploy(echo_app("/shop/web", port, 2))
    wait_until(lambda: port in sidecar.served_ports(), timeout=60, message="web served")
    return "/shop/web", port


def load_page(chromium: Chromium, sidecar: SidecarNode) -> StatusPage:
    return load_status_page(chromium, sidecar.status_url)


def test_status_page_shows_a_new_service_in_chromium_and_is_kept_as_a_screenshot(
    chromium: Chromium, marathon: EmulatedMarathon, sidecar: SidecarNode, web: tuple[str, int]
) -> None:
    web_id, web_port = web
    page = load_page(chromium, sidecar)
    assert page.title == "marathon-sidecar"
    assert page.has_services_table, "no services table in the DOM"
    assert (str(web_port), web_id) in page.services, page.services
    assert len(page.tasks) == 2, page.tasks
    assert all(row.row_class == "in" and row.health == "healthy" for row in page.tasks), page.tasks
    assert page.health == "ok"
    assert page.summary.get("last sync", "never") != "never", page.summary
    assert "/static/status.css" in page.stylesheets
    assert page.refresh is not None and page.refresh.strip().isdigit(), page.refresh
    assert int(page.refresh) > 0

    (api_port,) = free_ports(1)
    api_id = "/shop/api"
    assert all(app != api_id for _, app in page.services)
    marathon.deploy(echo_app(api_id, api_port, 2))

    seen: dict[str, Optional[StatusPage]] = {"page": None}

    def page_shows_api() -> bool:
        latest = seen["page"] = load_page(chromium, sidecar)
        return (str(api_port), api_id) in latest.services

    wait_until(page_shows_api, timeout=120, interval=0.5, message=f"{api_id} on the page")
    latest = seen["page"]
    assert latest is not None
    assert (str(web_port), web_id) in latest.services
    assert latest.summary.get("services") == "2", latest.summary

    # the picture worth keeping: HAProxy's own view, and one task out with its reason
    wait_until(lambda: haproxy_sees_all_up(sidecar, web_port), timeout=30, message="web up")
    wait_until(lambda: haproxy_sees_all_up(sidecar, api_port), timeout=30, message="api up")
    sick = sorted(t["id"] for t in marathon.emulator.tasks(api_id, states=["TASK_RUNNING"]))[0]
    marathon.emulator.set_task_health(sick, False)
    try:
        out_row: dict[str, TaskRow] = {}

        def sick_row_is_out() -> bool:
            for row in load_page(chromium, sidecar).tasks:
                if row.task_id == sick and row.row_class == "out":
                    out_row["row"] = row
            return "row" in out_row

        wait_until(sick_row_is_out, timeout=120, interval=0.5, message=f"{sick} shown out")
        row = out_row["row"]
        assert row.health == "unhealthy", row
        assert row.verdict.startswith("out") and "health" in row.verdict, row.verdict
        chromium.screenshot(f"{sidecar.status_url}/", SCREENSHOT, SCREEN_WIDTH, SCREEN_HEIGHT)
    finally:
        marathon.emulator.set_task_health(sick, True)
    data = SCREENSHOT.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert png_size(data) == (SCREEN_WIDTH, SCREEN_HEIGHT)
    assert len(data) > 20_000, f"screenshot is only {len(data)} bytes: a blank page?"


def page_fetches(caplog: pytest.LogCaptureFixture) -> int:
    """How many ``GET /`` the status server answered (it logs each request at debug level)."""
    return sum(
        1
        for record in caplog.records
        if record.name == "sidecar.status"
        and str(getattr(record, "request", "")).startswith("GET / ")
    )


def test_an_open_page_refreshes_itself_and_fetches_a_service_deployed_meanwhile(
    chromium: Chromium,
    marathon: EmulatedMarathon,
    sidecar: SidecarNode,
    web: tuple[str, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sidecar.status")
    url = f"{sidecar.status_url}/"
    with chromium.open_page(url) as browser:
        wait_until(lambda: page_fetches(caplog) >= 1, timeout=60, message="first page load")
        (port,) = free_ports(1)
        marathon.deploy(echo_app("/shop/admin", port, 1))
        wait_until(lambda: port in sidecar.served_ports(), timeout=60, message="admin served")
        served_before = page_fetches(caplog)
        # nobody but the open browser asks for "/" here: these are its own refreshes, each
        # rendered after /shop/admin was on the board
        wait_until(
            lambda: page_fetches(caplog) >= served_before + 2,
            timeout=60,
            interval=0.2,
            message="the open page fetched itself twice more",
        )
        assert browser.poll() is None, "chromium exited instead of staying on the page"
    status, body, _ = http_get(url)
    assert status == 200 and "/shop/admin" in body and str(port) in body


def test_machine_endpoints_answer_with_their_key_facts(
    sidecar: SidecarNode, web: tuple[str, int]
) -> None:
    web_id, web_port = web
    base = sidecar.status_url

    for probe in ("/health", "/livez", "/readyz"):
        status, body, headers = http_get(f"{base}{probe}")
        assert (status, headers["Content-Type"]) == (200, "application/json"), (probe, body)
        assert json.loads(body)["status"] == "ok", (probe, body)

    status, body, headers = http_get(f"{base}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), body[:200]
    assert "marathon_sidecar_haproxy_up 1.0" in body.splitlines()

    status, body, headers = http_get(f"{base}/config")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert f"127.0.0.1:{web_port}" in body, body[:2000]

    status, body, headers = http_get(f"{base}/services")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    services = json.loads(body)["services"]
    web_entry = next(s for s in services if s["service_port"] == web_port)
    assert web_entry["app_id"] == web_id
    assert len(web_entry["endpoints"]) == 2

    status, body, headers = http_get(f"{base}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert web_id in body

    status, body, headers = http_get(f"{base}/static/status.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css")

    assert http_get(f"{base}/no-such-page")[0] == 404
