"""/v2/events fidelity: Accept check, headers, CRLF framing, heartbeats, filters, payload shapes."""

from __future__ import annotations

import re
import socket
from typing import Any, Callable

import requests

from marathon_bridge.testing import MarathonEmulator
from marathon_bridge.testing.events import EventBus
from testkit import wait_until
from testkit.examples import example, example_bytes, shape_differences
from testkit.sse import SSEReader

FRAME = re.compile(rb"event: ([a-z_]+)\r\ndata: (\{[^\r\n]*\})\r\n\r\n")
OpenSSE = Callable[..., SSEReader]


def run_app(emu: MarathonEmulator, app: dict[str, Any]) -> None:
    assert requests.post(emu.url + "/v2/apps", json=app, timeout=10).status_code == 201
    wait_until(lambda: not emu.deployments(), message="deployment done")


def test_wrong_accept_is_405_html(emulator: MarathonEmulator) -> None:
    for accept in ("", "*/*", "text/event-stream, */*", "text/event-stream;charset=utf-8"):
        headers = {"Accept": accept} if accept else {"Accept": ""}
        response = requests.get(emulator.url + "/v2/events", headers=headers, timeout=10)
        assert response.status_code == 405, accept
        assert response.headers["Content-Type"].startswith("text/html")
        assert "HTTP method GET is not supported by this URL" in response.text


def test_stream_headers_and_own_attach_event_first(
    emulator: MarathonEmulator, sse: OpenSSE
) -> None:
    reader = sse(emulator.url)
    attached = reader.wait_event("event_stream_attached")
    assert reader.status() == 200
    headers = reader.headers()
    assert headers["content-type"].lower() == "text/event-stream;charset=utf-8"
    assert headers["connection"] == "close"
    assert "transfer-encoding" not in headers and "content-length" not in headers
    assert headers["x-marathon-leader"] == emulator.url
    assert reader.event_types()[0] == "event_stream_attached"
    assert attached["remoteAddress"] == "127.0.0.1"
    expected = example("derived-from-code/event.event_stream_attached.json")
    assert list(attached) == list(expected)


def test_frames_are_crlf_like_the_recorded_bytes(emulator: MarathonEmulator, sse: OpenSSE) -> None:
    recorded = example_bytes("derived-from-code/sse.wire-bytes.crlf.txt")
    recorded_frames = FRAME.findall(recorded)
    assert [t for t, _ in recorded_frames] == [b"event_stream_attached", b"status_update_event"]
    reader = sse(emulator.url)
    run_app(emulator, {"id": "/foo", "cmd": "sleep 100"})
    reader.wait_event("status_update_event", taskStatus="TASK_RUNNING")
    _, body = reader.head_and_body()
    frames = FRAME.findall(body)
    assert len(frames) == len(reader.events())
    assert set(FRAME.sub(b"", body).split(b"\r\n")) <= {b""}  # frames and heartbeats only
    assert b"\n" not in body.replace(b"\r\n", b"")  # no bare LF anywhere
    running = [
        data for kind, data in frames if kind == b"status_update_event" and b"TASK_RUNNING" in data
    ]
    recorded_running = recorded_frames[1][1]
    assert running and b" " not in running[0].replace(b"sleep 100", b"")  # compact JSON
    assert running[0].count(b'":') == recorded_running.count(b'":')  # same number of keys


def test_heartbeats_are_bare_crlf() -> None:
    with MarathonEmulator(heartbeat_interval=0.1) as emu:
        reader = SSEReader(emu.url)
        try:
            reader.wait_event("event_stream_attached")
            wait_until(lambda: reader.head_and_body()[1].count(b"\r\n\r\n\r\n\r\n") >= 1)
            _, body = reader.head_and_body()
            after_attach = body.split(b"\r\n\r\n", 1)[1]
            assert after_attach and set(after_attach.split(b"\r\n")) == {b""}
        finally:
            reader.close()


def test_event_type_filters_are_exact(emulator: MarathonEmulator, sse: OpenSSE) -> None:
    only_status = sse(emulator.url, "event_type=status_update_event")
    two = sse(emulator.url, "event_type=deployment_success&event_type=event_stream_attached")
    prefix = sse(emulator.url, "event_type=status")
    wait_until(lambda: emulator.event_stream_count() == 3)
    run_app(emulator, {"id": "/foo", "cmd": "sleep 100"})
    only_status.wait_event("status_update_event", taskStatus="TASK_RUNNING")
    two.wait_event("deployment_success")
    assert set(only_status.event_types()) == {"status_update_event"}
    assert set(two.event_types()) == {"event_stream_attached", "deployment_success"}
    assert prefix.event_types() == []


