"""EventStream against small SSE servers on 127.0.0.1 (real sockets, real reconnects)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, urlsplit

import pytest

from marathon_bridge.client import MarathonClient, TokenAuth
from marathon_bridge.errors import Unauthorized, Unavailable
from marathon_bridge.events import Event, EventStream
from testkit import free_port, wait_until

ATTACHED = (
    b'event: event_stream_attached\r\ndata: {"remoteAddress":"127.0.0.1",'
    b'"eventType":"event_stream_attached","timestamp":"2021-02-10T11:00:00.000Z"}\r\n\r\n'
)


def frame(event_type: str, **fields: Any) -> bytes:
    payload = {**fields, "eventType": event_type, "timestamp": "2021-02-10T12:00:00.000Z"}
    return f"event: {event_type}\r\ndata: {json.dumps(payload)}\r\n\r\n".encode()


@dataclass
class Connection:
    handler: BaseHTTPRequestHandler
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class SSEServer:
    """Serves ``/v2/events`` like Marathon: exact Accept check, CRLF frames, Connection: close.

    ``redirect_to``: answer every request with a standby's 302 to that base URL instead.
    ``token``: require ``Authorization: token=<token>``. ``refuse``: statuses to answer with
    (one per request) before streaming.
    """

    redirect_to: str = ""
    token: str = ""
    refuse: list[int] = field(default_factory=list)
    greeting: bytes = ATTACHED
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    server: Optional[ThreadingHTTPServer] = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SSEServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append((self.path, dict(self.headers.items())))
                owner.serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        if self.redirect_to:
            query = urlsplit(handler.path).query
            self.reply(handler, 302, b"", Location=f"{self.redirect_to}/v2/events?{query}")
            return
        if self.token and handler.headers.get("Authorization") != f"token={self.token}":
            self.reply(handler, 401, b'{"message":"Invalid username or password."}')
            return
        if handler.headers.get("Accept") != "text/event-stream":
            self.reply(handler, 405, b"<html>HTTP method GET is not supported by this URL</html>")
            return
        if self.refuse:
            self.reply(handler, self.refuse.pop(0), b'{"message":"not now"}')
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream;charset=utf-8")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(self.greeting)
        handler.wfile.flush()
        connection = Connection(handler)
        self.connections.append(connection)
        connection.done.wait()

    @staticmethod
    def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def send(self, data: bytes) -> None:
        """Write to the newest connection."""
        connection = self.connections[-1]
        connection.handler.wfile.write(data)
        connection.handler.wfile.flush()

    def drop(self) -> None:
        """Close the newest connection (Marathon closing the stream)."""
        self.connections[-1].done.set()

    def stop(self) -> None:
        for connection in self.connections:
            connection.done.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class Consumer:
    """Iterates an EventStream in a thread, collecting events or the error that ended it."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.events: list[Event] = []
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.stream:
                self.events.append(event)
        except BaseException as exc:
            self.error = exc

    def types(self) -> list[str]:
        return [e.type for e in self.events]


