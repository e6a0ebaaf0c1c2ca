"""Traffic from HAProxy's counters (pure): parsing ``show stat``, intervals, history, selection,
and the status page's traffic cells and sparklines.

``data/show_stat_2.6.csv`` is a real ``show stat -1 6 -1`` answer of Debian's HAProxy 2.6.12: an
http backend (``be_web_10080``) got 5 requests for ``/`` and 2 for missing paths, one of its two
servers (``web_2``) pointing at a closed port (3 connection errors, 3 answers 503 from HAProxy);
a tcp backend (``be_db_10090``) took 2 connections.
"""

from __future__ import annotations

import re
from pathlib import Path

from sidecar.haproxy_model import BackendSpec
from sidecar.status import HealthReport
from sidecar.status_page import (
    Listing,
    PageQuery,
    parse_page_query,
    render_page,
    sparkline_svg,
    traffic_entry,
    with_traffic,
)
from sidecar.traffic import (
    History,
    Interval,
    ObjectTraffic,
    StatRow,
    TrafficSnapshot,
    busiest,
    interval_counts,
    matches,
    observe,
    parse_stat,
    rates,
)

CAPTURE = Path(__file__).resolve().parent / "data" / "show_stat_2.6.csv"


def row(proxy: str = "be", server: str = "BACKEND", mode: str = "http", **counts: int) -> StatRow:
    values = {
        "sessions": 0,
        "queue": 0,
        "connections": 0,
        "requests": 0,
        "http_4xx": 0,
        "http_5xx": 0,
        "conn_errors": 0,
    }
    values.update(counts)
    return StatRow(proxy, server, mode, status="UP", **values)


def test_a_real_show_stat_answer_is_read_by_column_name() -> None:
    rows = parse_stat(CAPTURE.read_text())
    assert set(rows) == {
        ("be_web_10080", "web_1"),
        ("be_web_10080", "web_2"),
        ("be_web_10080", "BACKEND"),
        ("be_db_10090", "db_1"),
        ("be_db_10090", "BACKEND"),
    }
    web = rows[("be_web_10080", "BACKEND")]
    assert (web.mode, web.requests, web.http_4xx, web.http_5xx, web.conn_errors) == (
        "http",
        7,
        1,
        3,
        3,
    )
    assert web.traffic == 7  # http: requests
    assert rows[("be_web_10080", "web_2")].conn_errors == 3
    db = rows[("be_db_10090", "BACKEND")]
    assert (db.mode, db.connections, db.requests, db.traffic) == ("tcp", 2, 0, 2)


def test_an_error_answer_or_nothing_reads_as_no_rows() -> None:
    assert parse_stat("No such proxy.") == {}
    assert parse_stat("") == {}


def test_an_interval_is_the_difference_of_two_polls() -> None:
    before = row(requests=10, http_4xx=1, http_5xx=2, conn_errors=0)
    after = row(requests=25, http_4xx=4, http_5xx=2, conn_errors=1)
    assert interval_counts(before, after) == Interval(15, 3, 0, 1)


def test_a_new_object_or_a_counter_that_went_down_counts_from_its_start() -> None:
    assert interval_counts(None, row(requests=7, http_5xx=1)) == Interval(7, 0, 1, 0)
    readded = interval_counts(row(requests=500), row(requests=3))  # deleted and added again
    assert readded.traffic == 3


def test_observe_gives_rates_except_at_the_first_poll() -> None:
    key = ("be", "BACKEND")
    first = observe({key: row(requests=100)}, None, 0.0)[key]
    assert first.interval is None and first.rate is None
    later = observe({key: row(requests=130)}, {key: row(requests=100)}, 3.0)[key]
    assert later.rate == 10.0
    new_worker = observe({key: row(requests=6)}, {}, 3.0)[key]  # all counted since its start
    assert new_worker.rate == 2.0
    tcp = observe({key: row(mode="tcp", connections=9)}, {key: row(mode="tcp", connections=3)}, 2.0)
    assert tcp[key].rate == 3.0


def test_history_keeps_the_last_polls_with_gaps_for_polls_that_skipped_an_object() -> None:
    history = History(points=4)
    history.start_poll(0.0)
    history.record("a", 5)
    assert history.series("a") == [(0.0, None), (0.0, None), (0.0, None), (0.0, 5)]
    for count in (6, 7):
        history.start_poll(2.0)
        history.record("a", count)
    history.start_poll(2.0)  # "a" not polled
    history.start_poll(4.0)
    history.record("a", 8)
    assert history.series("a") == [(2.0, 6), (2.0, 7), (2.0, None), (4.0, 8)]
    assert rates(history.series("a")) == [3.0, 3.5, None, 2.0]
    assert history.series("unknown") == []


