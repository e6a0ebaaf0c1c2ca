"""Fixtures for the client tests: a scripted in-memory transport, loopback HTTP servers, polling."""

from __future__ import annotations

import http
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional, Union

import pytest
import requests
import requests.adapters
from requests.structures import CaseInsensitiveDict

DATA = Path(__file__).resolve().parent / "data"
TLS_CERT = str(DATA / "loopback.cert.pem")  # self-signed for 127.0.0.1 and localhost, 2000-2100
TLS_KEY = str(DATA / "loopback.key.pem")  # test-only key


@pytest.fixture
def tls_ca_bundle() -> str:
    """Path of the CA bundle that trusts the loopback TLS servers' certificate."""
    return TLS_CERT


# ---------------------------------------------------------------------------------------------
# scripted transport (unit tests of error paths only)


Reply = Union[requests.Response, BaseException]


def make_response(
    request: requests.PreparedRequest,
    status: int,
    body: Union[bytes, str] = b"",
    headers: Optional[dict[str, str]] = None,
) -> requests.Response:
    """A ``requests.Response`` as an HTTP adapter would return it."""
    response = requests.Response()
    response.status_code = status
    response._content = body.encode() if isinstance(body, str) else body
    response.headers = CaseInsensitiveDict(headers or {})
    response.url = request.url or ""
    response.request = request
    response.reason = http.HTTPStatus(status).phrase
    response.encoding = "utf-8"
    return response


class ScriptedAdapter(requests.adapters.BaseAdapter):
    """A transport that answers from a handler instead of the network, and records requests.

    ``handler(request)`` returns ``(status, body, headers)``, a ``requests.Response`` or an
    exception instance (raised, as a real adapter raises transport errors).
    """

    def __init__(self, handler: Callable[[requests.PreparedRequest], Any]) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.requests.append(request)
        reply = self.handler(request)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, requests.Response):
            return reply
        status, body, headers = reply
        return make_response(request, status, body, headers)

    def close(self) -> None:
        pass


@pytest.fixture
def scripted_session() -> Callable[
    [Callable[[requests.PreparedRequest], Any]], tuple[requests.Session, ScriptedAdapter]
]:
    """``scripted_session(handler) -> (session, adapter)`` with the adapter mounted for http(s)."""

    def build(
        handler: Callable[[requests.PreparedRequest], Any],
    ) -> tuple[requests.Session, ScriptedAdapter]:
        session = requests.Session()
        session.trust_env = False
        adapter = ScriptedAdapter(handler)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session, adapter

    return build


# ---------------------------------------------------------------------------------------------
# loopback HTTP servers


@dataclass
class Recorded:
    """One request a loopback server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LoopbackServer:
    """A real HTTP server on 127.0.0.1 answering with ``respond(handler, recorded)``."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    received: list[Recorded] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        scheme = "https" if isinstance(self.server.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


Respond = Callable[[BaseHTTPRequestHandler, Recorded], None]


def _handler_class(state: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            recorded = Recorded(self.command, self.path, dict(self.headers.items()), body)
            state["server"].received.append(recorded)
            state["respond"](self, recorded)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    return Handler


def send_json(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    """Write a complete response with a body and Content-Length."""
    handler.send_response(status)
    handler.send_header("Content-Type", headers.pop("content_type", "application/json"))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def loopback() -> Iterator[Callable[[Respond], LoopbackServer]]:
    """``loopback(respond) -> LoopbackServer``: start a real HTTP server; all stop at teardown."""
    started: list[LoopbackServer] = []

    def start(respond: Respond, tls: bool = False) -> LoopbackServer:
        state: dict[str, Any] = {"respond": respond}
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(state))
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(TLS_CERT, TLS_KEY)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        loop = LoopbackServer(server=server, thread=thread)
        state["server"] = loop
        thread.start()
        started.append(loop)
        return loop

    yield start
    for loop in started:
        loop.stop()


@pytest.fixture
def reply_json() -> Callable[..., None]:
    """``reply_json(handler, status, body, **headers)``: write a complete HTTP response."""
    return send_json
