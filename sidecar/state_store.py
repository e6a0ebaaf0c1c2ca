"""The last known good catalog on disk (``<state-dir>/last-applied.json``).

Written atomically (:mod:`sidecar.files`) after successful applies; read at start when the source
cannot be reached, so a sidecar restarted during an outage still serves the routes it served
before, with the verdicts it had (they count as "in rotation before"). Writing never stops the
daemon: a full or read-only disk is counted and reported (``last_error``) and the daemon carries
on from memory.

Format 2 holds the source-neutral catalog (:meth:`sidecar.catalog.Catalog.to_dict`). Format 1,
written by earlier versions, held Marathon's app list; it is read through the ``legacy``
converter the wiring passes in (the Marathon translation), so an upgraded node that starts with
only the old file and no Marathon still serves.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from marathon_bridge import jsonfast
from sidecar.catalog import (
    FORMAT,
    Catalog,
    CatalogError,
    Service,
    catalog_from_dict,
    service_to_dict,
)
from sidecar.files import write_atomically

if TYPE_CHECKING:
    from typing_extensions import TypeGuard

log = logging.getLogger(__name__)

FILE_NAME = "last-applied.json"
SAVE_INTERVAL = 10.0  # at most one write of the last known catalog per this many seconds
FORMAT_VERSION = 2
LEGACY_VERSION = 1  # {"version": 1, "saved_at": t, "apps": [Marathon apps with tasks]}

LegacyReader = Callable[[list[dict[str, Any]]], Catalog]


@dataclass(frozen=True)
class StoredCatalog:
    """A catalog read back from disk, and when it was saved."""

    catalog: Catalog
    saved_at: float  # wall-clock seconds since the epoch
    path: str

    def describe_time(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.saved_at))


class StateStore:
    """Saves and loads the last applied catalog. Thread-safe; never raises on save."""

    def __init__(self, state_dir: str, legacy: Optional[LegacyReader] = None) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self._legacy = legacy
        self._lock = threading.Lock()
        self._encoder = CatalogEncoder()
        self.write_errors = 0
        self.last_error: Optional[str] = None
        self.last_saved_at: Optional[float] = None
        self._last_body: Optional[bytes] = None

    def save(self, catalog: Catalog) -> bool:
        """Write the catalog; ``False`` (and ``last_error`` set) when the disk refused it."""
        now = time.time()
        with self._lock:
            try:
                body = self._encoder.encode(catalog)
                if body == self._last_body and self.last_error is None:
                    return True  # unchanged: no need to wear the disk
                head = f'{{"version":{FORMAT_VERSION},"saved_at":{now!r},"catalog":'
                write_atomically(str(self.path), head.encode() + body + b"}")
            except (OSError, TypeError, ValueError) as exc:
                self.write_errors += 1
                self.last_error = f"cannot write {self.path}: {_reason(exc)}"
                log.warning(
                    "state file not written", extra={"path": str(self.path), "error": str(exc)}
                )
                return False
            self._last_body = body
            self.last_error = None
            self.last_saved_at = now
            return True

    def load(self) -> Optional[StoredCatalog]:
        """The saved catalog, or ``None`` when there is none or it is unreadable."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("state file unreadable", extra={"path": str(self.path), "error": str(exc)})
            return None
        try:
            body = jsonfast.loads(raw)
        except ValueError:
            log.warning("state file is not JSON, ignoring it", extra={"path": str(self.path)})
            return None
        try:
            catalog = self._catalog(body)
        except (CatalogError, TypeError, ValueError) as exc:
            log.warning(
                "state file has an unknown shape, ignoring it",
                extra={"path": str(self.path), "error": str(exc)[:300]},
            )
            return None
        return StoredCatalog(catalog, float(body["saved_at"]), str(self.path))

    def _catalog(self, body: Any) -> Catalog:
        if not isinstance(body, dict) or not isinstance(body.get("saved_at"), (int, float)):
            raise ValueError("not a state file")
        version = body.get("version")
        if version == FORMAT_VERSION:
            return catalog_from_dict(body.get("catalog"))
        apps = body.get("apps")
        if version == LEGACY_VERSION and self._legacy is not None and _app_list(apps):
            return self._legacy(apps)
        raise ValueError(f"unknown state file version {json.dumps(version)}")


class CatalogEncoder:
    """:meth:`Catalog.to_dict` as JSON bytes, reusing the bytes of every service object met in
    the last catalog: catalogs are copy-on-write, so at 10k services a save encodes only what
    changed since the one before (the whole catalog took about 0.2 s of the GIL)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[Service, bytes]] = {}

    def encode(self, catalog: Catalog) -> bytes:
        made: dict[str, tuple[Service, bytes]] = {}
        for key, service in sorted(catalog.services.items()):
            hit = self._last.get(key)
            if hit is None or hit[0] is not service:
                hit = (service, jsonfast.dumps(service_to_dict(service)))
            made[key] = hit
        self._last = made
        rest = jsonfast.dumps(
            {
                "problems": [vars(p).copy() for p in catalog.problems],
                "skipped": [vars(s).copy() for s in catalog.skipped],
            }
        )
        services = b",".join(body for _service, body in made.values())
        head = b'{"format":' + jsonfast.dumps(FORMAT) + b',"services":['
        return head + services + b"]," + rest[1:]


class ThrottledSaver:
    """Writes the newest catalog in the background: at once the first time, then at most every
    ``interval`` seconds (a big cluster's catalog is large). The caller never waits for the disk;
    ``on_result(ok)`` reports each write."""

    def __init__(
        self,
        store: StateStore,
        on_result: Callable[[bool], None],
        interval: float = SAVE_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.interval = interval
        self._on_result = on_result
        self._clock = clock
        self._unsaved: Optional[Catalog] = None
        self._last_save_at: Optional[float] = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-save")

    def offer(self, catalog: Catalog) -> None:
        self._unsaved = catalog
        if self._last_save_at is None or self._clock() - self._last_save_at >= self.interval:
            self.flush()

    def flush_if_due(self) -> None:
        saved_at = self._last_save_at
        due = saved_at is not None and self._clock() - saved_at >= self.interval
        if self._unsaved is not None and due:
            self.flush()

    def flush(self) -> None:
        catalog, self._unsaved = self._unsaved, None
        if catalog is None:
            return
        self._last_save_at = self._clock()
        self._pool.submit(self._write, catalog)

    def close(self) -> None:
        """Write what is unsaved and wait for it."""
        self.flush()
        self._pool.shutdown(wait=True)

    def _write(self, catalog: Catalog) -> None:
        self._on_result(self.store.save(catalog))


def _app_list(value: Any) -> TypeGuard[list[dict[str, Any]]]:
    return isinstance(value, list) and all(isinstance(app, dict) for app in value)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
