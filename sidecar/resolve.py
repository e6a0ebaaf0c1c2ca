"""Host name -> IP literal cache: the only DNS lookups in the sidecar.

HAProxy refuses a config naming a host it cannot resolve, so the sidecar resolves agent host
names itself and writes addresses. :class:`Resolver` is called from the (pure) model builder as
``resolve(host) -> ip | None`` and must never block it for long:

- IP literals pass through untouched (no lookup);
- a known name answers from the cache at once; entries older than ``ttl`` are refreshed in the
  background (the old answer keeps being served meanwhile; a failed refresh keeps it too);
- an unknown name is looked up in a worker thread and waited for at most ``timeout`` seconds;
  if that runs out the answer is ``None`` for now, and the result lands in the cache for the next
  build (``on_update`` tells the daemon to rebuild);
- a name that does not resolve -> ``None`` (remembered for ``negative_ttl``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Callable, Optional

log = logging.getLogger(__name__)

Lookup = Callable[[str], Optional[str]]


# a DNS name: labels of letters, digits, "-" (and "_", seen on some internal zones), 253 at most
_HOST_NAME = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)


def is_host_name(host: str) -> bool:
    """Whether ``host`` is a syntactically valid DNS name (checked before any lookup)."""
    return bool(_HOST_NAME.match(host))


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def system_lookup(host: str) -> Optional[str]:
    """The first address ``getaddrinfo`` gives (IPv4 preferred), or ``None``."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None
    addresses = [str(info[4][0]) for info in infos]
    v4 = [a for a in addresses if ":" not in a]
    chosen = v4 or addresses
    return chosen[0] if chosen else None


@dataclass(frozen=True)
class _Entry:
    address: Optional[str]
    resolved_at: float


class Resolver:
    """A thread-safe, non-blocking-ish cache of host name lookups (see the module doc)."""

    def __init__(
        self,
        lookup: Lookup = system_lookup,
        *,
        ttl: float = 60.0,
        negative_ttl: float = 10.0,
        timeout: float = 0.5,
        workers: int = 4,
        on_update: Optional[Callable[[], None]] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._timeout = timeout
        self._clock = clock
        self.on_update = on_update  # called when an answer changed (e.g. Daemon.dns_changed)
        self._lock = threading.Lock()
        self._cache: dict[str, _Entry] = {}
        self._pending: dict[str, Future[Optional[str]]] = {}
        self._late: set[str] = set()  # first lookups a caller gave up waiting for
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="resolve")
        self.lookups = 0
        self.failures = 0

    def __call__(self, host: str) -> Optional[str]:
        return self.resolve(host)

    def resolve(self, host: str) -> Optional[str]:
        if not host:
            return None
        with self._lock:  # only host names are cached: a hit needs no other check
            entry = self._cache.get(host)
            if entry is not None:
                if self._is_stale(entry):
                    self._start_lookup(host)
                return entry.address
        if is_ip_literal(host):
            return host.strip("[]")
        if not is_host_name(host):
            return None  # never sent to the resolver, never cached: hostile or broken input
        with self._lock:
            entry = self._cache.get(host)
            if entry is not None:
                return entry.address
            future = self._start_lookup(host)
        try:
            return future.result(timeout=self._timeout)
        except FutureTimeout:
            with self._lock:
                self._late.add(host)
            log.warning("slow DNS lookup, leaving the host out for now", extra={"host": host})
            return None

    def cached(self) -> dict[str, Optional[str]]:
        with self._lock:
            return {host: entry.address for host, entry in self._cache.items()}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _is_stale(self, entry: _Entry) -> bool:
        ttl = self._ttl if entry.address is not None else self._negative_ttl
        return self._clock() - entry.resolved_at >= ttl

    def _start_lookup(self, host: str) -> Future[Optional[str]]:
        """Caller holds the lock."""
        pending = self._pending.get(host)
        if pending is not None:
            return pending
        future = self._pool.submit(self._do_lookup, host)
        self._pending[host] = future
        return future

    def _do_lookup(self, host: str) -> Optional[str]:
        address = self._lookup(host)
        with self._lock:
            self.lookups += 1
            previous = self._cache.get(host)
            self._pending.pop(host, None)
            if address is None:
                self.failures += 1
                if previous is not None and previous.address is not None:
                    # keep serving the last good answer through a DNS hiccup (until it is retried)
                    self._cache[host] = _Entry(previous.address, self._clock())
                    return previous.address
            self._cache[host] = _Entry(address, self._clock())
            late = host in self._late
            self._late.discard(host)
        if address is None:
            log.warning("host name does not resolve", extra={"host": host})
        changed = late or (previous is not None and previous.address != address)
        if changed and self.on_update is not None:
            self.on_update()
        return address
