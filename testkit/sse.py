"""A raw-socket client of an SSE endpoint (``/v2/events``) that records every byte it gets."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Any, Optional

from testkit.waiting import wait_until


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
