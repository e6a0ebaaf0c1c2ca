"""The client against real HTTP servers on 127.0.0.1: failover, auth headers, POST safety."""

from __future__ import annotations

import json
import warnings
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable

import pytest
from urllib3.exceptions import InsecureRequestWarning

from marathon_bridge.client import BasicAuth, DeploymentRef, MarathonClient, TokenAuth
from marathon_bridge.errors import NotFound, Unavailable
from testkit import free_port

APPS = {"apps": [{"id": "/web", "instances": 1}]}


def marathon_like(reply_json: Callable[..., None]) -> Callable[[BaseHTTPRequestHandler, Any], None]:
    """A tiny stand-in for Marathon: a few canned answers."""

    def respond(handler: BaseHTTPRequestHandler, recorded: Any) -> None:
        if recorded.path.startswith("/v2/apps/missing"):
            reply_json(handler, 404, b'{"message":"App \'/missing\' does not exist"}')
        elif recorded.method == "POST" and recorded.path == "/v2/apps":
            app = json.loads(recorded.body)
            reply_json(handler, 201, json.dumps(app).encode(), Marathon_Deployment_Id="dep-1")
        elif recorded.path.startswith("/v2/apps"):
            reply_json(handler, 200, json.dumps(APPS).encode())
        else:
            reply_json(handler, 200, b'{"leader":"127.0.0.1:8080"}')

    return respond


def unavailable(reply_json: Callable[..., None]) -> Callable[[BaseHTTPRequestHandler, Any], None]:
    def respond(handler: BaseHTTPRequestHandler, recorded: Any) -> None:
        reply_json(handler, 503, b"<html><body>down</body></html>", content_type="text/html")

    return respond


def test_two_dead_urls_then_a_good_one(loopback: Any, reply_json: Any) -> None:
    busy = loopback(unavailable(reply_json))
    good = loopback(marathon_like(reply_json))
    dead = f"http://127.0.0.1:{free_port()}"
    client = MarathonClient([dead, busy.url, good.url], retries=0, timeout=(2.0, 10.0))
    with client:
        assert client.list_apps() == APPS["apps"]
        assert client.urls[0] == good.url
        with pytest.raises(NotFound) as info:
            client.get_app("missing")
        assert info.value.message == "App '/missing' does not exist"
        app, ref = client.create_app({"id": "/new", "cmd": "sleep 1"})
    assert app == {"id": "/new", "cmd": "sleep 1"}
    assert ref == DeploymentRef("dep-1", "")
    assert len(busy.received) == 1  # only the first call went past it; then the good URL led
    assert [r.method for r in good.received] == ["GET", "GET", "POST"]


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (BasicAuth("marathon", "p4ss"), "Basic bWFyYXRob246cDRzcw=="),
        (TokenAuth("eyJhbGciOi.x.y"), "token=eyJhbGciOi.x.y"),
    ],
)
def test_auth_headers_reach_the_server(
    loopback: Any, reply_json: Any, auth: Any, expected: str
) -> None:
    server = loopback(marathon_like(reply_json))
    with MarathonClient(server.url, auth=auth) as client:
        client.get_leader()
        client.create_app({"id": "/a"})
    assert [r.headers.get("Authorization") for r in server.received] == [expected, expected]


def test_userinfo_in_the_url_is_sent_as_basic_auth(loopback: Any, reply_json: Any) -> None:
    server = loopback(marathon_like(reply_json))
    url = server.url.replace("http://", "http://user:pw@")
    with MarathonClient(url) as client:
        client.get_leader()
        assert "pw" not in repr(client)
    assert server.received[0].headers["Authorization"] == "Basic dXNlcjpwdw=="


def test_a_post_answered_503_after_the_body_arrived_is_not_sent_again(
    loopback: Any, reply_json: Any
) -> None:
    first = loopback(unavailable(reply_json))
    second = loopback(marathon_like(reply_json))
    client = MarathonClient([first.url, second.url], retries=3, backoff=0.0)
    with client, pytest.raises(Unavailable) as info:
        client.create_app({"id": "/once"})
    assert info.value.status == 503
    assert [(r.method, json.loads(r.body)) for r in first.received] == [("POST", {"id": "/once"})]
    assert second.received == []


def test_a_get_answered_503_everywhere_is_retried_then_fails(
    loopback: Any, reply_json: Any
) -> None:
    server = loopback(unavailable(reply_json))
    with MarathonClient([server.url], retries=2, backoff=0.0) as client, pytest.raises(Unavailable):
        client.list_tasks()
    assert len(server.received) == 3


def test_a_refused_post_goes_to_the_next_url(loopback: Any, reply_json: Any) -> None:
    good = loopback(marathon_like(reply_json))
    client = MarathonClient([f"http://127.0.0.1:{free_port()}", good.url], retries=0)
    with client:
        _, ref = client.create_app({"id": "/x"})
    assert ref.deployment_id == "dep-1"
    assert len(good.received) == 1


def test_tls_verifies_against_a_ca_bundle_by_default_and_can_opt_out(
    loopback: Any, reply_json: Any, tls_ca_bundle: str
) -> None:
    server = loopback(marathon_like(reply_json), tls=True)
    assert server.url.startswith("https://127.0.0.1:")
    with MarathonClient(server.url, verify=tls_ca_bundle) as client:
        assert client.get_leader() == "127.0.0.1:8080"
    with MarathonClient(server.url, retries=0) as client, pytest.raises(Unavailable) as info:
        client.get_leader()
    assert "TLS error" in info.value.message
    assert "certificate verify failed" in info.value.message
    with MarathonClient(server.url, verify=False) as client, warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        assert client.get_leader() == "127.0.0.1:8080"
    assert len(server.received) == 2
