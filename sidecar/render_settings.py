"""What the operator chose for the generated config (flags/env/file), checked on creation (pure).

The values reach ``haproxy.cfg``, so each is checked against a small grammar here; a bad value
raises ``ValueError`` naming the setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from sidecar.grammar import ip_literal
from sidecar.haproxy_model import PassiveCheckSpec

_DURATION_RE = re.compile(r"[0-9]{1,9}(?:us|ms|s|m|h|d)?")
_PATH_SETTING_RE = re.compile(r"/[A-Za-z0-9._/@+=,-]*")


@dataclass(frozen=True)
class RenderSettings:
    """What the operator chose (flags/env/file); checked on creation, since it reaches the file."""

    bind_addrs: tuple[str, ...] = ("127.0.0.1",)
    label_bind_addrs: tuple[str, ...] = ()  # extra addresses HAPROXY_{n}_BIND_ADDR may pick
    groups: tuple[str, ...] = ()  # () = every app with a service port; "*" = every group
    vhost_port: Optional[int] = None  # shared HTTP frontend for HAPROXY_{n}_VHOST; None: off
    reserved_ports: tuple[int, ...] = ()  # never bound for an app (e.g. the status port)
    admin_socket: str = "/run/marathon-sidecar/haproxy-admin.sock"
    server_state_file: str = "/var/lib/marathon-sidecar/haproxy-server-state"
    hard_stop_after: str = "30s"
    maxconn: int = 4096
    nbthread: Optional[int] = None  # None: HAProxy's default (one per CPU)
    timeout_connect: str = "5s"
    timeout_client: str = "1m"
    timeout_server: str = "1m"
    timeout_tunnel: str = "1h"
    timeout_http_request: str = "10s"
    timeout_http_keep_alive: str = "5s"
    timeout_queue: str = "30s"
    timeout_check: str = "5s"
    retries: int = 3
    spread_checks: int = 50  # percent of random spread on check intervals (HAProxy max 50)
    passive_checks: bool = True
    passive_check: PassiveCheckSpec = field(default_factory=PassiveCheckSpec)
    active_check_min_interval_ms: int = 5000
    active_check_rise: int = 2
    # what operators tune (sidecar/tuning.py); the timeouts above are theirs too
    frontend_maxconn: Optional[int] = None  # maxconn of every frontend; None: the global one
    access_log: Optional[str] = None  # None: off; "stdout"; or a syslog target (ip:port, /path)
    metrics_listen: Optional[str] = None  # "ip:port" of HAProxy's Prometheus exporter
    stats_page: bool = False  # HAProxy's stats page on metrics_listen too

    def __post_init__(self) -> None:
        _check_settings(self)
        _check_tuning(self)

    @property
    def fixed_listeners(self) -> tuple[str, ...]:
        """The ``ip:port`` addresses HAProxy listens on whatever the catalog (no app may take
        their ports: :mod:`sidecar.desired` reserves them); UNIX sockets are not listed."""
        return (self.metrics_listen,) if self.metrics_listen else ()


def _check_settings(s: RenderSettings) -> None:
    for name in ("bind_addrs", "label_bind_addrs"):
        for addr in getattr(s, name):
            if ip_literal(addr) is None:
                raise ValueError(f"{name}: not an IP address literal: {addr!r}")
    if not s.bind_addrs:
        raise ValueError("bind_addrs: at least one address is needed")
    for group in s.groups:
        if not isinstance(group, str) or not re.fullmatch(r"\*|[A-Za-z0-9][A-Za-z0-9_.-]*", group):
            raise ValueError(f"groups: not a group name: {group!r}")
    for port in s.reserved_ports:
        _check_int("reserved_ports", port, 1, 65535)
    if s.vhost_port is not None:
        _check_int("vhost_port", s.vhost_port, 1, 65535)
    for name in ("admin_socket", "server_state_file"):
        value = getattr(s, name)
        if not isinstance(value, str) or not _PATH_SETTING_RE.fullmatch(value):
            raise ValueError(f"{name}: needs an absolute path of [A-Za-z0-9._/@+=,-]: {value!r}")
    for name in (
        "hard_stop_after",
        "timeout_connect",
        "timeout_client",
        "timeout_server",
        "timeout_tunnel",
        "timeout_http_request",
        "timeout_http_keep_alive",
        "timeout_queue",
        "timeout_check",
    ):
        value = getattr(s, name)
        if not isinstance(value, str) or not _DURATION_RE.fullmatch(value):
            raise ValueError(f"{name}: not an HAProxy duration like 5s or 500ms: {value!r}")
    _check_int("maxconn", s.maxconn, 1, 10_000_000)
    if s.nbthread is not None:
        _check_int("nbthread", s.nbthread, 1, 64)
    _check_int("retries", s.retries, 0, 100)
    _check_int("spread_checks", s.spread_checks, 0, 50)
    _check_int("active_check_min_interval_ms", s.active_check_min_interval_ms, 100, 86_400_000)
    _check_int("active_check_rise", s.active_check_rise, 1, 100)
    pc = s.passive_check
    for name in ("inter_ms", "fastinter_ms", "downinter_ms"):
        _check_int(f"passive_check.{name}", getattr(pc, name), 100, 86_400_000)
    for name in ("rise", "fall", "error_limit"):
        _check_int(f"passive_check.{name}", getattr(pc, name), 1, 1000)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: needs an integer {low}..{high}: {value!r}")


_IP_PORT_RE = re.compile(r"(?:[0-9.]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}")


def _check_tuning(s: RenderSettings) -> None:
    if s.frontend_maxconn is not None:
        _check_int("frontend_maxconn", s.frontend_maxconn, 1, 10_000_000)
    sink = s.access_log
    targets = (_IP_PORT_RE, _PATH_SETTING_RE)
    if sink not in (None, "stdout") and not any(t.fullmatch(str(sink)) for t in targets):
        raise ValueError(f"access_log: not stdout, ip:port or an absolute path: {sink!r}")
    if s.metrics_listen is not None and not _IP_PORT_RE.fullmatch(s.metrics_listen):
        raise ValueError(f"metrics_listen: not ip:port: {s.metrics_listen!r}")
    if not isinstance(s.stats_page, bool):
        raise ValueError(f"stats_page: not true or false: {s.stats_page!r}")
