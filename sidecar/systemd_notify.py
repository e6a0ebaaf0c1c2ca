"""systemd's notification protocol (``sd_notify``) without libsystemd, for ``Type=notify`` units.

Used only when systemd asks for it (``$NOTIFY_SOCKET``: a socket path, or ``@name`` in the
abstract namespace). The daemon sends:

- ``READY=1`` once, when its loop starts: HAProxy runs (started, adopted, or the external one
  answers) with the first catalog applied, or with an empty config after the startup wait;
- ``STATUS=`` the readiness verdict, whenever it changes (``systemctl status`` shows it);
- ``WATCHDOG=1`` while the sidecar is live (``/livez``), at least twice per
  ``$WATCHDOG_USEC`` (systemd's ``WatchdogSec=``): a stuck loop, or an HAProxy the sidecar runs
  and cannot restart, stops the pings and systemd restarts the unit;
- ``STOPPING=1`` when it stops.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Optional

from .probes import ProbeReport

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Datagrams to ``$NOTIFY_SOCKET``; does nothing when systemd did not set it."""

    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address: Optional[str] = ("\0" + path[1:] if path.startswith("@") else path) or None
        self.watchdog_interval = _watchdog_interval(env)
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; ``False`` when not sent."""
        if self.address is None:
            return False
        message = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:  # said once: systemd may be gone while we stop
                log.warning("cannot notify systemd", extra={"error": str(exc)[:200]})
            self._failed = True
            return False
        return True


def _watchdog_interval(env: Mapping[str, str]) -> Optional[float]:
    """Seconds between pings systemd expects at most (``None``: no watchdog for us)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process
    return int(usec) / 1_000_000


class SystemdReporter:
    """What the daemon tells systemd each tick (see the module doc); state between ticks."""

    def __init__(self, notifier: SystemdNotifier) -> None:
        self.notifier = notifier
        self._ready_sent = False
        self._status = ""
        self._next_ping = 0.0

    def report(self, ready: ProbeReport, live: ProbeReport, now: float) -> None:
        if not self.notifier.enabled:
            return
        fields: list[str] = []
        if not self._ready_sent:
            fields.append("READY=1")
            self._ready_sent = True
        status = describe(ready)
        if status != self._status:
            fields.append(f"STATUS={status}")
            self._status = status
        interval = self.notifier.watchdog_interval
        if interval is not None and live.ok and now >= self._next_ping:
            fields.append("WATCHDOG=1")
            self._next_ping = now + interval / 4
        if fields:
            self.notifier.notify(*fields)

    def stopping(self) -> None:
        self.notifier.notify("STOPPING=1", "STATUS=stopping")


def describe(ready: ProbeReport) -> str:
    """``ready`` or ``not ready: reasons`` (one line, at most 400 characters)."""
    word = "ready" if ready.ok else "not ready"
    return (f"{word}: {'; '.join(ready.reasons)}" if ready.reasons else word)[:400]