@pytest.fixture
def sse_server() -> Iterator[Callable[..., SSEServer]]:
    servers: list[SSEServer] = []

    def start(**kwargs: Any) -> SSEServer:
        server = SSEServer(**kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def consume() -> Iterator[Callable[[EventStream], Consumer]]:
    consumers: list[Consumer] = []

    def start(stream: EventStream) -> Consumer:
        consumer = Consumer(stream)
        consumers.append(consumer)
        return consumer

    yield start
    for consumer in consumers:
        consumer.stream.close()
        consumer.thread.join(timeout=15)
        assert not consumer.thread.is_alive()


def test_receives_events_after_on_connect_with_the_exact_request(
    sse_server: Any, consume: Any
) -> None:
    server = sse_server()
    client = MarathonClient(server.url, backoff=0.01)
    seen_at_connect: list[int] = []
    consumer: Optional[Consumer] = None

    def on_connect() -> None:
        seen_at_connect.append(len(consumer.events) if consumer else 0)

    stream = client.event_stream(
        ["status_update_event", "event_stream_attached"], on_connect=on_connect
    )
    consumer = consume(stream)
    wait_until(lambda: consumer.types() == ["event_stream_attached"])
    server.send(frame("status_update_event", taskId="t1", taskStatus="TASK_RUNNING"))
    wait_until(lambda: len(consumer.events) == 2)
    assert consumer.events[1] == Event(
        "status_update_event",
        {
            "taskId": "t1",
            "taskStatus": "TASK_RUNNING",
            "eventType": "status_update_event",
            "timestamp": "2021-02-10T12:00:00.000Z",
        },
    )
    assert seen_at_connect == [0]
    assert stream.connects == 1
    path, headers = server.requests[0]
    assert headers["Accept"] == "text/event-stream"
    assert urlsplit(path).path == "/v2/events"
    assert parse_qsl(urlsplit(path).query) == [
        ("event_type", "status_update_event"),
        ("event_type", "event_stream_attached"),
        ("plan-format", "light"),
    ]


def test_heartbeats_keep_a_quiet_stream_open(sse_server: Any, consume: Any) -> None:
    server = sse_server()
    stream = MarathonClient(server.url).event_stream(read_timeout=1.5)
    consumer = consume(stream)
    wait_until(lambda: consumer.events)
    beating = threading.Event()

    def beat() -> None:
        while not beating.wait(0.05):
            server.send(b"\r\n")

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        wait_until(lambda: stream.heartbeats >= 50)  # at least 2.5 s > read_timeout of beats
    finally:
        beating.set()
        beater.join(timeout=10)
    server.send(frame("api_post_event", uri="/v2/apps/x"))
    wait_until(lambda: len(consumer.events) == 2)
    assert stream.connects == 1
    assert len(server.connections) == 1


def test_silence_beyond_the_read_timeout_reconnects_and_resyncs(
    sse_server: Any, consume: Any
) -> None:
    server = sse_server()
    resyncs: list[int] = []
    stream = MarathonClient(server.url, backoff=0.01).event_stream(
        read_timeout=0.5, on_connect=lambda: resyncs.append(1)
    )
    consumer = consume(stream)
    wait_until(lambda: stream.connects >= 2 and len(server.connections) >= 2)
    wait_until(lambda: len(resyncs) >= 2)
    wait_until(lambda: consumer.types()[:2] == ["event_stream_attached", "event_stream_attached"])
    assert consumer.error is None


def test_a_stream_closed_by_marathon_reconnects_and_resyncs(sse_server: Any, consume: Any) -> None:
    server = sse_server()
    resyncs: list[int] = []
    stream = MarathonClient(server.url, backoff=0.01).event_stream(
        on_connect=lambda: resyncs.append(1)
    )
    consumer = consume(stream)
    wait_until(lambda: len(server.connections) == 1 and consumer.events)
    server.drop()
    wait_until(lambda: len(server.connections) == 2 and len(consumer.events) == 2)
    server.send(frame("app_terminated_event", appId="/x"))
    wait_until(lambda: consumer.types()[-1:] == ["app_terminated_event"])
    assert stream.connects == 2
    assert len(resyncs) == 2


def test_a_standbys_302_is_followed_with_the_token_resent(sse_server: Any, consume: Any) -> None:
    leader = sse_server(token="s3cret")
    standby = sse_server(redirect_to=leader.url.replace("127.0.0.1", "localhost"))
    client = MarathonClient(standby.url, auth=TokenAuth("s3cret"), backoff=0.01)
    consumer = consume(client.event_stream(["deployment_success"]))
    wait_until(lambda: leader.connections)
    leader.send(frame("deployment_success", id="d1"))
    wait_until(lambda: consumer.types() == ["event_stream_attached", "deployment_success"])
    assert consumer.error is None
    path, headers = leader.requests[0]
    assert headers["Authorization"] == "token=s3cret"
    assert headers["Accept"] == "text/event-stream"
    assert parse_qsl(urlsplit(path).query) == [
        ("event_type", "deployment_success"),
        ("plan-format", "light"),
    ]
    assert len(standby.requests) == 1


def test_close_from_another_thread_ends_iteration(sse_server: Any, consume: Any) -> None:
    server = sse_server()
    stream = MarathonClient(server.url).event_stream(read_timeout=300.0)
    consumer = consume(stream)
    wait_until(lambda: consumer.events)
    stream.close()
    consumer.thread.join(timeout=15)
    assert not consumer.thread.is_alive()
    assert consumer.error is None
    assert stream.connects == 1


def test_close_while_waiting_to_reconnect_ends_iteration(consume: Any) -> None:
    attempts: list[float] = []

    def opener(read_timeout: float) -> Any:
        attempts.append(read_timeout)
        raise Unavailable("connection refused")

    stream = EventStream(opener, backoff=60.0, read_timeout=7.0)
    consumer = consume(stream)
    wait_until(lambda: attempts)
    stream.close()
    consumer.thread.join(timeout=15)
    assert not consumer.thread.is_alive()
    assert attempts == [7.0]
    assert stream.connects == 0


def test_wrong_credentials_raise_instead_of_looping(sse_server: Any, consume: Any) -> None:
    server = sse_server(token="right")
    consumer = consume(MarathonClient(server.url, auth=TokenAuth("wrong")).event_stream())
    consumer.thread.join(timeout=15)
    assert isinstance(consumer.error, Unauthorized)
    assert consumer.error.message == "Invalid username or password."


def test_other_refusals_and_dead_urls_are_retried(sse_server: Any, consume: Any) -> None:
    server = sse_server(refuse=[405, 503])
    client = MarathonClient([f"http://127.0.0.1:{free_port()}", server.url], backoff=0.01)
    stream = client.event_stream()
    consumer = consume(stream)
    wait_until(lambda: consumer.events)
    assert stream.connects == 1
    assert len(server.requests) == 3
    assert client.urls[0] == server.url


def test_a_frame_that_is_not_json_is_skipped(sse_server: Any, consume: Any) -> None:
    server = sse_server()
    stream = MarathonClient(server.url).event_stream()
    consumer = consume(stream)
    wait_until(lambda: consumer.events)
    server.send(b"event: status_update_event\r\ndata: {not json\r\n\r\n")
    server.send(frame("status_update_event", taskId="t2"))
    wait_until(lambda: len(consumer.events) == 2)
    assert consumer.events[1].data["taskId"] == "t2"
    assert stream.connects == 1


def test_last_activity_follows_received_bytes(sse_server: Any, consume: Any) -> None:
    server = sse_server()
    stream = MarathonClient(server.url).event_stream()
    consumer = consume(stream)
    wait_until(lambda: consumer.events)
    before = stream.last_activity
    assert before > 0
    server.send(b"\r\n")
    wait_until(lambda: stream.heartbeats == 1)
    assert stream.last_activity > before


def test_setting_stop_ends_iteration_at_the_next_read(sse_server: Any, consume: Any) -> None:
    server = sse_server()
    stop = threading.Event()
    stream = MarathonClient(server.url).event_stream(read_timeout=300.0, stop=stop)
    consumer = consume(stream)
    wait_until(lambda: consumer.events)
    stop.set()
    server.send(b"\r\n")
    consumer.thread.join(timeout=15)
    assert not consumer.thread.is_alive()
    assert stream.closed


def test_a_failed_resync_drops_the_connection_and_tries_again(
    sse_server: Any, consume: Any
) -> None:
    server = sse_server()
    outcomes = [Unavailable("snapshot failed")]

    def on_connect() -> None:
        if outcomes:
            raise outcomes.pop()

    stream = MarathonClient(server.url, backoff=0.01).event_stream(on_connect=on_connect)
    consumer = consume(stream)
    wait_until(lambda: consumer.events)
    assert stream.connects == 2
    assert len(server.connections) == 2
    assert consumer.error is None
