"""Helpers for the emulator tests: polling, a raw SSE reader, example loading, shape comparison."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "marathon-api" / "examples"


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        threading.Event().wait(0.01)


def example(relative: str) -> Any:
    """A JSON example from the shared Marathon examples."""
    return json.loads((EXAMPLES / relative).read_text())


def example_bytes(relative: str) -> bytes:
    return (EXAMPLES / relative).read_bytes()


def json_kind(value: Any) -> str:
    """JSON type name; ints and floats are both "number" (Jackson vs play-json formatting)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def shape_differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Differences in keys and JSON types between two documents (values ignored).

    Lists are compared element-wise against the expected list's first element.
    """
    problems: list[str] = []
    if json_kind(expected) != json_kind(actual):
        return [f"{path or '/'}: expected {json_kind(expected)}, got {json_kind(actual)}"]
    if isinstance(expected, dict):
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        if missing:
            problems.append(f"{path or '/'}: missing keys {missing}")
        if extra:
            problems.append(f"{path or '/'}: extra keys {extra}")
        for key in expected:
            if key in actual:
                problems += shape_differences(expected[key], actual[key], f"{path}/{key}")
    elif isinstance(expected, list) and expected and actual:
        for index, item in enumerate(actual):
            problems += shape_differences(expected[0], item, f"{path}({index})")
    return problems


class SSEReader:
    """A raw-socket ``/v2/events`` client that records every byte (reader thread)."""

    def __init__(
        self, url: str, query: str = "", accept: str = "text/event-stream", headers: str = ""
    ) -> None:
        host_port = url.split("://", 1)[1]
        host, port = host_port.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        target = "/v2/events" + (f"?{query}" if query else "")
        request = f"GET {target} HTTP/1.1\r\nHost: {host_port}\r\nAccept: {accept}\r\n{headers}\r\n"
        self.sock.sendall(request.encode())
        self.raw = b""
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        self.sock.settimeout(None)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                with self._lock:
                    self.raw += chunk
        except OSError:
            pass
        finally:
            self.closed.set()

    def data(self) -> bytes:
        with self._lock:
            return self.raw

    def head_and_body(self) -> tuple[bytes, bytes]:
        data = self.data()
        head, _, body = data.partition(b"\r\n\r\n")
        return head, body

    def status(self) -> int:
        head, _ = self.head_and_body()
        return int(head.split(b" ", 2)[1]) if head else 0

    def headers(self) -> dict[str, str]:
        head, _ = self.head_and_body()
        out = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            out[name.strip().lower()] = value.strip()
        return out

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """(type, payload) of every complete frame so far."""
        _, body = self.head_and_body()
        out = []
        for block in body.split(b"\r\n\r\n"):
            lines = [line for line in block.split(b"\r\n") if line]
            event = [ln[len(b"event: ") :] for ln in lines if ln.startswith(b"event: ")]
            data = [ln[len(b"data: ") :] for ln in lines if ln.startswith(b"data: ")]
            if event and data:
                try:
                    out.append((event[0].decode(), json.loads(data[0])))
                except ValueError:
                    continue  # an incomplete last frame
        return out

    def event_types(self) -> list[str]:
        return [t for t, _ in self.events()]

    def wait_event(self, event_type: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        def find() -> Optional[dict[str, Any]]:
            for kind, payload in self.events():
                if kind == event_type and all(payload.get(k) == v for k, v in match.items()):
                    return payload
            return None

        found: dict[str, Any] = wait_until(find, timeout, f"event {event_type} {match}")
        return found

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(timeout=5)
