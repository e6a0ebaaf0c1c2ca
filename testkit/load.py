"""Loopback load for the zero-drop tests and benches: Python clients that count every outcome,
and ``wrk`` runs in the background.

:class:`LoadGenerator` runs keep-alive clients (one ``requests.Session`` each, no retries) and
new-connection clients (``Connection: close``) over a changing set of service ports, and counts
every request, failure and answering task per port.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional

import requests

from testkit.http import ask
from testkit.waiting import wait_until

RECENT_KEPT = 40


@dataclass
class PortStats:
    """What the clients saw on one service port."""

    sent: int = 0
    ok: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the report
    by_task: Counter[str] = field(default_factory=Counter)
    # per task id: the latest request *start* time (monotonic) that this task answered
    last_start: dict[str, float] = field(default_factory=dict)
    # the task ids of the latest answers, newest last
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_KEPT))

    def copy(self) -> PortStats:
        return PortStats(
            self.sent,
            self.ok,
            self.failures,
            list(self.errors),
            Counter(self.by_task),
            dict(self.last_start),
            deque(self.recent, maxlen=RECENT_KEPT),
        )


MAX_ERRORS_KEPT = 50


class LoadGenerator:
    """Background clients hammering service ports on 127.0.0.1; counts every outcome.

    ``keepalive`` threads each use one ``requests.Session`` (pooled keep-alive connections, no
    retries); ``fresh`` threads open a new connection per request (``Connection: close``).
    Each thread cycles over the current target ports; :meth:`add_port` adds one under load.
    """

    def __init__(
        self,
        ports: Sequence[int] = (),
        *,
        keepalive: int = 3,
        fresh: int = 2,
        timeout: float = 5.0,
        pause: float = 0.0,
    ) -> None:
        self._ports = list(ports)
        self.keepalive = keepalive
        self.fresh = fresh
        self.timeout = timeout
        self.pause = pause
        self._lock = threading.Lock()
        self._stats: dict[int, PortStats] = {p: PortStats() for p in self._ports}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started_at = 0.0
        self.stopped_at = 0.0

    # -- control

    def start(self) -> LoadGenerator:
        self._stop.clear()
        self.started_at = time.monotonic()
        for i in range(self.keepalive):
            self._spawn(f"load-ka-{i}", self._keepalive_client, i)
        for i in range(self.fresh):
            self._spawn(f"load-new-{i}", self._fresh_client, i)
        return self

    def _spawn(self, name: str, target: Callable[[int], None], index: int) -> None:
        thread = threading.Thread(target=target, args=(index,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self._threads.clear()
        self.stopped_at = time.monotonic()

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_port(self, port: int) -> None:
        with self._lock:
            if port not in self._ports:
                self._ports.append(port)
                self._stats[port] = PortStats()

    def remove_port(self, port: int) -> None:
        with self._lock:
            if port in self._ports:
                self._ports.remove(port)

    # -- reading

    def ports(self) -> list[int]:
        with self._lock:
            return list(self._ports)

    def stats(self, port: int) -> PortStats:
        with self._lock:
            return self._stats[port].copy()

    def totals(self) -> PortStats:
        total = PortStats()
        with self._lock:
            for stats in self._stats.values():
                total.sent += stats.sent
                total.ok += stats.ok
                total.failures += stats.failures
                total.errors.extend(stats.errors)
                total.by_task.update(stats.by_task)
                total.recent.extend(stats.recent)
        return total

    def answered(self) -> int:
        """Requests answered with 200 by a task, over every port."""
        return self.totals().ok

    def recent_answers(self) -> set[str]:
        """The tasks that gave the latest answers (up to 40 per port)."""
        with self._lock:
            return {task for stats in self._stats.values() for task in stats.recent}

    def wait_for_requests(self, port: int, more: int, timeout: float = 60.0) -> None:
        """Wait until ``more`` further requests were answered (or failed) on ``port``."""
        target = self.stats(port).sent + more
        wait_until(lambda: self.stats(port).sent >= target, timeout, message=f"{more} requests")

    # -- clients

    def _next_port(self, turn: int) -> Optional[int]:
        with self._lock:
            if not self._ports:
                return None
            return self._ports[turn % len(self._ports)]

    def _record(self, port: int, started: float, task_id: Optional[str], error: str) -> None:
        with self._lock:
            stats = self._stats.setdefault(port, PortStats())
            stats.sent += 1
            if task_id is not None:
                stats.ok += 1
                stats.by_task[task_id] += 1
                stats.recent.append(task_id)
                if started > stats.last_start.get(task_id, 0.0):
                    stats.last_start[task_id] = started
            else:
                stats.failures += 1
                if len(stats.errors) < MAX_ERRORS_KEPT:
                    stats.errors.append(f"{time.monotonic() - self.started_at:.2f}s {error}")

    def _keepalive_client(self, index: int) -> None:
        with requests.Session() as session:
            self._client_loop(index, lambda port: self._ask_session(session, port))

    def _fresh_client(self, index: int) -> None:
        self._client_loop(index, self._ask_new_connection)

    def _client_loop(self, turn: int, ask_port: Callable[[int], tuple[Optional[str], str]]) -> None:
        """Ask the ports in turn until stopped; ``ask_port`` gives (task id, "") or
        (None, what went wrong)."""
        while not self._stop.is_set():
            port = self._next_port(turn)
            turn += 1
            if port is None:
                self._stop.wait(0.01)
                continue
            started = time.monotonic()
            task_id, error = ask_port(port)
            self._record(port, started, task_id, error)
            if self.pause:
                self._stop.wait(self.pause)

    def _ask_session(self, session: requests.Session, port: int) -> tuple[Optional[str], str]:
        try:
            resp = session.get(f"http://127.0.0.1:{port}/", timeout=self.timeout)
        except requests.RequestException as exc:
            return None, f"ka {type(exc).__name__}: {exc}"[:300]
        body = resp.text.strip()
        if resp.status_code == 200 and body:
            return body, ""
        return None, f"ka HTTP {resp.status_code}"

    def _ask_new_connection(self, port: int) -> tuple[Optional[str], str]:
        answer = ask(port, self.timeout)
        return (None, f"new {answer}") if answer.startswith("error:") else (answer, "")


# ----------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    non_2xx: int
    output: str

    @property
    def failures(self) -> int:
        return (
            self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeouts
            + self.non_2xx
        )


def parse_wrk(output: str) -> WrkResult:
    """The counts of wrk 4.1's text summary."""
    requests_done, seconds = 0, 0.0
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    non_2xx = 0
    for line in output.splitlines():
        text = line.strip()
        if " requests in " in text:
            count, _, rest = text.partition(" requests in ")
            requests_done = int(count)
            seconds = _wrk_seconds(rest.split(",")[0].strip())
        elif text.startswith("Socket errors:"):
            for part in text.split(":", 1)[1].split(","):
                name, value = part.split()
                errors[name] = int(value)
        elif text.startswith("Non-2xx or 3xx responses:"):
            non_2xx = int(text.split(":", 1)[1])
    return WrkResult(
        requests_done,
        seconds,
        errors["connect"],
        errors["read"],
        errors["write"],
        errors["timeout"],
        non_2xx,
        output,
    )


def _wrk_seconds(text: str) -> float:
    for suffix, scale in (("ms", 0.001), ("us", 0.000001), ("m", 60.0), ("s", 1.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


class Wrk:
    """One ``wrk`` run in the background (``close=True``: a new connection per request)."""

    def __init__(
        self, port: int, seconds: float, *, connections: int = 8, close: bool = False
    ) -> None:
        args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
        args += ["--timeout", "5s"]
        if close:
            args += ["-H", "Connection: close"]
        args.append(f"http://127.0.0.1:{port}/")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def result(self, timeout: float = 600.0) -> WrkResult:
        out, _ = self.proc.communicate(timeout=timeout)
        return parse_wrk(out.decode("utf-8", "replace"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
