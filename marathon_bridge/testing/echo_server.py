"""The local task program: ``python -m marathon_bridge.testing.echo_server [--port N] [--drain S]``.

Serves HTTP/1.1 (keep-alive) on 127.0.0.1, port ``--port`` or ``$PORT0``:

- ``GET /`` answers 200 with ``$MESOS_TASK_ID`` (or ``port N`` outside Marathon);
- ``/health`` answers 200, ``/unhealthy`` 503 (a health check on it never passes);
- ``/sleep/<ms>`` answers after that many milliseconds.

On SIGTERM (or SIGINT) it keeps serving for ``--drain`` seconds (default 0.5), then stops
accepting, lets in-flight requests finish and exits 0.

No Python signal handler is involved: the stop signals are blocked in every thread and the main
thread takes them with ``sigwait``. (A handler runs only when the main thread executes bytecode;
a main thread blocked in ``Event.wait()`` is not woken when the kernel hands the signal to one of
the serving threads, and then the server never stopped.)
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from typing import Any, Optional

from marathon_bridge.testing.httpserver import TrackingHTTPServer


class EchoHandler(BaseHTTPRequestHandler):
    """Answers the test paths."""

    protocol_version = "HTTP/1.1"
    server_version = "echo-server"
    disable_nagle_algorithm = True  # headers and body go out without a 40 ms delayed-ACK stall
    sys_version = ""
    identity = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._answer(200, b"ok\n")
        elif path == "/unhealthy":
            self._answer(503, b"unhealthy\n")
        elif path.startswith("/sleep/"):
            try:
                millis = int(path[len("/sleep/") :])
            except ValueError:
                self._answer(400, b"bad sleep\n")
                return
            time.sleep(millis / 1000.0)
            self._answer(200, self.identity.encode("utf-8"))
        else:
            self._answer(200, self.identity.encode("utf-8"))

    def do_HEAD(self) -> None:
        self._answer(200, b"", head=True)

    def _answer(self, status: int, body: bytes, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class EchoServer(TrackingHTTPServer):
    """Non-daemon handler threads so in-flight requests finish before exit."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def end_reading(self) -> None:
        """Idle keep-alive connections see EOF; answers in progress still go out."""
        self.shutdown_connections(socket.SHUT_RD)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="echo_server", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT0", "0") or 0))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--drain", type=float, default=0.5, help="seconds to keep serving after SIGTERM"
    )
    return parser.parse_args(argv)


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    # before any thread starts: every thread inherits the mask, so a stop signal stays pending
    # for the process until the main thread takes it below (none is lost or left unhandled)
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    server = EchoServer((args.host, args.port), EchoHandler)
    port = server.server_address[1]
    EchoHandler.identity = os.environ.get("MESOS_TASK_ID") or f"port {port}"
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    print(f"echo server on {args.host}:{port}", flush=True)
    signal.sigwait(STOP_SIGNALS)
    time.sleep(max(0.0, args.drain))  # keep answering while load balancers drain us
    server.shutdown()  # stop accepting
    serving.join()
    server.end_reading()
    server.server_close()  # joins in-flight handler threads
    return 0


if __name__ == "__main__":
    sys.exit(main())
