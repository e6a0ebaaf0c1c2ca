"""HAProxy processes as /proc shows them: which run with a given state dir, which are masters."""

from __future__ import annotations

import time
from pathlib import Path


def _haproxy_scan(marker: str) -> tuple[dict[int, int], bool]:
    """(pid -> parent pid of the live haproxy processes naming ``marker``, whether an haproxy
    was between two programs: a master re-executing itself shows no command line for a
    moment)."""
    found: dict[int, int] = {}
    between = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        comm, _, rest = stat.partition("(")[2].rpartition(")")
        state, parent = rest.split()[:2]
        if "haproxy" not in comm or state == "Z":  # a zombie: a dead master nobody reaped
            continue
        between = between or argv == [b""]
        if any(marker.encode() in a for a in argv):
            found[int(entry.name)] = int(parent)
    return found, between


def haproxy_processes(marker: str) -> dict[int, int]:
    """Live haproxy processes whose command line names ``marker`` (a state dir, config or
    socket path): pid -> parent pid. Read again while one is between two programs."""
    deadline = time.monotonic() + 1.0
    while True:
        found, between = _haproxy_scan(marker)
        if not between or time.monotonic() >= deadline:
            return found
        time.sleep(0.005)


def haproxy_masters(marker: str) -> list[int]:
    """The masters of :func:`haproxy_processes`: a process whose parent is one of them is a
    worker (workers carry their master's command line)."""
    found = haproxy_processes(marker)
    return sorted(pid for pid, parent in found.items() if parent not in found)
