"""The emulator's HTTP front: routing, headers, error bodies, auth, SSE, standby proxy.

One :class:`EmulatorServer` serves either a leader (backed by a :class:`ClusterState`) or a
standby (no state: it proxies every REST request to the leader and answers ``/v2/events`` with a
302 to the leader, as Marathon >= 1.7 does).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import queue
import re
import select
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from marathon_bridge.testing import appmodel
from marathon_bridge.testing.events import CLOSE, EventBus
from marathon_bridge.testing.faults import STATUS_MESSAGES, Fault, FaultInjector
from marathon_bridge.testing.httpserver import TrackingHTTPServer
from marathon_bridge.testing.state import ApiError, ClusterState
from marathon_bridge.testing.wire import HEARTBEAT, dumps_play, dumps_rest

LOG = logging.getLogger(__name__)

JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream;charset=utf-8"
HTML_TYPE = "text/html;charset=iso-8859-1"
MARATHON_HEADERS = (
    ("X-Frame-Options", "DENY"),
    ("X-XSS-Protection", "1; mode=block"),
    ("Cache-Control", "no-cache, no-store, must-revalidate"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
)
HOP_HEADERS = {"connection", "host", "content-length", "transfer-encoding", "keep-alive"}


@dataclass
class Response:
    """A complete (non-streaming) answer."""

    status: int
    body: bytes = b""
    content_type: Optional[str] = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    marathon_headers: bool = True


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator received it (Authorization left out)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw: bytes


class RequestLog:
    """Thread-safe list of recorded requests."""

    def __init__(self, limit: int = 10000) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []
        self._limit = limit
        self.total = 0

    def add(self, item: RecordedRequest) -> None:
        with self._lock:
            self.total += 1
            self._items.append(item)
            if len(self._items) > self._limit:
                del self._items[: len(self._items) - self._limit]

    def all(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class ServerContext:
    """Everything a request handler needs."""

    state: Optional[ClusterState]
    bus: Optional[EventBus]
    faults: FaultInjector
    requests: RequestLog
    auth: Any = None
    heartbeat_interval: float = 10.0
    version: str = "1.10.26"
    leader_url: Callable[[], Optional[str]] = lambda: None
    self_url: Callable[[], str] = lambda: ""
    on_abdicate: Callable[[], None] = lambda: None
    stopping: threading.Event = field(default_factory=threading.Event)
    framework_id: str = "emulated-framework-0000"


def json_response(
    status: int, obj: Any, headers: Optional[list[tuple[str, str]]] = None
) -> Response:
    return Response(status, dumps_rest(obj), JSON_TYPE, list(headers or []))


def message(status: int, text: str) -> Response:
    return json_response(status, {"message": text})


def jetty_error_page(status: int, reason: str, path: str) -> bytes:
    """The HTML page Jetty's sendError writes."""
    return (
        "<html>\n<head>\n"
        '<meta http-equiv="Content-Type" content="text/html;charset=ISO-8859-1"/>\n'
        f"<title>Error {status} {reason}</title>\n</head>\n"
        f"<body><h2>HTTP ERROR {status}</h2>\n"
        f"<p>Problem accessing {path}. Reason:\n<pre>    {reason}</pre></p>"
        '<hr><a href="http://eclipse.org/jetty">Powered by Jetty:// 9.4.26.v20200117</a><hr/>\n'
        "\n</body>\n</html>\n"
    ).encode("iso-8859-1", "replace")


def html_error(status: int, reason: str, path: str, marathon_headers: bool = True) -> Response:
    return Response(status, jetty_error_page(status, reason, path), HTML_TYPE, [], marathon_headers)


def flag(query: Mapping[str, list[str]], name: str, default: bool) -> bool:
    values = query.get(name)
    if not values:
        return default
    return values[-1].strip().lower() == "true"


