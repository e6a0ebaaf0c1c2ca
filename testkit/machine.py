"""What every benchmark prints with its figures: the machine, and percentiles of samples."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


def find_haproxy() -> str:
    """Debian's haproxy (``scripts/setup.sh`` installs it); ``RuntimeError`` when missing."""
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(found).exists():
        raise RuntimeError("haproxy is not installed: run scripts/setup.sh")
    return found


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine_facts(haproxy_bin: str = "haproxy") -> dict[str, str]:
    """nproc, memory, load average, haproxy and python versions."""
    facts = {"nproc": str(os.cpu_count()), "python": platform.python_version()}
    try:
        out = subprocess.run(["free", "-h"], capture_output=True, text=True, timeout=10).stdout
        facts["mem_total"] = out.splitlines()[1].split()[1]
    except (OSError, IndexError, subprocess.SubprocessError):
        facts["mem_total"] = "?"
    try:
        version = subprocess.run([haproxy_bin, "-v"], capture_output=True, text=True, timeout=10)
        facts["haproxy"] = version.stdout.splitlines()[0].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        facts["haproxy"] = "?"
    facts["loadavg"] = load_average()
    return facts


def load_average() -> str:
    """The 1, 5 and 15 minute load averages ("?" when unknown): figures from a loaded
    machine are not comparable with an idle one's."""
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"