def test_event_payloads_match_the_derived_examples(
    emulator: MarathonEmulator, sse: OpenSSE
) -> None:
    reader = sse(emulator.url)
    reader.wait_event("event_stream_attached")
    app = {"id": "/foo", "cmd": "sleep 100", "healthChecks": [{"protocol": "TCP"}]}
    run_app(emulator, app)
    requests.put(emulator.url + "/v2/apps/foo", json={"cmd": "sleep 200"}, timeout=10)
    wait_until(lambda: not emulator.deployments())
    requests.delete(emulator.url + "/v2/apps/foo", timeout=10)
    reader.wait_event("app_terminated_event")
    other = sse(emulator.url)
    other.wait_event("event_stream_attached")
    other.close()
    reader.wait_event("event_stream_detached")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for kind, payload in reader.events():
        by_type.setdefault(kind, []).append(payload)
        assert payload["eventType"] == kind
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["timestamp"])
    templates = {
        "status_update_event": "event.status_update_event.v1.8plus.json",
        "instance_changed_event": "event.instance_changed_event.v1.8plus.json",
        "health_status_changed_event": "event.health_status_changed_event.json",
        "instance_health_changed_event": "event.instance_health_changed_event.json",
        "deployment_info": "event.deployment_info.light.json",
        "deployment_step_success": "event.deployment_step_success.light.json",
        "deployment_success": "event.deployment_success.light.json",
        "group_change_success": "event.group_change_success.json",
        "app_terminated_event": "event.app_terminated_event.json",
        "event_stream_attached": "event.event_stream_attached.json",
        "event_stream_detached": "event.event_stream_detached.json",
    }
    for kind, name in templates.items():
        expected = example("derived-from-code/" + name)
        assert kind in by_type, kind
        payload = by_type[kind][-1]
        assert list(payload) == list(expected), kind
        assert shape_differences(expected, payload) == [], kind
    posts = by_type["api_post_event"]
    assert [p["uri"] for p in posts] == ["/v2/apps", "/v2/apps/foo"]
    put_event = posts[1]
    expected_post = example("derived-from-code/event.api_post_event.v1.10.json")
    assert list(put_event) == list(expected_post)
    definition = put_event["appDefinition"]
    assert definition["portDefinitions"][0]["port"] == 10000 and "versionInfo" in definition
    assert posts[0]["appDefinition"]["portDefinitions"][0]["port"] == 0
    assert "versionInfo" not in posts[0]["appDefinition"]
    assert b'"cpus":1,' in reader.data()  # play-json numbers in events


def test_deployment_failed_event_on_force(emulator_slow: MarathonEmulator, sse: OpenSSE) -> None:
    reader = sse(emulator_slow.url, "event_type=deployment_failed")
    wait_until(lambda: emulator_slow.event_stream_count() == 1)
    requests.post(emulator_slow.url + "/v2/apps", json={"id": "/foo", "cmd": "sleep 1"}, timeout=10)
    requests.put(emulator_slow.url + "/v2/apps/foo?force=true", json={"instances": 2}, timeout=10)
    failed = reader.wait_event("deployment_failed")
    expected = example("derived-from-code/event.deployment_failed.light.json")
    assert list(failed) == list(expected)
    assert shape_differences(expected, failed) == []


def test_close_event_streams_ends_every_stream(emulator: MarathonEmulator, sse: OpenSSE) -> None:
    readers = [sse(emulator.url) for _ in range(3)]
    wait_until(lambda: emulator.event_stream_count() == 3)
    assert emulator.close_event_streams() == 3
    for reader in readers:
        assert reader.closed.wait(10)
    wait_until(lambda: emulator.event_stream_count() == 0)
    again = sse(emulator.url)
    again.wait_event("event_stream_attached")


def test_slow_consumer_is_closed() -> None:
    bus = EventBus(max_outstanding=3)
    sub = bus.subscribe("10.0.0.1", ())  # its own attach event takes one slot
    for _ in range(3):
        bus.publish("status_update_event", {"eventType": "status_update_event", "timestamp": "t"})
    assert sub.closed.is_set() and sub.reason == "slow consumer"


def test_stream_closes_when_emulator_stops() -> None:
    emu = MarathonEmulator().start()
    reader = SSEReader(emu.url)
    try:
        reader.wait_event("event_stream_attached")
        emu.stop()
        assert reader.closed.wait(10)
    finally:
        reader.close()
        emu.stop()


def test_a_stalled_client_is_cut_off_as_a_slow_consumer() -> None:
    with MarathonEmulator(max_outstanding=5) as emu:
        host, port = emu.url.split("://")[1].rsplit(":", 1)
        stalled = socket.create_connection((host, int(port)), timeout=10)  # never reads a byte
        stalled.sendall(b"GET /v2/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        try:
            wait_until(lambda: emu.event_stream_count() == 1)
            big = {"note": "x" * 200_000}
            posted = 0
            while emu.event_stream_count() and posted < 300:
                app = {"id": f"/big{posted}", "cmd": "sleep 1", "instances": 0, "labels": big}
                requests.post(emu.url + "/v2/apps", json=app, timeout=10)
                posted += 1
            wait_until(lambda: emu.event_stream_count() == 0, message="stalled stream closed")
        finally:
            stalled.close()