def embeds(query: Mapping[str, list[str]]) -> list[str]:
    """``embed`` values without their ``apps.``/``app.``/``group.apps.`` prefixes."""
    out = []
    for value in query.get("embed", []):
        for item in value.split(","):
            item = item.strip()
            for prefix in ("group.apps.", "apps.", "app.", "group."):
                if item.startswith(prefix):
                    item = item[len(prefix) :]
                    break
            if item:
                out.append(item)
    return out


def deployment_result(version: str, deployment_id: str, status: int = 200) -> Response:
    return json_response(
        status,
        {"version": version, "deploymentId": deployment_id},
        [("Marathon-Deployment-Id", deployment_id)],
    )


# --------------------------------------------------------------------------- auth


def auth_kind(auth: Any) -> tuple[str, Any]:
    """("basic", (user, password)) | ("token", token) | ("", None) from whatever was given."""
    if auth is None:
        return "", None
    if isinstance(auth, str):
        return "token", auth
    if hasattr(auth, "token"):
        return "token", str(auth.token)
    if hasattr(auth, "user") and hasattr(auth, "password"):
        return "basic", (str(auth.user), str(auth.password))
    if isinstance(auth, (tuple, list)) and len(auth) == 2:
        return "basic", (str(auth[0]), str(auth[1]))
    raise TypeError("auth must be BasicAuth, TokenAuth, (user, password) or a token string")


def check_auth(auth: Any, header: Optional[str], path: str) -> Optional[Response]:
    """None when the request may pass; else the 401/403 answer."""
    kind, expected = auth_kind(auth)
    if not kind:
        return None
    if kind == "basic":
        ok = False
        if header and header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            user, _, password = decoded.partition(":")
            ok = (user, password) == expected
        if ok:
            return None
        response = html_error(401, "Unauthorized", path, marathon_headers=False)
        response.headers.append(("WWW-Authenticate", 'basic realm="Mesosphere"'))
        return response
    if header is None:
        response = message(401, "Invalid username or password.")
        response.headers.append(("WWW-Authenticate", "acsjwt"))
        return response
    if header.strip() != f"token={expected}":
        return message(403, "Not Authorized to perform this action!")
    return None


# --------------------------------------------------------------------------- server


