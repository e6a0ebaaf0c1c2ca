"""The traffic poller against the real HAProxy 2.6 with real requests: the counts it derives from
``show stat`` equal the requests sent, across a reload (a new worker restarts the counters), and
it reads the servers of the busiest backends and of the ones a page asked for."""

from __future__ import annotations

from typing import Any

from sidecar.haproxy.process import HAProxyProcess
from sidecar.haproxy.runtime import RuntimeAPI, parse_csv_stat
from sidecar.traffic_poller import TrafficPoller
from testkit import free_port, wait_until


def start_two_services(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> tuple[int, int]:
    web, api = free_port(), free_port()
    model = kit.model_of(
        kit.service("/web", web, {"w1": backends("w1"), "w2": backends("w2")}),
        kit.service("/api", api, {"a1": backends("a1")}),
    )
    hapaths.config.write_text(kit.render(model))
    assert haproxy_process.ensure_started(timeout=30) is True
    return web, api


def send(kit: Any, port: int, count: int) -> None:
    """``count`` requests, then wait until HAProxy ended their streams: it counts a request
    when its stream ends, which may be just after the client read the answer."""
    for _ in range(count):
        assert kit.get(port)[0] == 200
    admin = RuntimeAPI(str(kit.paths.admin_socket))

    def streams_ended() -> bool:
        (row,) = parse_csv_stat(admin.execute(f"show stat be_{port} 2 -1"))
        return row["scur"] == "0"

    wait_until(streams_ended, message="HAProxy ended the streams")


def test_counts_equal_the_requests_sent_across_a_reload(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    web, api = start_two_services(haproxy_process, hapaths, kit, backends)
    poller = TrafficPoller(RuntimeAPI(str(hapaths.admin_socket)), server_backends=1)
    send(kit, web, 3)  # before the first poll: no interval to count them in
    first = poller.poll()
    assert first.error == "" and first.backends[f"be_{web}"].rate is None
    assert first.backends[f"be_{web}"].row.requests == 3

    send(kit, web, 10)
    send(kit, api, 2)
    second = poller.poll()
    seen = second.backends[f"be_{web}"]
    assert seen.interval is not None and seen.interval.traffic == 10
    assert seen.rate == 10 / second.interval
    api_seen = second.backends[f"be_{api}"].interval
    assert api_seen is not None and api_seen.traffic == 2
    # the busiest backend's servers were read; they share its requests
    servers = {k: v for k, v in second.servers.items() if k[0] == f"be_{web}"}
    assert set(servers) == {(f"be_{web}", "w1"), (f"be_{web}", "w2")}
    assert sum(v.row.requests for v in servers.values()) == 13
    assert not any(k[0] == f"be_{api}" for k in second.servers)

    haproxy_process.reload(timeout=30)  # a new worker: counters start again at 0
    send(kit, web, 4)
    third = poller.poll()
    after = third.backends[f"be_{web}"]
    assert after.row.requests == 4 and after.interval is not None and after.interval.traffic == 4

    series = poller.history([f"be_{web}"])[f"be_{web}"]
    assert [n for _, n in series if n is not None] == [10, 4]


def test_servers_of_a_backend_a_page_shows_are_read_too(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    _, api = start_two_services(haproxy_process, hapaths, kit, backends)
    poller = TrafficPoller(RuntimeAPI(str(hapaths.admin_socket)), server_backends=0)
    assert poller.poll().servers == {}
    poller.want_servers([f"be_{api}", "be_gone"])
    send(kit, api, 5)
    polled = poller.poll()
    assert set(polled.servers) == {(f"be_{api}", "a1")}
    assert polled.servers[(f"be_{api}", "a1")].interval is None  # first read of this server
    send(kit, api, 5)
    again = poller.poll().servers[(f"be_{api}", "a1")]
    assert again.interval is not None and again.interval.traffic == 5


def test_a_poll_without_haproxy_keeps_the_last_figures_and_says_why(
    haproxy_process: HAProxyProcess, hapaths: Any, kit: Any, backends: Any
) -> None:
    start_two_services(haproxy_process, hapaths, kit, backends)
    poller = TrafficPoller(RuntimeAPI(str(hapaths.admin_socket)))
    good = poller.poll()
    haproxy_process.stop(timeout=10)
    failed = poller.poll()
    assert failed.error and failed.backends == good.backends
    assert failed.taken_at == good.taken_at
