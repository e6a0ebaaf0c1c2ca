"""The leading publisher's heartbeat (`<bridge>/heartbeat`), watched with kazoo's DataWatch.

The publisher rewrites the node every few seconds. Its age is measured on this host's monotonic
clock from the moment a new write is seen, so clocks of other hosts do not matter; only the first
read (the sidecar just started) has to estimate from the node's `mtime` (the ZooKeeper server's
wall clock). While the connection is down nothing is seen and the age grows: that is the point
(the catalog may be stale). The DataWatch survives reconnects and session loss, and calls back
only when the node changed.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from kazoo.recipe.watchers import DataWatch

from sidecar.sources.zookeeper.health import Heartbeat, parse_heartbeat


class HeartbeatWatch:
    def __init__(
        self,
        client: Any,
        path: str,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.path = path
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._seen = False
        self._stopped = False
        self.beats = 0  # writes seen
        self.heartbeat: Optional[Heartbeat] = None

    def start(self) -> None:
        DataWatch(self.client, self.path, self._on_data)

    def stop(self) -> None:
        """Deliver nothing more; kazoo's watch ends at its next event."""
        with self._lock:
            self._stopped = True

    def _on_data(self, data: Optional[bytes], stat: Any) -> Optional[bool]:
        with self._lock:
            if self._stopped:
                return False
            if stat is None:
                self.heartbeat = None
                return None
            now = self._clock()
            if not self._seen:
                written_ago = max(0.0, self._wall() - stat.mtime / 1000.0)
                now -= written_ago
            self._seen = True
            self.beats += 1
            self.heartbeat = parse_heartbeat(now, data)
        return None
