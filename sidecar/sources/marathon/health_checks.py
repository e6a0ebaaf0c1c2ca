"""A Marathon health check as a neutral active check (pure), for ``HAPROXY_{n}_HEALTHCHECK``.

The check of port index ``n`` (HTTP, HTTPS, TCP and their MESOS_ forms; ``COMMAND`` checks cannot
be done by HAProxy) becomes a :class:`~sidecar.catalog.HealthCheck`: HTTP forms keep their path
when it is usable in ``option httpchk``, everything else is a TCP connect. The builder applies the
operator's limits (minimum interval, rise).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

from sidecar.catalog import HealthCheck, Problem
from sidecar.grammar import is_check_path

if TYPE_CHECKING:
    from typing_extensions import TypeGuard

CHECK_PROTOCOLS = ("HTTP", "HTTPS", "TCP", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP")
HTTP_PROTOCOLS = ("HTTP", "MESOS_HTTP")
DAY_MS = 86_400_000


def active_check(
    app_id: str, app: Mapping[str, Any], index: int, problems: list[Problem]
) -> Optional[HealthCheck]:
    """The Marathon HTTP/TCP health check of port ``index`` as a neutral check, if usable."""
    label = f"HAPROXY_{index}_HEALTHCHECK"
    check = marathon_check(app, index)
    if check is None:
        problems.append(Problem(app_id, label, "no Marathon HTTP/TCP health check for this port"))
        return None
    protocol = str(check.get("protocol") or "HTTP").upper()
    kind = "http" if protocol in HTTP_PROTOCOLS else "tcp"
    path = "/"
    if kind == "http":
        raw_path = check.get("path", "/")
        if is_check_path(raw_path):
            path = raw_path
        else:
            kind = "tcp"
            problems.append(
                Problem(app_id, label, "Marathon health check path not usable; TCP check used")
            )
    failures = check.get("maxConsecutiveFailures")
    return HealthCheck(
        kind=kind,
        path=path,
        interval_ms=_seconds_ms(check.get("intervalSeconds"), 60, 0),
        timeout_ms=_seconds_ms(check.get("timeoutSeconds"), 20, 1000),
        fall=failures
        if isinstance(failures, int) and _is_int(failures) and 1 <= failures <= 100
        else 3,
    )


def marathon_check(app: Mapping[str, Any], index: int) -> Optional[Mapping[str, Any]]:
    """The first health check of ``app`` that HAProxy can do for port ``index``."""
    checks = app.get("healthChecks")
    for check in checks if isinstance(checks, list) else []:
        if not isinstance(check, Mapping):
            continue
        protocol = str(check.get("protocol") or "HTTP").upper()
        if protocol not in CHECK_PROTOCOLS:
            continue
        port_index = check.get("portIndex")
        if port_index is None and "port" not in check:
            port_index = 0
        if _is_int(port_index) and port_index == index:
            return check
    return None


def _seconds_ms(value: Any, default: int, low_ms: int) -> int:
    seconds = value if _is_int(value) or isinstance(value, float) else default
    if not 0 < seconds <= 86400:  # also false for NaN
        seconds = default
    return max(low_ms, min(int(seconds * 1000), DAY_MS))


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
