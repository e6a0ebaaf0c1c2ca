"""A load generator in its own process: a new connection for every request, at a steady rate.

Usage: python load_process.py STATS_FILE RATE HOST:PORT [HOST:PORT...]

Worker threads share one schedule of RATE requests per second (request n is due at start + n /
RATE; a late worker sends at once), each request going to the next target in turn: connect,
``GET /`` with ``Connection: close``, read to the end. A request counts as ok when the answer is
``200`` with a body (the echo task's id). Every quarter second, and once more after SIGTERM, the
figures go to STATS_FILE as JSON (written aside, then renamed), per target: ``sent``, ``ok``,
``failures``, the first ``errors``, ``by_task`` (answers per task) and ``last_start`` (per task,
the CLOCK_MONOTONIC start time of the latest request it answered), plus ``started``/``now``.

Its own process (and GIL), so the test process's threads neither slow it nor are slowed by it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Optional

WORKERS = 12
TIMEOUT = 5.0
MAX_ERRORS = 20
REQUEST = b"GET / HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n"


class Stats:
    def __init__(self, targets: list[tuple[str, int]]) -> None:
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.targets = {f"{h}:{p}": _empty() for h, p in targets}

    def record(self, target: str, started: float, task: Optional[str], error: str) -> None:
        with self.lock:
            entry = self.targets[target]
            entry["sent"] += 1
            if task is not None:
                entry["ok"] += 1
                entry["by_task"][task] = entry["by_task"].get(task, 0) + 1
                if started > entry["last_start"].get(task, 0.0):
                    entry["last_start"][task] = started
            else:
                entry["failures"] += 1
                if len(entry["errors"]) < MAX_ERRORS:
                    entry["errors"].append(f"{started - self.started:.2f}s {error}")

    def write(self, path: str) -> None:
        with self.lock:
            body = json.dumps(
                {"started": self.started, "now": time.monotonic(), "targets": self.targets}
            )
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            out.write(body)
        os.replace(path + ".tmp", path)


def _empty() -> dict[str, Any]:
    return {"sent": 0, "ok": 0, "failures": 0, "errors": [], "by_task": {}, "last_start": {}}


def ask(host: str, port: int) -> tuple[Optional[str], str]:
    """(task id, "") or (None, what went wrong)."""
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
            sock.sendall(REQUEST)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:200]
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.") or status.split()[1:2] != [b"200"] or not body.strip():
        return None, f"answer {status[:60]!r} body {body[:60]!r}"
    return body.strip().decode("utf-8", "replace"), ""


def run(stats_path: str, rate: float, targets: list[tuple[str, int]]) -> None:
    stats = Stats(targets)
    stop = threading.Event()
    counter = iter(range(sys.maxsize))
    counter_lock = threading.Lock()

    def work() -> None:
        while not stop.is_set():
            with counter_lock:
                n = next(counter)
            due = stats.started + n / rate
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):  # pacing the schedule, not waiting for a state
                return
            host, port = targets[n % len(targets)]
            started = time.monotonic()
            task, error = ask(host, port)
            stats.record(f"{host}:{port}", started, task, error)

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    workers = [threading.Thread(target=work, daemon=True) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    while not stop.wait(0.25):
        stats.write(stats_path)
    for worker in workers:
        worker.join(TIMEOUT + 1)
    stats.write(stats_path)


def main() -> None:
    stats_path, rate = sys.argv[1], float(sys.argv[2])
    targets = []
    for text in sys.argv[3:]:
        host, _, port = text.rpartition(":")
        targets.append((host, int(port)))
    run(stats_path, rate, targets)


if __name__ == "__main__":
    main()
