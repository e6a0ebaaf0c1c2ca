"""The deferred config rewrite, run in the caller's thread or in a thread of its own.

After changes made through the runtime API only, the file on disk lags what HAProxy runs. Only a
restart reads it, so the applier rewrites it later (``config_write_delay``). At 10k services the
rewrite (render the whole config, then ``haproxy -c``) takes 0.5-1 s; on the daemon's loop thread
it would hold back every change that arrives meanwhile. In the background, the thread renders
and checks a snapshot (:class:`RewriteJob`: the effective model and the applier's file epoch
when it was taken) and hands the outcome back; the applier installs the candidate under its
lock only if no reload or synchronous rewrite decided the file since, else drops it.
"""

from __future__ import annotations

import logging
import resource
import threading
import time
from typing import Callable, NamedTuple, Optional

from sidecar.haproxy_model import HAProxyModel

from .config_file import ConfigFile
from .results import ApplyCounters
from .validation import Renderer, Validator

log = logging.getLogger(__name__)


class RewriteJob(NamedTuple):
    """A snapshot to write: the model as HAProxy runs it, and the file epoch it was taken at."""

    model: HAProxyModel
    epoch: int


class RewriteOutcome(NamedTuple):
    """A rendered and checked rewrite, not installed yet."""

    job: RewriteJob
    candidate: Optional[str]  # a checked file next to the config; None: unchanged or refused
    error: str  # haproxy -c's complaint ("" when accepted or unchanged)
    cost: float  # CPU seconds: render and haproxy -c

    @property
    def unchanged(self) -> bool:
        return self.candidate is None and not self.error


Finish = Callable[[RewriteOutcome], None]


def thread_cpu_seconds() -> float:
    """CPU time of the calling thread and of this process's finished children."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.thread_time() + children.ru_utime + children.ru_stime


class ConfigRewriter:
    """Renders and checks :class:`RewriteJob` s, then calls ``finish`` with each outcome.

    ``background``: in one worker thread, one job at a time (:attr:`busy` until ``finish``
    returned); else at once, in :meth:`submit`'s caller."""

    def __init__(
        self,
        render: Renderer,
        validator: Validator,
        config: ConfigFile,
        finish: Finish,
        *,
        background: bool,
    ) -> None:
        self._render = render
        self._validator = validator
        self._config = config
        self._finish = finish
        self.background = background
        self._cond = threading.Condition()
        self._job: Optional[RewriteJob] = None
        self._busy = False
        self._stopping = False
        self._thread: Optional[threading.Thread] = None

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy

    def submit(self, job: RewriteJob) -> None:
        """Write ``job`` (the caller checks :attr:`busy` first: a waiting job is replaced)."""
        if not self.background:
            self._finish(self.outcome(job))
            return
        with self._cond:
            self._job, self._busy = job, True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="config-rewriter", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def outcome(self, job: RewriteJob) -> RewriteOutcome:
        """Render ``job`` and check the text when it differs from the file."""
        started = thread_cpu_seconds()
        text = self._render(job.model)
        if text == self._config.read():
            return RewriteOutcome(job, None, "", thread_cpu_seconds() - started)
        candidate, error = self._validator.candidate_for(text)
        return RewriteOutcome(job, candidate, error, thread_cpu_seconds() - started)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after the job it runs (a waiting one is dropped)."""
        with self._cond:
            self._stopping = True
            self._job = None
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _serve(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    self._busy = False
                    return
                job, self._job = self._job, None
            try:
                if job is not None:
                    self._finish(self.outcome(job))
            except Exception:
                log.exception("config rewrite failed; the next one tries again")
            finally:
                with self._cond:
                    self._busy = self._job is not None


# a deferred config rewrite that cost more than WRITE_COST_FLOOR seconds of CPU (``haproxy -c``
# included) waits at least WRITE_COST_FACTOR times that before the next one
WRITE_COST_FACTOR = 50.0
WRITE_COST_FLOOR = 0.05


class DeferredWrites:
    """When the file follows runtime-only changes, and which write of it wins.

    The applier marks the file :meth:`dirty` after runtime changes; a write is :meth:`due`
    ``delay`` seconds later, or at least ``WRITE_COST_FACTOR`` times the CPU the last one cost
    (about 2 % of the time for a big config). Every write the applier decides at once (a
    reload, an immediate rewrite) calls :meth:`decided`: a deferred rewrite taken before is then
    dropped when it comes back. ``lock`` is the applier's; ``on_refused`` runs under it when
    ``haproxy -c`` refuses the current model's file."""

    def __init__(
        self,
        rewriter: Callable[[Finish], ConfigRewriter],
        config: ConfigFile,
        counters: ApplyCounters,
        lock: threading.RLock,
        on_refused: Callable[[], None],
        delay: float,
        clock: Callable[[], float],
    ) -> None:
        self.rewriter = rewriter(self._finish)
        self._config = config
        self._counters = counters
        self._lock = lock
        self._on_refused = on_refused
        self.delay = delay
        self._clock = clock
        self.dirty_since: Optional[float] = None  # runtime changed, file not rewritten yet
        self.cost = 0.0  # CPU seconds the last checked rewrite took (render, check, write)
        self._epoch = 0  # counts the writes decided at once

    @property
    def busy(self) -> bool:
        return self.rewriter.busy

    def dirty(self) -> None:
        if self.dirty_since is None:
            self.dirty_since = self._clock()

    def decided(self, rewritten: bool) -> None:
        """The applier writes the file itself now: nothing older may follow. ``rewritten``:
        from the running model, so nothing is left to follow either."""
        if rewritten:
            self.dirty_since = None
        self._epoch += 1

    def due(self) -> bool:
        if self.dirty_since is None:
            return False
        delay = self.delay
        if self.cost >= WRITE_COST_FLOOR:
            delay = max(delay, WRITE_COST_FACTOR * self.cost)
        return self._clock() - self.dirty_since >= delay

    def start(self, effective: HAProxyModel) -> None:
        """Rewrite the file from ``effective`` (draining servers kept), unless one runs."""
        if self.rewriter.busy:
            return  # the file stays dirty: the next tick tries again
        self.dirty_since = None
        self.rewriter.submit(RewriteJob(effective, self._epoch))

    def close(self) -> None:
        self.rewriter.close()

    def _finish(self, outcome: RewriteOutcome) -> None:
        """Install a deferred rewrite, unless the file was decided since it was taken."""
        with self._lock:
            self.cost = outcome.cost
            if outcome.unchanged:
                return
            self._counters.validations += 1
            current = outcome.job.epoch == self._epoch
            if outcome.error:
                self._counters.validation_failures += 1
                self._counters.last_error = outcome.error
                if current:
                    self._on_refused()
                return
            assert outcome.candidate is not None
            if not current:
                self._config.discard(outcome.candidate)
                return
            self._config.install(outcome.candidate)
            self._epoch += 1
            self._counters.config_writes += 1
