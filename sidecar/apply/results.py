"""What an apply did (:class:`ApplyResult`), the applier's running totals, and the interface the
daemon knows an applier by (:class:`ApplierControl`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from sidecar.catalog import Skipped
from sidecar.haproxy.runtime import ServerState
from sidecar.haproxy_model import HAProxyModel


@dataclass(frozen=True)
class ApplyResult:
    """What one :meth:`~sidecar.apply.applier.Applier.apply` did."""

    ok: bool
    action: str  # "none" | "runtime" | "reload" | "start" | "failed"
    reloaded: bool = False
    started: bool = False
    runtime_ops: int = 0
    config_written: bool = False
    skipped: tuple[Skipped, ...] = ()  # apps left out: HAProxy refused them, or port taken
    waiting_for_ports: tuple[str, ...] = ()  # taken ports of apps left out: apply again later
    error: str = ""
    new_worker_pid: Optional[int] = None
    validations: int = 0
    duration: float = 0.0
    config_text: Optional[str] = None  # the text now on disk (None when unchanged or failed)


@dataclass
class ApplyCounters:
    """Totals the daemon exports as metrics."""

    applies: int = 0
    reloads: int = 0
    reload_failures: int = 0
    starts: int = 0
    runtime_ops: int = 0
    runtime_failures: int = 0
    validations: int = 0
    validation_failures: int = 0
    refused_ports: int = 0
    skipped_apps: int = 0
    drains_started: int = 0
    servers_deleted: int = 0  # drained servers that never took a session: "del server"
    servers_tombstoned: int = 0  # drained servers that did: MAINT until the next reload
    tidy_reloads: int = 0  # reloads done only to drop tombstones
    config_writes: int = 0
    old_workers: int = 0
    last_error: str = ""
    last_apply_seconds: float = 0.0


class ServerStates(Protocol):
    """HAProxy's view of its servers (``show servers state``)."""

    def show_servers_state(self, backend: Optional[str] = None) -> list[ServerState]: ...


class ApplierControl(Protocol):
    """What the daemon needs from an applier (:class:`sidecar.apply.Applier`, or a fake)."""

    on_started: Optional[Callable[[], None]]  # set by the wiring: HAProxy serves from now on

    @property
    def counters(self) -> ApplyCounters: ...

    @property
    def runtime(self) -> ServerStates: ...

    @property
    def running_config(self) -> Optional[HAProxyModel]:
        """What HAProxy runs now: the last model applied, minus the apps it refused."""

    def apply(self, model: HAProxyModel) -> ApplyResult: ...

    def tick(self) -> int: ...

    def close(self) -> None:
        """Stop its background work (on shutdown)."""
