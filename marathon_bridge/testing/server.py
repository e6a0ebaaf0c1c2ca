"""The emulator's HTTP server: request plumbing, injected faults, auth, SSE and the standby proxy.

One :class:`EmulatorServer` serves either a leader (backed by an :class:`EmulatorState`, whose
REST routes are in :mod:`.routes`) or a standby (no state: it proxies every REST request to the
leader and answers ``/v2/events`` with a 302 to the leader, as Marathon >= 1.7 does).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import queue
import select
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from marathon_bridge.testing.auth import check_auth
from marathon_bridge.testing.context import RecordedRequest, RequestLog, ServerContext
from marathon_bridge.testing.events import CLOSE
from marathon_bridge.testing.faults import STATUS_MESSAGES, Fault
from marathon_bridge.testing.httpserver import TrackingHTTPServer
from marathon_bridge.testing.responses import Response, html_error, json_response, message
from marathon_bridge.testing.routes import Request, route
from marathon_bridge.testing.state import ApiError
from marathon_bridge.testing.wire import HEARTBEAT

LOG = logging.getLogger(__name__)

SSE_TYPE = "text/event-stream;charset=utf-8"
MARATHON_HEADERS = (
    ("X-Frame-Options", "DENY"),
    ("X-XSS-Protection", "1; mode=block"),
    ("Cache-Control", "no-cache, no-store, must-revalidate"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
)
HOP_HEADERS = {"connection", "host", "content-length", "transfer-encoding", "keep-alive"}

__all__ = ["EmulatorServer", "RecordedRequest", "RequestLog", "ServerContext"]


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
        state = self.ctx.state
        if state is None:
            return self._proxy(method, raw)
        accept = self.headers.get("Accept", "")
        request = Request(method, path, self.path, query, raw, accept, self.client_address[0])
        try:
            return route(state, request, self.ctx)
        except ApiError as exc:
            return json_response(exc.status, exc.body, list(exc.headers.items()))
        except Exception:  # a bug in the emulator: answer like Marathon's mapper would
            LOG.exception("emulator error", extra={"path": path, "method": method})
            return message(500, "emulator internal error")

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
