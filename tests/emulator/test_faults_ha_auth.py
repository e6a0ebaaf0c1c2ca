"""Fault injection, the standby (proxy and 302), and basic/token authentication."""

from __future__ import annotations

import base64

import pytest
import requests

from marathon_bridge.testing import MarathonEmulator
from testkit import wait_until
from testkit.examples import example
from testkit.sse import SSEReader


def test_status_fault_fires_the_given_number_of_times(emulator: MarathonEmulator) -> None:
    emulator.faults.add("/v2/apps", status=503, times=2)
    codes = [requests.get(emulator.url + "/v2/apps", timeout=10).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert emulator.faults.active() == []


def test_faults_match_path_glob_and_method(emulator: MarathonEmulator) -> None:
    fault = emulator.faults.add("/v2/apps/*", method="POST", status=500)
    assert requests.get(emulator.url + "/v2/apps/x", timeout=10).status_code == 404
    assert requests.post(emulator.url + "/v2/apps/x/restart", timeout=10).status_code == 500
    assert fault.hits == 1
    emulator.faults.clear()
    assert requests.post(emulator.url + "/v2/apps/x/restart", timeout=10).status_code == 404


def test_garbage_and_custom_json_bodies(emulator: MarathonEmulator) -> None:
    emulator.faults.add("/v2/apps", body=b"<<garbage>>", times=1)
    garbage = requests.get(emulator.url + "/v2/apps", timeout=10)
    assert garbage.status_code == 200
    with pytest.raises(ValueError):
        garbage.json()
    emulator.faults.respond_json("/v2/apps", {"apps": []}, times=1)
    requests.post(emulator.url + "/v2/apps", json={"id": "/a", "cmd": "sleep 1"}, timeout=10)
    assert requests.get(emulator.url + "/v2/apps", timeout=10).json() == {"apps": []}
    assert len(requests.get(emulator.url + "/v2/apps", timeout=10).json()["apps"]) == 1


def test_truncated_and_dropped_answers(emulator: MarathonEmulator) -> None:
    emulator.faults.add("/v2/info", truncate=True, times=1)
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(emulator.url + "/v2/info", timeout=10).json()
    emulator.faults.add("/v2/info", drop=True, times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(emulator.url + "/v2/info", timeout=10)
    assert requests.get(emulator.url + "/v2/info", timeout=10).status_code == 200


def test_delay_fault_still_answers(emulator: MarathonEmulator) -> None:
    fault = emulator.faults.add("/ping", delay=0.2, times=1)
    assert requests.get(emulator.url + "/ping", timeout=10).text == "pong"
    assert fault.hits == 1


def test_standby_proxies_rest_and_redirects_events(emulator: MarathonEmulator) -> None:
    standby = emulator.standby()
    created = requests.post(
        standby.url + "/v2/apps", json={"id": "/a", "cmd": "sleep 1"}, timeout=10
    )
    assert created.status_code == 201
    assert created.headers["X-Marathon-Via"] == "1.1 " + standby.url.split("://")[1]
    assert created.headers["X-Marathon-Leader"] == emulator.url
    assert created.headers["Marathon-Deployment-Id"]
    assert [a["id"] for a in emulator.apps()] == ["/a"]
    missing = requests.get(standby.url + "/v2/apps/nope", timeout=10)
    assert missing.status_code == 404 and missing.json() == {
        "message": "App '/nope' does not exist"
    }
    leader = requests.get(standby.url + "/v2/leader", timeout=10).json()
    assert leader == {"leader": emulator.url.split("://")[1]}
    proxied = emulator.requests[-1]
    assert proxied.headers["X-Marathon-Via"].startswith("1.1 ")
    redirect = requests.get(
        standby.url + "/v2/events?event_type=status_update_event",
        headers={"Accept": "text/event-stream"},
        allow_redirects=False,
        timeout=10,
    )
    assert redirect.status_code == 302
    assert (
        redirect.headers["Location"] == emulator.url + "/v2/events?event_type=status_update_event"
    )


def test_standby_without_leader_is_502() -> None:
    with MarathonEmulator(leader=False) as orphan:  # no leader known
        response = requests.get(orphan.url + "/v2/apps", timeout=10)
        assert response.status_code == 502
        assert "Could not determine the current leader" in response.text
        events = requests.get(
            orphan.url + "/v2/events", headers={"Accept": "text/event-stream"}, timeout=10
        )
        assert events.status_code == 502
    dead = MarathonEmulator().start()
    dead_url = dead.url
    dead.stop()
    with MarathonEmulator(leader=False, leader_url=lambda: dead_url) as standby:
        response = requests.get(standby.url + "/v2/apps", timeout=10)
        assert response.status_code == 502
        assert "Connection to leader refused." in response.text


def test_basic_auth_401_page_everywhere() -> None:
    with MarathonEmulator(auth=("alice", "s3cret")) as emu:
        for path in ("/v2/apps", "/ping", "/v2/events"):
            response = requests.get(
                emu.url + path, headers={"Accept": "text/event-stream"}, timeout=10
            )
            assert response.status_code == 401, path
            assert response.headers["WWW-Authenticate"] == 'basic realm="Mesosphere"'
            assert response.headers["Content-Type"].startswith("text/html")
            assert "HTTP ERROR 401" in response.text
        wrong = requests.get(emu.url + "/v2/apps", auth=("alice", "nope"), timeout=10)
        assert wrong.status_code == 401
        ok = requests.get(emu.url + "/v2/apps", auth=("alice", "s3cret"), timeout=10)
        assert ok.status_code == 200
        token = base64.b64encode(b"alice:s3cret").decode()
        reader = SSEReader(emu.url, headers=f"Authorization: Basic {token}\r\n")
        try:
            reader.wait_event("event_stream_attached")
        finally:
            reader.close()
        standby = emu.standby()
        assert requests.get(standby.url + "/v2/apps", timeout=10).status_code == 401
        assert requests.get(standby.url + "/v2/apps", auth=("alice", "s3cret"), timeout=10).ok
        assert all("authorization" not in {k.lower() for k in r.headers} for r in emu.requests)


def test_token_auth_json_bodies() -> None:
    with MarathonEmulator(auth="t0ken") as emu:
        missing = requests.get(emu.url + "/v2/apps", timeout=10)
        assert missing.status_code == 401
        assert missing.json() == example("error-bodies/error.401.basic-auth.json")
        wrong = requests.get(
            emu.url + "/v2/apps", headers={"Authorization": "token=bad"}, timeout=10
        )
        assert wrong.status_code == 403
        assert wrong.json() == example("error-bodies/error.403.not-authorized.json")
        ok = requests.get(
            emu.url + "/v2/apps", headers={"Authorization": "token=t0ken"}, timeout=10
        )
        assert ok.status_code == 200


def test_several_emulators_are_independent() -> None:
    with MarathonEmulator() as one, MarathonEmulator() as two:
        requests.post(one.url + "/v2/apps", json={"id": "/a", "cmd": "sleep 1"}, timeout=10)
        wait_until(lambda: one.apps())
        assert two.apps() == []
        assert one.url != two.url
