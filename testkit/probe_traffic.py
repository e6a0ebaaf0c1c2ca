"""Traffic to one service port from a process of its own, recording which task answered each
request and when the request started, to see from outside when HAProxy's routing changed.

:class:`ProbeTraffic` runs ``python -m testkit.probe_traffic PORT OUT`` (one keep-alive HTTP
client on 127.0.0.1:PORT, as fast as answers come; an echo task answers with its task id) and,
once stopped, reads back its :class:`Answer` records. Times are ``time.monotonic()`` of the
benchmark's process too (the same system-wide clock), so they compare with the emulator's event
times. Its own process keeps the client off the interpreter that runs the emulator. Unlike
:mod:`testkit.load_process` (a steady rate, figures per task) it keeps every request.

:func:`last_reached` and :func:`first_reached` read the records: when requests stopped reaching
a task, and when they started to.
"""

from __future__ import annotations

import bisect
import http.client
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from testkit.process import ROOT, terminate


@dataclass(frozen=True)
class Answer:
    """One request: its start (monotonic seconds) and the task that answered (``error:...``
    when none did)."""

    start: float
    task: str

    @property
    def ok(self) -> bool:
        return not self.task.startswith("error:")


class ProbeTraffic:
    """The client process on one port (see the module's text)."""

    def __init__(self, port: int, out_path: Path) -> None:
        self.port = port
        self.out_path = out_path
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> ProbeTraffic:
        argv = [sys.executable, "-m", "testkit.probe_traffic", str(self.port), str(self.out_path)]
        self.proc = subprocess.Popen(argv, cwd=ROOT)
        return self

    def stop(self) -> list[Answer]:
        """Stop the client and return every request it made, in order."""
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None
        return read_answers(self.out_path)


def read_answers(path: Path) -> list[Answer]:
    answers = []
    for line in path.read_text().splitlines():
        start, _, task = line.partition(" ")
        if task:
            answers.append(Answer(int(start) / 1e9, task))
    return answers


def last_reached(answers: Sequence[Answer], task: str, since: float, until: float) -> float:
    """The start of the last request in [since, until) that ``task`` answered; ``since`` when
    none did (it was out of rotation before the next request)."""
    starts = [a.start for a in answers]
    low, high = bisect.bisect_left(starts, since), bisect.bisect_left(starts, until)
    for answer in reversed(answers[low:high]):
        if answer.task == task:
            return answer.start
    return since


def first_reached(answers: Sequence[Answer], task: str, since: float) -> Optional[float]:
    """The start of the first request at or after ``since`` that ``task`` answered."""
    starts = [a.start for a in answers]
    for answer in answers[bisect.bisect_left(starts, since) :]:
        if answer.task == task:
            return answer.start
    return None


# ----------------------------------------------------------------------------- the client


def _ask(conn: http.client.HTTPConnection) -> str:
    conn.request("GET", "/")
    response = conn.getresponse()
    body = response.read().decode("utf-8", "replace").strip()
    return body if response.status == 200 and body else f"error:{response.status}"


def run_client(port: int, out_path: str) -> int:
    """Ask 127.0.0.1:``port`` until SIGTERM; one ``<start ns> <answer>`` line per request."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
    with open(out_path, "w", buffering=1 << 20) as out:
        while not stopping:
            start = time.monotonic_ns()
            try:
                answer = _ask(conn)
            except (OSError, http.client.HTTPException) as exc:
                answer = f"error:{type(exc).__name__}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
            out.write(f"{start} {answer}\n")
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_client(int(sys.argv[1]), sys.argv[2]))
