"""Sampling a running Python process with ``py-spy`` (``pip install py-spy``; a benchmark tool,
not a dependency of the project): where its CPU goes, as the top functions by own and by total
samples."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, Optional

TOP = 30


class PySpy:
    """``py-spy record`` on ``pid`` in the background until :meth:`stop` (active threads only,
    without pausing the process)."""

    def __init__(self, pid: int, workdir: Path, rate: int = 200) -> None:
        binary = shutil.which("py-spy")
        if binary is None:
            raise RuntimeError("py-spy is not installed: pip install py-spy")
        self.out = workdir / f"py-spy-{pid}.txt"
        self.argv = [binary, "record", "--pid", str(pid), "--rate", str(rate)]
        self.argv += ["--nonblocking", "--format", "raw", "--output", str(self.out)]
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> PySpy:
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return self

    def stop(self) -> dict[str, Any]:
        """Stop sampling; the top functions (see :func:`top_functions`)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(60)
            self.proc = None
        return top_functions(self.out.read_text() if self.out.exists() else "")


def top_functions(collapsed: str, top: int = TOP) -> dict[str, Any]:
    """From collapsed stacks (``frame;frame;... count`` lines, the innermost frame last): the
    samples, and the ``top`` functions by own samples and by samples anywhere in the stack,
    each as ``[function (file:line), percent]``."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_without_line(f) for f in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count

    def ranked(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100.0 * n / samples, 1)] for name, n in counter.most_common(top)]

    return {"samples": samples, "own": ranked(own), "total": ranked(total)} if samples else {}


def _without_line(frame: str) -> str:
    """``fn (path/to/file.py:123)`` -> ``fn (file.py)``: one entry per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')').rsplit(':', 1)[0]).name})" if where else name