def test_history_forgets_objects_not_seen_within_the_window() -> None:
    history = History(points=3)
    history.start_poll(1.0)
    history.record("gone", 1)
    history.record("stays", 1)
    for _ in range(3):
        history.start_poll(1.0)
        history.record("stays", 2)
        history.forget_stale()
    assert history.series("gone") == [] and len(history) == 1


def backend(name: str, port: int, app_id: str) -> BackendSpec:
    return BackendSpec(name, app_id, port, "http", "roundrobin", ())


def seen(rate: float, sessions: int = 0) -> ObjectTraffic:
    return ObjectTraffic(
        row(requests=int(rate * 10), sessions=sessions), Interval(int(rate * 10), 0, 0, 0), 10.0
    )


def test_the_page_shows_the_busiest_services_in_port_order() -> None:
    backends = [backend(f"be_{p}", p, f"/app-{p}") for p in range(10000, 10010)]
    traffic = {"be_10003": seen(5.0), "be_10007": seen(9.0), "be_10001": seen(0.0, sessions=4)}
    chosen = busiest(backends, traffic, 3)
    assert [b.name for b in chosen] == ["be_10001", "be_10003", "be_10007"]
    assert [b.name for b in busiest(backends, {}, 2)] == ["be_10000", "be_10001"]


def test_a_search_matches_part_of_the_app_id_or_backend_or_the_start_of_a_port() -> None:
    shop = backend("be_shop_web_10080", 10080, "/shop/web")
    assert matches(shop, "SHOP") and matches(shop, "web_1") and matches(shop, "1008")
    assert not matches(shop, "0080") and not matches(shop, "api")
    assert matches(shop, "  ")


def test_page_query_parameters_are_clamped() -> None:
    assert parse_page_query("q=shop&top=20") == PageQuery("shop", 20)
    assert parse_page_query("top=100000").top == 500
    assert parse_page_query("top=0").top == 1
    assert parse_page_query("top=abc") == PageQuery("", 50)


def test_a_sparkline_scales_to_its_peak_and_leaves_gaps() -> None:
    svg = sparkline_svg([None, 1.0, 2.0, None, 4.0], "7 requests in the last 12 s")
    assert svg.startswith("<svg") and "<title>7 requests in the last 12 s</title>" in svg
    polylines = re.findall(r'<polyline points="([^"]+)"/>', svg)
    assert len(polylines) == 2  # a gap splits the line
    top_y = min(float(p.split(",")[1]) for line in polylines for p in line.split())
    assert top_y == 1.0  # the peak touches the top (1 px margin)
    assert "<polyline" not in sparkline_svg([None, None], "nothing")


def test_traffic_cells_show_what_the_counters_say() -> None:
    current = row(requests=40, http_4xx=3, http_5xx=1, sessions=2, queue=1)
    observed = ObjectTraffic(current, Interval(12, 1, 0, 0), 3.0)
    traffic = traffic_entry(observed, [(3.0, 20), (3.0, None), (3.0, 12)])
    assert traffic is not None
    assert traffic["rate"] == 4.0 and traffic["window"] == 32 and traffic["new_errors"]
    services = [{"backend": "be", "service_port": 10080, "app_id": "/web", "mode": "http",
                 "servers_in": 0, "endpoints": []}]  # fmt: skip
    snapshot = TrafficSnapshot(
        taken_at=1.0, taken_at_wall=0.0, interval=3.0, backends={"be": observed}
    )
    shown = with_traffic(services, snapshot, {"be": [(3.0, 20), (3.0, None), (3.0, 12)]})
    page = render_page(
        HealthReport("ok", (), 1.0), {}, Listing(shown, total=1, matched=1, traffic=snapshot), []
    )
    assert '<td class="sessions">2</td>' in page and '<td class="rate">4.0 req/s</td>' in page
    assert '<td class="errors new"><span class="e4xx" title="4xx answers">3</span>' in page
    assert '<span class="e5xx" title="5xx answers">1</span>' in page
    assert '<td class="queue">1</td>' in page
    assert "32 requests in the last 9 s" in page
