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
