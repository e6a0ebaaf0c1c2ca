"""A TCP relay on loopback in front of a server (the emulator), that a test can *cut* (port
closed, every relayed connection reset), *restore*, or whose event streams it can *freeze* (the
connection stays open, nothing more arrives: Marathon's bus going silent, marathon #4159)."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Optional

from testkit.ports import free_port


class Relay:
    """A TCP relay on a free loopback port in front of ``target`` (``http://host:port``)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.port = free_port()
        self._listener: Optional[socket.socket] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._frozen: set[int] = set()  # ids of client sockets whose stream is silenced
        self._streams: set[int] = set()
        self._thread: Optional[threading.Thread] = None
        self.cut_now = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Relay:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._stop.clear()
        self.cut_now = False
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        host, port = self.target.rsplit("//", 1)[1].split(":")
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(
                target=self._pipe, args=(client, upstream, client), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, client), daemon=True
            ).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, client: socket.socket) -> None:
        to_client = sink is client
        try:
            source.settimeout(None)
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not to_client and data.startswith(b"GET /v2/events"):
                    with self._lock:
                        self._streams.add(id(client))
                if to_client:
                    with self._lock:
                        frozen = id(client) in self._frozen
                    if frozen:
                        continue  # swallowed: the client hears nothing, the socket stays open
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def freeze_streams(self) -> int:
        """Silence every open event stream (new connections are not affected). How many."""
        with self._lock:
            self._frozen |= self._streams
            return len(self._streams)

    def cut(self) -> None:
        """Close the port and reset every relayed connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
            self._streams.clear()
            self._frozen.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.cut_now = True

    def restore(self) -> None:
        if self.cut_now:
            self.start()

    def stop(self) -> None:
        if not self.cut_now:
            self.cut()
