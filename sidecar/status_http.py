"""The status servers' HTTP plumbing: a threaded server on one address and a request handler base.

``marathon-sidecar`` and ``marathon-publisher`` both serve their status this way: a handler class
implements ``route(path)`` with :meth:`StatusHandler.send` and :meth:`StatusHandler.send_json`;
:class:`StatusHTTPServer` runs it on its own daemon thread. GET and HEAD only; an error in a route
answers 500 and is logged, never reaches the server.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, TypeVar

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"

Server = TypeVar("Server", bound="StatusHTTPServer")


class StatusHandler(BaseHTTPRequestHandler):
    """One request; subclasses implement :meth:`route` and may log under their own ``log``."""

    sys_version = ""
    log: logging.Logger = log

    def route(self, path: str) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        try:
            self.route(self.path.split("?", 1)[0])
        except BrokenPipeError:
            pass
        except Exception:
            self.log.exception("status request failed", extra={"path": self.path[:200]})
            self.send(500, TEXT, b"internal error\n")

    def do_HEAD(self) -> None:
        self.do_GET()

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body, indent=2, sort_keys=True).encode("utf-8") + b"\n"
        self.send(status, "application/json", data)

    def send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        self.log.debug("status request", extra={"request": self.requestline[:200]})


class StatusHTTPServer:
    """A small threaded HTTP server for one handler class (loopback by default)."""

    def __init__(
        self, handler: type[StatusHandler], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    def start(self: Server) -> Server:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="status-server"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
