"""The last known good Marathon snapshot on disk (``<state-dir>/last-applied.json``).

Written atomically (temporary file, fsync, rename) after every successful apply; read at start
when Marathon cannot be reached, so a sidecar restarted during a Marathon outage still serves the
routes it served before. Writing never stops the daemon: a full or read-only disk is counted and
reported (``last_error``) and the daemon carries on from memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

FILE_NAME = "last-applied.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StoredState:
    """A snapshot read back from disk: Marathon's apps (with ``tasks``) and when it was saved."""

    apps: list[dict[str, Any]]
    saved_at: float  # wall-clock seconds since the epoch
    path: str

    def describe_time(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.saved_at))


class StateStore:
    """Saves and loads the last applied snapshot. Thread-safe; never raises on save."""

    def __init__(self, state_dir: str) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self._lock = threading.Lock()
        self.write_errors = 0
        self.last_error: Optional[str] = None
        self.last_saved_at: Optional[float] = None
        self._last_text: Optional[str] = None

    def save(self, apps_with_tasks: Sequence[dict[str, Any]]) -> bool:
        """Write the snapshot; ``False`` (and ``last_error`` set) when the disk refused it."""
        now = time.time()
        with self._lock:
            try:
                text = json.dumps(list(apps_with_tasks), sort_keys=True, separators=(",", ":"))
                if text == self._last_text and self.last_error is None:
                    return True  # unchanged: no need to wear the disk
                self._write_atomically(
                    f'{{"version":{FORMAT_VERSION},"saved_at":{now!r},"apps":{text}}}'
                )
            except (OSError, TypeError, ValueError) as exc:
                self.write_errors += 1
                self.last_error = f"cannot write {self.path}: {_reason(exc)}"
                log.warning(
                    "state file not written", extra={"path": str(self.path), "error": str(exc)}
                )
                return False
            self._last_text = text
            self.last_error = None
            self.last_saved_at = now
            return True

    def load(self) -> Optional[StoredState]:
        """The saved snapshot, or ``None`` when there is none or it is unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("state file unreadable", extra={"path": str(self.path), "error": str(exc)})
            return None
        try:
            body = json.loads(raw)
        except ValueError:
            log.warning("state file is not JSON, ignoring it", extra={"path": str(self.path)})
            return None
        if not _valid(body):
            log.warning(
                "state file has an unknown shape, ignoring it", extra={"path": str(self.path)}
            )
            return None
        return StoredState(
            apps=list(body["apps"]), saved_at=float(body["saved_at"]), path=str(self.path)
        )

    def _write_atomically(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=".last-applied.", suffix=".tmp", dir=str(self.path.parent)
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _valid(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and body.get("version") == FORMAT_VERSION
        and isinstance(body.get("saved_at"), (int, float))
        and isinstance(body.get("apps"), list)
        and all(isinstance(app, dict) for app in body["apps"])
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
