"""Leader election among publishers: kazoo's Lock on the client that also writes.

One thread per publisher: wait for a connection, join the election (`<bridge>/leader`, an
ephemeral sequential node), and once this node is the lowest, run `lead(term)` until the term
ends. A term ends when the session is LOST (the lock node went with it), when the leader's own
fencing check fails, or on stop; then the thread joins the election again with a fresh lock, so a
re-elected publisher starts over with a full reconcile. Standbys only wait inside `acquire`.

kazoo calls the state listener on its connection thread: it only flips flags and wakes the
leading loop, never blocks.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from kazoo.exceptions import CancelledError, KazooException
from kazoo.protocol.states import KazooState

log = logging.getLogger(__name__)

LEADER = "leader"
STANDBY = "standby"
FAILED_TERM_PAUSE = 1.0  # seconds before joining the election again after a term that failed


@dataclass
class Term:
    """One term as leader. `fence` is this term's lock node; check it in every transaction."""

    fence: str
    ended: threading.Event = field(default_factory=threading.Event)
    resync: bool = True  # read everything before the next write (set again after SUSPENDED)
    reason: str = ""

    def end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.reason = reason
            self.ended.set()


class Leadership:
    """Runs `lead(term)` whenever this publisher wins the election."""

    def __init__(
        self,
        client: Any,
        path: str,
        identifier: str,
        lead: Callable[[Term], None],
        wake: Callable[[], None],
        on_role: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.client = client
        self.path = path
        self.identifier = identifier
        self._lead = lead
        self._wake = wake
        self._on_role = on_role
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._mutex = threading.Lock()
        self._term: Optional[Term] = None
        self._lock: Any = None
        self._thread: Optional[threading.Thread] = None
        self.changes = 0  # terms begun and ended, for /metrics

    @property
    def role(self) -> str:
        return LEADER if self._term is not None else STANDBY

    def start(self) -> None:
        if self.client.connected:
            self._connected.set()
        self.client.add_listener(self._on_state)
        self._thread = threading.Thread(target=self._run, name="publisher-election", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._connected.set()
        with self._mutex:
            lock, term = self._lock, self._term
        if lock is not None:
            lock.cancel()
        if term is not None:
            term.end("stopping")
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self.client.remove_listener(self._on_state)

    def _on_state(self, state: str) -> None:
        with self._mutex:
            term = self._term
        if state == KazooState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
            if term is not None:
                term.resync = True
                if state == KazooState.LOST:
                    term.end("session lost")
        self._wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._connected.wait()
            if self._stop.is_set():
                break
            lock = self.client.Lock(self.path, self.identifier)
            with self._mutex:
                self._lock = lock
            if self._acquire(lock):
                self._serve(Term(f"{lock.path}/{lock.node}"), lock)

    def _acquire(self, lock: Any) -> bool:
        try:
            return bool(lock.acquire())
        except CancelledError:
            return False
        except KazooException as exc:
            log.warning("election failed; joining again", extra={"error": repr(exc)})
            self._stop.wait(0.2)  # pacing a retry loop against a failing ensemble
            return False

    def _serve(self, term: Term, lock: Any) -> None:
        with self._mutex:
            self._term = term
            self.changes += 1
        log.info("elected leader", extra={"fence": term.fence, "identifier": self.identifier})
        self._tell(LEADER)
        failed = False
        try:
            self._lead(term)
        except Exception:
            failed = True
            term.end("leading loop failed")
            log.exception("leading loop failed")
        finally:
            term.end(term.reason or "leading loop returned")
            with self._mutex:
                self._term = None
                self.changes += 1
            log.info("left leadership", extra={"reason": term.reason})
            self._release(lock, term)
            self._tell(STANDBY)
        if failed:  # e.g. ZooKeeper could not be read at the start of the term: not in a hot loop
            self._stop.wait(FAILED_TERM_PAUSE)

    def _tell(self, role: str) -> None:
        if self._on_role is not None:
            try:
                self._on_role(role)
            except Exception:
                log.exception("role callback failed")

    def _release(self, lock: Any, term: Term) -> None:
        """Delete our lock node unless the session (and so the node) is already gone."""
        if term.reason == "session lost" or not self.client.connected:
            return
        try:
            lock.release()
        except KazooException as exc:
            log.info("lock release failed", extra={"error": repr(exc)})
