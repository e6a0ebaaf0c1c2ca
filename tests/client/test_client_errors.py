"""Unit tests of the client's error paths, retries and failover, on a scripted transport."""

from __future__ import annotations

import json
import logging
from http.client import RemoteDisconnected
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from marathon_bridge.client import BasicAuth, DeploymentRef, MarathonClient, TokenAuth
from marathon_bridge.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    MarathonError,
    NotFound,
    ServerError,
    Unauthorized,
    Unavailable,
)

A, B, C = "http://a.test:8080", "http://b.test:8080", "http://c.test:8080"
JETTY_401 = (
    b'<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html;charset=ISO-8859-1"/>'
    b"\n<title>Error 401 Unauthorized</title>\n</head>\n<body><h2>HTTP ERROR 401</h2>\n"
    b"<p>Problem accessing /v2/apps. Reason:\n<pre>    Unauthorized</pre></p></body>\n</html>\n"
)
JETTY_502 = (
    b"<html><head><title>Error 502 Could not determine the current leader</title></head>"
    b"<body><h2>HTTP ERROR 502</h2></body></html>"
)


def refused(request: requests.PreparedRequest) -> requests.exceptions.ConnectionError:
    """The exception requests raises when the TCP connection is refused."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(
        MaxRetryError(None, request.url or "", reason),  # type: ignore[arg-type]
        request=request,
    )


def dropped(request: requests.PreparedRequest) -> requests.exceptions.ConnectionError:
    """The exception requests raises when the server closed the connection after the request."""
    reason = ProtocolError("Connection aborted.", RemoteDisconnected("closed"))
    return requests.exceptions.ConnectionError(reason, request=request)


def host(request: requests.PreparedRequest) -> str:
    return urlsplit(request.url or "").netloc


def query(request: requests.PreparedRequest) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(request.url or "").query)


@pytest.fixture
def make_client(scripted_session: Any) -> Callable[..., tuple[MarathonClient, Any]]:
    """``make_client(handler, urls=[A], **kw) -> (client, adapter)`` with no backoff delays."""

    def build(
        handler: Callable[[requests.PreparedRequest], Any], urls: Any = (A,), **kwargs: Any
    ) -> tuple[MarathonClient, Any]:
        session, adapter = scripted_session(handler)
        kwargs.setdefault("backoff", 0.0)
        kwargs.setdefault("retries", 2)
        return MarathonClient(list(urls), session=session, **kwargs), adapter

    return build


def answer(status: int, body: Any = None, headers: Any = None) -> Callable[..., Any]:
    raw = (
        body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    )
    hdrs = {"Content-Type": "application/json"} if not isinstance(body, bytes) else {}
    hdrs.update(headers or {})
    return lambda request: (status, raw, hdrs)


# -- status mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "cls"),
    [
        ("error.400.invalid-task-id.doc-variant.json", 400, BadRequest),
        ("error.401.basic-auth.json", 401, Unauthorized),
        ("error.403.not-authorized.json", 403, Forbidden),
        ("error.404.app-does-not-exist.json", 404, NotFound),
        ("error.404.no-leader.json", 404, NotFound),
        ("error.409.app-already-exists.json", 409, Conflict),
        ("error.422.object-not-valid.json", 422, Invalid),
    ],
)
def test_recorded_error_bodies_map_to_the_exception_tree_with_message_verbatim(
    make_client: Any, examples_dir: Path, name: str, status: int, cls: type
) -> None:
    body = (examples_dir / "error-bodies" / name).read_bytes()
    client, _ = make_client(lambda r: (status, body, {"Content-Type": "application/json"}))
    with pytest.raises(cls) as info:
        client.get_app("/x")
    assert info.value.status == status
    assert info.value.message == json.loads(body)["message"]


def test_404_keeps_marathons_message(make_client: Any) -> None:
    client, _ = make_client(answer(404, {"message": "App '/x' does not exist"}))
    with pytest.raises(NotFound) as info:
        client.get_app("x")
    assert info.value.message == "App '/x' does not exist"
    assert "App '/x' does not exist" in str(info.value)


def test_409_carries_the_locking_deployment_ids(make_client: Any, examples_dir: Path) -> None:
    body = (examples_dir / "error-bodies" / "error.409.app-locked-by-deployment.json").read_bytes()
    client, _ = make_client(lambda r: (409, body, {"Content-Type": "application/json"}))
    with pytest.raises(Conflict) as info:
        client.update_app("/x", {"instances": 2})
    assert info.value.deployment_ids == ["97c136bf-5a28-4821-9d94-480d9fbb01c8"]


def test_422_details_become_issues(make_client: Any) -> None:
    details = [
        {"path": "/upgradeStrategy/minimumHealthCapacity", "errors": ["is greater than 1"]},
        {"path": "/id", "errors": ["must not be empty", "bad"]},
    ]
    client, _ = make_client(answer(422, {"message": "Object is not valid", "details": details}))
    with pytest.raises(Invalid) as info:
        client.create_app({"id": ""})
    assert info.value.message == "Object is not valid"
    assert [(i.path, i.message) for i in info.value.issues] == [
        ("/upgradeStrategy/minimumHealthCapacity", "is greater than 1"),
        ("/id", "must not be empty"),
        ("/id", "bad"),
    ]


def test_400_with_string_details_is_kept(make_client: Any) -> None:
    text = "Unexpected character ('}' (code 125)): was expecting a colon"
    client, _ = make_client(answer(400, {"message": "Invalid JSON", "details": text}))
    with pytest.raises(BadRequest) as info:
        client.create_app({"id": "/x"})
    assert info.value.details == text
    assert info.value.message == "Invalid JSON"


def test_500_is_a_server_error_and_not_retried(make_client: Any) -> None:
    client, adapter = make_client(answer(500, {"message": "URI not found"}), urls=[A, B])
    with pytest.raises(ServerError) as info:
        client.list_apps()
    assert info.value.message == "URI not found"
    assert len(adapter.requests) == 1


def test_jetty_html_401_gives_status_and_reason(make_client: Any) -> None:
    client, _ = make_client(
        lambda r: (401, JETTY_401, {"Content-Type": "text/html;charset=ISO-8859-1"})
    )
    with pytest.raises(Unauthorized) as info:
        client.list_apps()
    assert info.value.message == "Unauthorized"
    assert str(info.value).startswith("401 Unauthorized")


def test_jetty_html_502_names_jettys_reason(make_client: Any) -> None:
    client, _ = make_client(lambda r: (502, JETTY_502, {"Content-Type": "text/html"}), retries=0)
    with pytest.raises(Unavailable) as info:
        client.list_apps()
    assert info.value.status == 502
    assert "Could not determine the current leader" in info.value.message


@pytest.mark.parametrize("body", [b"", b"not json at all", b"\xff\xfe garbage", b"[1, 2"])
def test_non_json_error_bodies_never_crash(make_client: Any, body: bytes) -> None:
    client, _ = make_client(lambda r: (404, body, {"Content-Type": "text/plain"}))
    with pytest.raises(NotFound) as info:
        client.get_app("x")
    assert info.value.message == "Not Found"


def test_a_2xx_body_that_is_not_json_is_unavailable_after_trying_every_url(
    make_client: Any,
) -> None:
    client, adapter = make_client(lambda r: (200, b'{"apps": [', {}), urls=[A, B], retries=0)
    with pytest.raises(Unavailable) as info:
        client.list_apps()
    assert "not valid JSON" in str(info.value)
    assert [host(r) for r in adapter.requests] == ["a.test:8080", "b.test:8080"]


def test_an_answer_lacking_the_expected_key_is_a_clear_error(make_client: Any) -> None:
    client, _ = make_client(answer(200, {"unexpected": []}))
    with pytest.raises(MarathonError, match="no 'apps'"):
        client.list_apps()


def test_an_unexpected_redirect_on_put_is_an_error_not_a_silent_get(make_client: Any) -> None:
    client, adapter = make_client(lambda r: (302, b"", {"Location": B + "/v2/apps/x"}))
    with pytest.raises(MarathonError) as info:
        client.scale_app("x", 3)
    assert info.value.status == 302
    assert "unexpected redirect" in info.value.message
    assert [r.method for r in adapter.requests] == ["PUT"]


# -- failover, retries, POST safety --------------------------------------------------------------


def test_failover_on_refused_timeout_502_503_and_last_good_url_first(make_client: Any) -> None:
    def handler(request: requests.PreparedRequest) -> Any:
        if host(request) == "a.test:8080":
            return refused(request)
        if host(request) == "b.test:8080":
            return (503, b"<html>busy</html>", {"Content-Type": "text/html"})
        return (200, b'{"apps": []}', {"Content-Type": "application/json"})

    client, adapter = make_client(handler, urls=[A, B, C])
    assert client.list_apps() == []
    assert [host(r) for r in adapter.requests] == ["a.test:8080", "b.test:8080", "c.test:8080"]
    assert client.urls == [C, A, B]
    adapter.requests.clear()
    assert client.list_apps() == []
    assert [host(r) for r in adapter.requests] == ["c.test:8080"]


@pytest.mark.parametrize(
    "failure",
    [
        lambda r: requests.exceptions.ReadTimeout("read timed out", request=r),
        lambda r: requests.exceptions.ConnectTimeout("connect timed out", request=r),
        lambda r: (502, b"", {}),
        dropped,
    ],
)
def test_get_moves_to_the_next_url(make_client: Any, failure: Callable[..., Any]) -> None:
    client, adapter = make_client(
        lambda r: failure(r) if host(r) == "a.test:8080" else (200, b'{"leader":"b:8080"}', {}),
        urls=[A, B],
    )
    assert client.get_leader() == "b:8080"
    assert [host(r) for r in adapter.requests] == ["a.test:8080", "b.test:8080"]
    assert client.urls == [B, A]


def test_get_is_retried_with_rounds_over_all_urls(make_client: Any) -> None:
    calls: list[str] = []

    def handler(request: requests.PreparedRequest) -> Any:
        calls.append(host(request))
        if len(calls) < 5:
            return (503, b"", {})
        return (200, b'{"tasks": [{"id": "t1"}]}', {})

    client, _ = make_client(handler, urls=[A, B], retries=3)
    assert client.list_tasks() == [{"id": "t1"}]
    assert calls == ["a.test:8080", "b.test:8080"] * 2 + ["a.test:8080"]


def test_get_gives_up_after_the_retries_with_unavailable(make_client: Any) -> None:
    client, adapter = make_client(refused, urls=[A, B], retries=2)
    with pytest.raises(Unavailable) as info:
        client.get_info()
    assert len(adapter.requests) == 6
    assert "no Marathon URL answered" in info.value.message
    assert A in info.value.message and B in info.value.message


@pytest.mark.parametrize(
    "failure",
    [
        lambda r: requests.exceptions.ReadTimeout("read timed out", request=r),
        lambda r: (503, b'{"message":"timeout"}', {"Content-Type": "application/json"}),
        lambda r: (502, b"", {}),
        dropped,
    ],
)
def test_a_sent_post_is_neither_retried_nor_sent_elsewhere(
    make_client: Any, failure: Callable[..., Any]
) -> None:
    client, adapter = make_client(failure, urls=[A, B], retries=3)
    with pytest.raises(Unavailable):
        client.create_app({"id": "/x"})
    assert [(r.method, host(r)) for r in adapter.requests] == [("POST", "a.test:8080")]


def test_a_sent_patch_is_not_retried(make_client: Any) -> None:
    client, adapter = make_client(
        lambda r: requests.exceptions.ReadTimeout("t", request=r), urls=[A, B]
    )
    with pytest.raises(Unavailable):
        client.patch_app("x", {"instances": 1})
    assert len(adapter.requests) == 1


def test_a_refused_post_moves_on_and_is_retried(make_client: Any) -> None:
    calls: list[str] = []

    def handler(request: requests.PreparedRequest) -> Any:
        calls.append(host(request))
        if len(calls) < 4:
            return refused(request)
        return (
            201,
            b'{"id":"/x","version":"v1","deployments":[{"id":"d-body"}]}',
            {"Marathon-Deployment-Id": "d-1"},
        )

    client, _ = make_client(handler, urls=[A, B], retries=3)
    app, ref = client.create_app({"id": "/x"})
    assert app["id"] == "/x"
    assert ref == DeploymentRef("d-1", "v1")
    assert calls == ["a.test:8080", "b.test:8080", "a.test:8080", "b.test:8080"]


def test_put_and_delete_are_retried(make_client: Any) -> None:
    seen: list[str] = []

    def handler(request: requests.PreparedRequest) -> Any:
        seen.append(request.method or "")
        if len(seen) % 2 == 1:
            return requests.exceptions.ReadTimeout("t", request=request)
        return (200, b'{"version":"v2","deploymentId":"d-2"}', {})

    client, _ = make_client(handler)
    assert client.scale_app("x", 2) == DeploymentRef("d-2", "v2")
    assert client.delete_app("x") == DeploymentRef("d-2", "v2")
    assert seen == ["PUT", "PUT", "DELETE", "DELETE"]


# -- requests sent -------------------------------------------------------------------------------


def test_query_parameters_and_paths(make_client: Any) -> None:
    def handler(request: requests.PreparedRequest) -> Any:
        path = urlsplit(request.url or "").path
        if path == "/v2/apps":
            return (200, b'{"apps": []}', {})
        if path.endswith("/versions"):
            return (200, b'{"versions": ["v1"]}', {})
        return (200, b'{"version":"v","deploymentId":"d"}', {})

    client, adapter = make_client(handler)
    client.list_apps(embed=["apps.tasks", "apps.counts"], label="a==b", app_id="foo")
    client.update_app("/foo/bar", {"cmd": "x"}, force=True, partial_update=False)
    client.update_app("foo/bar/", {"cmd": "x"})
    client.restart_app("foo")
    assert client.list_versions("/foo") == ["v1"]
    sent = [(r.method, urlsplit(r.url or "").path, query(r)) for r in adapter.requests]
    assert sent == [
        (
            "GET",
            "/v2/apps",
            [("embed", "apps.tasks"), ("embed", "apps.counts"), ("id", "foo"), ("label", "a==b")],
        ),
        ("PUT", "/v2/apps/foo/bar", [("force", "true"), ("partialUpdate", "false")]),
        ("PUT", "/v2/apps/foo/bar", [("force", "false"), ("partialUpdate", "true")]),
        ("POST", "/v2/apps/foo/restart", [("force", "false")]),
        ("GET", "/v2/apps/foo/versions", []),
    ]
    assert json.loads(adapter.requests[1].body) == {"cmd": "x"}
    assert adapter.requests[1].headers["Content-Type"] == "application/json"
    assert adapter.requests[0].headers["Accept"] == "application/json"


def test_task_ids_and_versions_are_quoted_into_one_segment(make_client: Any) -> None:
    client, adapter = make_client(answer(200, {"task": {"id": "t"}}))
    client.kill_task("/g/app", "a/b c", scale=False, wipe=True)
    request = adapter.requests[0]
    assert request.path_url == "/v2/apps/g/app/tasks/a%2Fb%20c?scale=false&wipe=true"


@pytest.mark.parametrize("bad", ["", "/", "a/../b", "."])
def test_bad_app_ids_are_refused_before_sending(make_client: Any, bad: str) -> None:
    client, adapter = make_client(answer(200, {"app": {}}))
    with pytest.raises(ValueError, match="app_id"):
        client.get_app(bad)
    assert adapter.requests == []


def test_scale_rollback_and_kill_tasks_bodies(make_client: Any) -> None:
    client, adapter = make_client(answer(200, {"version": "v", "deploymentId": "d"}))
    client.scale_app("x", 5, force=True)
    client.rollback_app("x", "2021-02-10T11:59:59.000Z")
    client.kill_tasks(["t1", "t2"], scale=True)
    bodies = [json.loads(r.body) for r in adapter.requests]
    assert bodies == [
        {"instances": 5},
        {"version": "2021-02-10T11:59:59.000Z"},
        {"ids": ["t1", "t2"]},
    ]
    assert adapter.requests[2].path_url == "/v2/tasks/delete?scale=true&wipe=false"


def test_deployment_ref_falls_back_to_header_and_body(make_client: Any) -> None:
    client, _ = make_client(
        lambda r: (200, b"{}", {"Marathon-Deployment-Id": "from-header"}),
    )
    assert client.restart_app("x") == DeploymentRef("from-header", "")
    client, _ = make_client(lambda r: (201, b'{"id":"/x","deployments":[{"id":"d9"}]}', {}))
    assert client.create_app({"id": "x"})[1] == DeploymentRef("d9", "")


def test_delete_deployment_force_202_gives_none_and_rollback_gives_ref(make_client: Any) -> None:
    def handler(request: requests.PreparedRequest) -> Any:
        if ("force", "true") in query(request):
            return (202, b"", {})
        return (200, b'{"version":"v","deploymentId":"rb"}', {"Marathon-Deployment-Id": "rb"})

    client, _ = make_client(handler)
    assert client.delete_deployment("d1", force=True) is None
    assert client.delete_deployment("d1") == DeploymentRef("rb", "v")


def test_simple_getters_unwrap_marathons_envelopes(make_client: Any, examples_dir: Path) -> None:
    docs = examples_dir / "api-docs-head"
    files = {
        "/v2/tasks": docs / "GET_v2_tasks.response.json",
        "/v2/queue": docs / "GET_v2_queue.response.json",
        "/v2/deployments": docs / "GET_v2_deployments.response.json",
        "/v2/info": docs / "GET_v2_info.response.json",
        "/v2/apps": docs / "GET_v2_apps.response.doc-example.json",
        "/v2/apps/foo/tasks": docs / "GET_v2_apps_id_tasks.response.json",
    }

    def handler(request: requests.PreparedRequest) -> Any:
        return (200, files[urlsplit(request.url or "").path].read_bytes(), {})

    client, _ = make_client(handler)
    raw = {path: json.loads(f.read_bytes()) for path, f in files.items()}
    assert client.list_tasks() == raw["/v2/tasks"]["tasks"]
    assert client.get_queue() == raw["/v2/queue"]["queue"]
    assert client.list_deployments() == raw["/v2/deployments"]
    assert client.get_info() == raw["/v2/info"]
    assert client.list_apps() == raw["/v2/apps"]["apps"]
    assert client.list_app_tasks("foo") == raw["/v2/apps/foo/tasks"]["tasks"]


def test_ping_and_group(make_client: Any) -> None:
    def handler(request: requests.PreparedRequest) -> Any:
        if request.path_url == "/ping":
            return (200, b"pong", {"Content-Type": "text/plain"})
        return (200, b'{"id":"/g","apps":[]}', {})

    client, adapter = make_client(handler)
    assert client.ping() is True
    assert client.get_group("/g", embed=["group.apps"]) == {"id": "/g", "apps": []}
    assert client.get_group() == {"id": "/g", "apps": []}
    assert [r.path_url for r in adapter.requests] == [
        "/ping",
        "/v2/groups/g?embed=group.apps",
        "/v2/groups",
    ]


def test_ping_is_false_when_nothing_answers(make_client: Any) -> None:
    client, _ = make_client(refused, retries=0)
    assert client.ping() is False


# -- auth and secrecy ----------------------------------------------------------------------------


def test_auth_headers(make_client: Any) -> None:
    client, adapter = make_client(answer(200, {"leader": "x"}), auth=BasicAuth("u", "s3cret"))
    client.get_leader()
    assert adapter.requests[-1].headers["Authorization"] == "Basic dTpzM2NyZXQ="
    client, adapter = make_client(answer(200, {"leader": "x"}), auth=TokenAuth("tok.en"))
    client.get_leader()
    assert adapter.requests[-1].headers["Authorization"] == "token=tok.en"


def test_get_redirects_carry_credentials_only_to_known_origins(make_client: Any) -> None:
    def handler(request: requests.PreparedRequest) -> Any:
        where = (host(request), urlsplit(request.url or "").path)
        redirects = {
            ("a.test:8080", "/v2/info"): A + "/v2/info/",  # same origin
            ("a.test:8080", "/v2/leader"): B + "/v2/leader",  # another configured Marathon
            ("a.test:8080", "/v2/queue"): "http://elsewhere.test/v2/queue",  # unknown host
        }
        if where in redirects:
            return (302, b"", {"Location": redirects[where]})
        return (200, b'{"leader": "x", "queue": []}', {})

    client, adapter = make_client(handler, urls=[A, B], auth=TokenAuth("t0k"))
    client.get_info()
    client.get_leader()
    client.get_queue()
    sent = [(host(r), r.headers.get("Authorization")) for r in adapter.requests]
    assert sent == [
        ("a.test:8080", "token=t0k"),
        ("a.test:8080", "token=t0k"),
        ("a.test:8080", "token=t0k"),
        ("b.test:8080", "token=t0k"),
        ("a.test:8080", "token=t0k"),
        ("elsewhere.test", None),
    ]


def test_credentials_never_show_in_repr_errors_or_logs(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="marathon_bridge")
    client, adapter = make_client(
        lambda r: refused(r) if host(r) == "a.test:8080" else (401, JETTY_401, {}),
        urls=["http://admin:hunter2@a.test:8080", "http://b.test:8080"],
    )
    with pytest.raises(Unauthorized) as info:
        client.list_apps()
    assert adapter.requests[0].headers["Authorization"] == "Basic YWRtaW46aHVudGVyMg=="
    assert "@" not in (adapter.requests[0].url or "")
    texts = [repr(client), str(info.value), repr(BasicAuth("admin", "hunter2")), caplog.text]
    texts += [repr(r.__dict__) for r in caplog.records]
    assert all("hunter2" not in t for t in texts)
    assert repr(TokenAuth("tok-secret")) == "TokenAuth(token='***')"


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="urls"):
        MarathonClient([])
    for bad in ("ftp://x", "http://x:99999", "http://x:port", "http://x/?a=1", "marathon:8080"):
        with pytest.raises(ValueError, match="urls"):
            MarathonClient(bad)
    with pytest.raises(ValueError, match="verify"):
        MarathonClient("http://x", verify="/nonexistent/ca.pem")
