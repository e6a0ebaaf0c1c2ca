"""What a process costs, read from /proc: CPU seconds (every thread, user + system) and resident
memory. For benchmarks that measure the sidecar and HAProxy from outside."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, all its threads (not its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def total_cpu_seconds(pids: Iterable[int]) -> float:
    """:func:`cpu_seconds` summed over ``pids`` (a process that is gone counts 0)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory line of /proc/<pid>/status in KiB: ``VmRSS`` (resident now), ``VmHWM`` (its
    peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"no {field} for pid {pid}")


def total_rss_mib(pids: Iterable[int]) -> float:
    """Resident memory of ``pids`` together, in MiB (shared pages count once per process)."""
    total = 0
    for pid in pids:
        try:
            total += memory_kib(pid)
        except (OSError, ValueError):
            continue
    return total / 1024.0
