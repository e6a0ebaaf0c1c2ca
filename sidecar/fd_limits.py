"""The open-files limit HAProxy runs under and the threads it starts, read at the edge.

An HAProxy the sidecar starts inherits the sidecar's limits: :func:`raise_soft_limit` lifts the
soft limit to the hard one first (only root could go higher), and the hard limit is what the
budget (:mod:`sidecar.fd_budget`) fits ``maxconn`` to. An HAProxy run by someone else
(``--master-socket``) has its own: :class:`ProcessLimit` reads it from ``/proc/<master>/limits``.
"""

from __future__ import annotations

import logging
import os
import resource
from pathlib import Path
from typing import Callable, Optional

from sidecar.fd_budget import MAX_THREADS

log = logging.getLogger(__name__)

NR_OPEN = Path("/proc/sys/fs/nr_open")  # the kernel's ceiling for any process's limit


def kernel_ceiling() -> Optional[int]:
    try:
        return int(NR_OPEN.read_text().strip())
    except (OSError, ValueError):
        return None


def _bounded(value: int) -> int:
    """A limit as a number: "unlimited" is the kernel's ceiling."""
    ceiling = kernel_ceiling()
    if value == resource.RLIM_INFINITY or value < 0:
        return ceiling if ceiling is not None else 1 << 20
    return min(value, ceiling) if ceiling is not None else value


def raise_soft_limit() -> int:
    """Raise this process's soft open-files limit to the hard one; the hard limit (what an
    HAProxy started from here may use)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _bounded(hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-files soft limit", extra={"error": str(exc)})
            return _bounded(soft)
        log.info("open-files soft limit raised", extra={"from": soft, "to": target})
    return target


def haproxy_threads(configured: Optional[int]) -> int:
    """HAProxy's threads: ``nbthread`` when set, else the CPUs this process may run on (HAProxy
    2.6's default, at most 64)."""
    if configured:
        return configured
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cpus))


def hard_limit_of(pid: int, proc: Path = Path("/proc")) -> Optional[int]:
    """The hard open-files limit of process ``pid`` (``None`` when it cannot be read)."""
    try:
        text = (proc / str(pid) / "limits").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Max open files"):
            words = line.split()
            hard = words[4] if len(words) > 4 else ""
            if hard == "unlimited":
                return _bounded(resource.RLIM_INFINITY)
            return _bounded(int(hard)) if hard.isdigit() else None
    return None


class ProcessLimit:
    """The hard limit of an HAProxy master run elsewhere, read once it is known."""

    def __init__(self, master_pid: Callable[[], Optional[int]]) -> None:
        self._master_pid = master_pid
        self._limit: Optional[int] = None

    def __call__(self) -> Optional[int]:
        if self._limit is None:
            try:
                pid = self._master_pid()
            except Exception:  # the master CLI may not answer yet: unknown for now
                pid = None
            if pid:
                self._limit = hard_limit_of(pid)
        return self._limit
