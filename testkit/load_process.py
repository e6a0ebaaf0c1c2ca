"""A load generator in its own process: a new connection for every request, at a steady rate.

:class:`LoadProcess` runs ``python -m testkit.load_process STATS_FILE RATE HOST:PORT...`` and
reads its figures; unlike :class:`testkit.load.LoadGenerator` (threads of the test process, on
127.0.0.1) it has its own GIL, aims at any loopback address and keeps a steady rate.

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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

from testkit.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent

WORKERS = 24  # enough to keep the pace while a loaded machine slows answers down
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


class LoadProcess:
    """The load process against ``host:port`` targets at ``rate`` requests per second."""

    def __init__(self, targets: list[str], rate: float = 600.0) -> None:
        self.targets = targets
        self.workdir = tempfile.mkdtemp(prefix="zk-load-", dir="/tmp")
        self.stats_path = str(Path(self.workdir) / "stats.json")
        command = [sys.executable, "-m", "testkit.load_process", self.stats_path, str(rate)]
        self.proc = subprocess.Popen([*command, *targets], cwd=str(ROOT))
        self.final: Optional[dict[str, Any]] = None

    def stats(self) -> dict[str, Any]:
        """The latest figures (see the module doc); the final ones once stopped."""
        if self.final is not None:
            return self.final
        try:
            return dict(json.loads(Path(self.stats_path).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {"started": 0.0, "now": 0.0, "targets": {}}

    def sent(self) -> int:
        return sum(t["sent"] for t in self.stats()["targets"].values())

    def wait_for_requests(self, more: int, timeout: float = 120.0) -> None:
        target = self.sent() + more
        wait_until(lambda: self.sent() >= target, timeout, f"{more} more requests")

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.final = self.stats()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.final

    def summary(self) -> dict[str, Any]:
        """Requests, failures, the rate, and the first errors over every target."""
        stats = self.stats()
        targets = stats["targets"].values()
        sent = sum(t["sent"] for t in targets)
        seconds = max(1e-9, stats["now"] - stats["started"])
        return {
            "requests": sent,
            "failures": sum(t["failures"] for t in targets),
            "rate": round(sent / seconds, 1),
            "errors": [e for t in targets for e in t["errors"]][:10],
        }


def main() -> None:
    stats_path, rate = sys.argv[1], float(sys.argv[2])
    targets = []
    for text in sys.argv[3:]:
        host, _, port = text.rpartition(":")
        targets.append((host, int(port)))
    run(stats_path, rate, targets)


if __name__ == "__main__":
    main()