class EmulatorServer(TrackingHTTPServer):
    """ThreadingHTTPServer with daemon threads, SO_REUSEADDR and tracked connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], context: ServerContext) -> None:
        self.context = context
        super().__init__(address, Handler)

    def close_connections(self) -> None:
        """Cut every open connection (keep-alive and streams)."""
        self.shutdown_connections(socket.SHUT_RDWR)


APP_SUB = re.compile(r"^(?P<app>/.+?)/(?P<kind>tasks|versions)(?:/(?P<rest>[^/]+))?$")


class Handler(BaseHTTPRequestHandler):
    """Routes one request (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "Jetty(9.4.26.v20200117)"
    disable_nagle_algorithm = True  # headers and body go out without a 40 ms delayed-ACK stall
    sys_version = ""
    server: EmulatorServer

    # BaseHTTPRequestHandler dispatches on do_<METHOD>
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("emulator http: " + format, *args)

    @property
    def ctx(self) -> ServerContext:
        return self.server.context

    # ------------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return body
            body += self.rfile.read(size)
            self.rfile.readline()

    def _record(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        parsed: Any = None
        if raw:
            try:
                parsed = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                parsed = None
        self.ctx.requests.add(RecordedRequest(method, path, query, headers, parsed, raw))

    def _marathon_headers(self) -> list[tuple[str, str]]:
        out = []
        leader = self.ctx.leader_url()
        if leader:
            out.append(("X-Marathon-Leader", leader))
        out.extend(MARATHON_HEADERS)
        return out

    def _write(self, response: Response, method: str) -> None:
        self.send_response(response.status)
        headers = list(response.headers)
        if response.marathon_headers and self.ctx.state is not None:
            headers = self._marathon_headers() + headers
        if response.content_type and (response.body or response.status not in (202, 204)):
            self.send_header("Content-Type", response.content_type)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if method != "HEAD" and response.body:
            self.wfile.write(response.body)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _apply_fault(self, fault: Fault, response_for: Callable[[], Response], method: str) -> None:
        if fault.drop:
            self._drop()
            return
        if fault.truncate:
            response = response_for()
            body = response.body or b'{"message":"truncated"}'
            self.send_response(response.status)
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(body) * 2 + 10))
            self.end_headers()
            self.wfile.write(body[: max(1, len(body) // 2)])
            self.wfile.flush()
            self._drop()
            return
        if fault.json_body is not None:
            self._write(json_response(fault.status or 200, fault.json_body), method)
            return
        if fault.body is not None:
            self._write(Response(fault.status or 200, fault.body, fault.content_type), method)
            return
        status = fault.status or 500
        self._write(message(status, STATUS_MESSAGES.get(status, "Injected fault")), method)

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path = split.path or "/"
        query = parse_qs(split.query, keep_blank_values=True)
        try:
            raw = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        self._record(method, path, query, raw)
        fired = self.ctx.faults.take(method, path)
        delay = sum(f.delay for f in fired)
        if delay > 0:
            time.sleep(delay)  # the injected latency itself
        answering = [f for f in fired if f.answers]
        try:
            denied = check_auth(self.ctx.auth, self.headers.get("Authorization"), path)
            if answering:
                self._apply_fault(
                    answering[0], lambda: denied or self._respond(method, path, query, raw), method
                )
                return
            if denied is not None:
                self._write(denied, method)
                return
            if path == "/v2/events" and method == "GET":
                self._events(split.query, query)
                return
            routed = "GET" if method == "HEAD" else method
            self._write(self._respond(routed, path, query, raw), method)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _respond(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Response:
        if self.ctx.state is None:
            return self._proxy(method, raw)
        try:
            return self._route(self.ctx.state, method, path, query, raw)
        except ApiError as exc:
            return json_response(exc.status, exc.body, list(exc.headers.items()))
        except Exception:  # a bug in the emulator: answer like Marathon's mapper would
            LOG.exception("emulator error", extra={"path": path, "method": method})
            return message(500, "emulator internal error")

    # ------------------------------------------------------------------ body parsing

    @staticmethod
    def _parse(raw: bytes) -> Any:
        if not raw.strip():
            raise ApiError(
                400,
                {
                    "message": "Please specify data in JSON format",
                    "details": 'No content to map due to end-of-input\n at [Source: (byte[])""; '
                    "line: 1, column: 0]",
                },
            )
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, {"message": "Invalid JSON", "details": str(exc)}) from exc

    # ------------------------------------------------------------------ routes

    def _route(
        self, state: ClusterState, method: str, path: str, query: dict[str, list[str]], raw: bytes
    ) -> Response:
        if path == "/ping":
            return self._ping()
        if path == "/v2/info" and method == "GET":
            return Response(200, dumps_play(self._info()), JSON_TYPE)
        if path == "/v2/leader":
            return self._leader(method)
        if path == "/v2/apps" or path == "/v2/apps/":
            return self._apps_root(state, method, query, raw)
        if path.startswith("/v2/apps/"):
            return self._app_routes(state, method, path[len("/v2/apps") :], query, raw)
        if path == "/v2/tasks" and method == "GET":
            statuses = query.get("status", []) + query.get("status[]", [])
            return json_response(200, {"tasks": state.all_tasks(statuses)})
        if path == "/v2/tasks/delete" and method == "POST":
            return self._tasks_delete(state, query, raw)
        if path == "/v2/deployments" and method == "GET":
            return json_response(200, state.deployments_json())
        if path.startswith("/v2/deployments/") and method == "DELETE":
            dep_id = path[len("/v2/deployments/") :]
            result = state.cancel_deployment(dep_id, flag(query, "force", False))
            if result is None:
                return Response(202, b"", None)
            return deployment_result(*result)
        if path == "/v2/queue" and method == "GET":
            return json_response(200, {"queue": state.queue_json()})
        match = re.match(r"^/v2/queue(/.+)/delay$", path)
        if match and method == "DELETE":
            state.reset_delay(appmodel.absolute_id(match.group(1)))
            return Response(204, b"", None)
        if (path == "/v2/groups" or path.startswith("/v2/groups/")) and method == "GET":
            group_id = appmodel.absolute_id(path[len("/v2/groups") :])
            return json_response(200, state.group_json(group_id, embeds(query)))
        return message(500, "URI not found")

    def _ping(self) -> Response:
        accept = self.headers.get("Accept", "")
        if "application/json" in accept and "text/plain" not in accept:
            return Response(200, b'"pong"', JSON_TYPE)
        return Response(200, b"pong", "text/plain;charset=utf-8")

    def _leader_hostport(self) -> Optional[str]:
        url = self.ctx.leader_url()
        return urlsplit(url).netloc if url else None

    def _leader(self, method: str) -> Response:
        leader = self._leader_hostport()
        if method == "GET":
            if not leader:
                return message(404, "There is no leader")
            return json_response(200, {"leader": leader})
        if method == "DELETE":
            self.ctx.on_abdicate()
            return json_response(200, {"message": "Leadership abdicated"})
        return message(405, "HTTP 405 Method Not Allowed")

    def _info(self) -> dict[str, Any]:
        own = urlsplit(self.ctx.self_url())
        host = own.hostname or "127.0.0.1"
        port = own.port or 8080
        return {
            "name": "marathon",
            "version": self.ctx.version,
            "buildref": "emulated",
            "elected": self.ctx.state is not None,
            "leader": self._leader_hostport(),
            "frameworkId": self.ctx.framework_id,
            "marathon_config": {
                "access_control_allow_origin": None,
                "checkpoint": True,
                "decline_offer_duration": 120000,
                "default_network_name": None,
                "env_vars_prefix": None,
                "executor": "//cmd",
                "failover_timeout": 604800,
                "features": ["task_killing"],
                "framework_name": "marathon",
                "ha": True,
                "hostname": host,
                "launch_token": 100,
                "launch_token_refresh_interval": 30000,
                "leader_proxy_connection_timeout_ms": 5000,
                "leader_proxy_read_timeout_ms": 10000,
                "local_port_max": 20000,
                "local_port_min": 10000,
                "master": "zk://127.0.0.1:2181/mesos",
                "max_instances_per_offer": 5,
                "mesos_bridge_name": "mesos-bridge",
                "mesos_heartbeat_failure_threshold": 5,
                "mesos_heartbeat_interval": 15000,
                "mesos_leader_ui_url": "http://127.0.0.1:5050/",
                "mesos_role": "*",
                "mesos_user": "root",
                "min_revive_offers_interval": 5000,
                "offer_matching_timeout": 3000,
                "on_elected_prepare_timeout": 180000,
                "reconciliation_initial_delay": 15000,
                "reconciliation_interval": 600000,
                "scale_apps_initial_delay": 15000,
                "scale_apps_interval": 300000,
                "store_cache": True,
                "task_launch_confirm_timeout": 300000,
                "task_launch_timeout": 300000,
                "task_lost_expunge_initial_delay": 300000,
                "task_lost_expunge_interval": 30000,
                "task_reservation_timeout": 20000,
                "webui_url": None,
            },
            "zookeeper_config": {
                "zk": "zk://127.0.0.1:2181/marathon",
                "zk_compression": True,
                "zk_compression_threshold": 65536,
                "zk_connection_timeout": 10000,
                "zk_max_node_size": 1024000,
                "zk_max_versions": 50,
                "zk_session_timeout": 10000,
                "zk_timeout": 10000,
            },
            "http_config": {"http_port": port, "https_port": 8443},
        }

    def _apps_root(
        self, state: ClusterState, method: str, query: dict[str, list[str]], raw: bytes
    ) -> Response:
        if method == "GET":
            apps = state.list_apps(
                embeds(query),
                app_filter=(query.get("id") or [""])[-1],
                cmd=(query.get("cmd") or [""])[-1],
                label=(query.get("label") or [""])[-1],
            )
            return json_response(200, {"apps": apps})
        if method == "POST":
            body = self._parse(raw)
            created, dep_id = state.create_app(
                body, flag(query, "force", False), self.path, self.client_address[0]
            )
            location = self.ctx.self_url() + created["id"]
            return json_response(
                201, created, [("Location", location), ("Marathon-Deployment-Id", dep_id)]
            )
        if method in ("PUT", "PATCH"):
            body = self._parse(raw)
            version, dep_id = state.update_apps(
                body,
                force=flag(query, "force", False),
                partial=method == "PATCH" or flag(query, "partialUpdate", True),
                must_exist=method == "PATCH",
            )
            return deployment_result(version, dep_id)
        return message(405, "HTTP 405 Method Not Allowed")

    def _app_routes(
        self, state: ClusterState, method: str, rest: str, query: dict[str, list[str]], raw: bytes
    ) -> Response:
        force = flag(query, "force", False)
        if method == "POST" and rest.endswith("/restart"):
            app_id = appmodel.absolute_id(rest[: -len("/restart")])
            return deployment_result(*state.restart_app(app_id, force))
        match = APP_SUB.match(rest)
        if match:
            app_id = appmodel.absolute_id(match.group("app"))
            if match.group("app").endswith("/*") and match.group("kind") == "tasks":
                app_id = appmodel.absolute_id(match.group("app")[:-2]).rstrip("/") + "/*"
            if match.group("kind") == "tasks":
                return self._app_tasks(state, method, app_id, match.group("rest"), query)
            if method != "GET":
                return message(405, "HTTP 405 Method Not Allowed")
            if match.group("rest"):
                return json_response(200, state.app_version(app_id, match.group("rest")))
            return json_response(200, {"versions": state.versions(app_id)})
        if rest.endswith("/*") and method == "GET":
            group = appmodel.absolute_id(rest[:-2])
            return json_response(200, {"*": state.group_apps(group, embeds(query))})
        app_id = appmodel.absolute_id(rest)
        if method == "GET":
            return json_response(200, {"app": state.get_app(app_id, embeds(query))})
        if method in ("PUT", "PATCH"):
            body = self._parse(raw)
            created, version, dep_id = state.update_app(
                app_id,
                body,
                force=force,
                partial=method == "PATCH" or flag(query, "partialUpdate", True),
                must_exist=method == "PATCH",
                uri=urlsplit(self.path).path,
                client_ip=self.client_address[0],
            )
            response = deployment_result(version, dep_id, 201 if created else 200)
            if created:
                response.headers.append(("Location", self.ctx.self_url() + app_id))
            return response
        if method == "DELETE":
            return deployment_result(*state.delete_app(app_id, flag(query, "force", True)))
        return message(405, "HTTP 405 Method Not Allowed")

    def _app_tasks(
        self,
        state: ClusterState,
        method: str,
        app_id: str,
        task_id: Optional[str],
        query: dict[str, list[str]],
    ) -> Response:
        if method == "GET" and task_id is None:
            if "text/plain" in self.headers.get("Accept", "") and "json" not in self.headers.get(
                "Accept", ""
            ):
                return message(
                    406,
                    "The text/plain output is deprecated. It can be enabled via text_plain_tasks.",
                )
            return json_response(200, {"tasks": state.app_tasks(app_id)})
        if method != "DELETE":
            return message(405, "HTTP 405 Method Not Allowed")
        killed, dep = state.kill_app_tasks(
            app_id,
            [task_id] if task_id is not None else None,
            host=(query.get("host") or [""])[-1],
            scale=flag(query, "scale", False),
            wipe=flag(query, "wipe", False),
            force=flag(query, "force", False),
        )
        if dep is not None:
            return deployment_result(*dep)
        killed = killed or []
        if task_id is not None:
            return json_response(200, {"task": killed[0]})
        return json_response(200, {"tasks": killed})

    def _tasks_delete(
        self, state: ClusterState, query: dict[str, list[str]], raw: bytes
    ) -> Response:
        body = self._parse(raw)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list):
            raise ApiError(
                422,
                {
                    "message": "Invalid JSON",
                    "details": [{"path": "/ids", "errors": ["error.path.missing"]}],
                },
            )
        killed, dep = state.delete_tasks(
            ids,
            scale=flag(query, "scale", False),
            wipe=flag(query, "wipe", False),
            force=flag(query, "force", False),
        )
        if dep is not None:
            return deployment_result(*dep)
        return json_response(200, {"tasks": killed or []})

    # ------------------------------------------------------------------ events

    def _events(self, raw_query: str, query: dict[str, list[str]]) -> None:
        if self.headers.get("Accept") != "text/event-stream":
            page = html_error(405, "HTTP method GET is not supported by this URL", "/v2/events")
            self._write(page, "GET")
            return
        bus = self.ctx.bus
        if self.ctx.state is None or bus is None:
            leader = self.ctx.leader_url()
            if not leader:
                self._write(
                    html_error(502, "Could not determine the current leader", "/v2/events"), "GET"
                )
                return
            location = f"{leader}/v2/events" + (f"?{raw_query}" if raw_query else "")
            self._write(Response(302, b"", None, [("Location", location)]), "GET")
            return
        self.close_connection = True
        sub = bus.subscribe(self.client_address[0], query.get("event_type", []))
        connection = self.connection
        sub.closer = lambda: connection.shutdown(socket.SHUT_RDWR)
        try:
            self.send_response(200)
            self.send_header("Content-Type", SSE_TYPE)
            for name, value in self._marathon_headers():
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.flush()
            self._stream(sub)
        except OSError:
            pass
        finally:
            bus.unsubscribe(sub)
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _stream(self, sub: Any) -> None:
        interval = self.ctx.heartbeat_interval
        next_beat = time.monotonic() + interval
        while not sub.closed.is_set() and not self.ctx.stopping.is_set():
            timeout = max(0.0, min(next_beat - time.monotonic(), 0.5))
            try:
                frame = sub.queue.get(timeout=timeout)
            except queue.Empty:
                if self._client_gone():
                    break
                if time.monotonic() >= next_beat:
                    self.wfile.write(HEARTBEAT)
                    self.wfile.flush()
                    next_beat += interval
                continue
            if frame == CLOSE or sub.closed.is_set():
                break
            self.wfile.write(frame)
            self.wfile.flush()

    def _client_gone(self) -> bool:
        """True when the client closed its side (a stream request sends nothing more)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # ------------------------------------------------------------------ standby

    def _proxy(self, method: str, raw: bytes) -> Response:
        path = urlsplit(self.path).path
        via = f"1.1 {urlsplit(self.ctx.self_url()).netloc}"
        if via in self.headers.get_all("X-Marathon-Via", []):
            return html_error(502, "Detected proxying loop.", path)
        leader = self.ctx.leader_url()
        if not leader:
            return html_error(502, "Could not determine the current leader", path)
        target = urlsplit(leader)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        headers["X-Marathon-Via"] = via
        forwarded = self.headers.get("X-Forwarded-For")
        client = self.client_address[0]
        headers["X-Forwarded-For"] = f"{forwarded}, {client}" if forwarded else client
        conn = http.client.HTTPConnection(
            target.hostname or "127.0.0.1", target.port or 80, timeout=10
        )
        try:
            conn.request(method, self.path, body=raw or None, headers=headers)
            answer = conn.getresponse()
            body = answer.read()
        except ConnectionRefusedError:
            return html_error(502, "Connection to leader refused.", path)
        except socket.timeout:
            return html_error(504, "Connection to leader timed out.", path)
        except (OSError, http.client.HTTPException):
            return html_error(500, "Could not proxy to the leader.", path)
        finally:
            conn.close()
        content_type = answer.getheader("Content-Type")
        out_headers = [
            (k, v)
            for k, v in answer.getheaders()
            if k.lower() not in HOP_HEADERS | {"content-type", "date", "server"}
        ]
        out_headers.append(("X-Marathon-Via", via))
        return Response(answer.status, body, content_type, out_headers, marathon_headers=False)
