"""The HAProxy settings operators change: timeouts, every frontend's maxconn, HAProxy's own logs
and its metrics listener (the global ``--maxconn`` is in :mod:`sidecar.settings`, beside the
descriptor budget that may lower it: :mod:`sidecar.fd_budget`).

Each is an :class:`~sidecar.option_table.Option` (a flag, a ``MARATHON_SIDECAR_*`` variable and a
YAML key) in :data:`TUNING_OPTIONS`, which :mod:`sidecar.settings` adds to its table. Values are
checked here; :func:`render_values` hands the ones given to
:class:`~sidecar.render_settings.RenderSettings` (a timeout not given keeps the default there, the
one place defaults live). docs/operations.md ("Tuning HAProxy") lists them with marathon-lb's
values beside ours.

- timeouts take ``5s``, ``500ms``, ``2m``, ``1h``, ``1d`` or a number of seconds (as every
  duration of the sidecar; a bare number in haproxy.cfg would be milliseconds);
- ``--haproxy-log off|stdout|syslog:ADDR``: where HAProxy's access log goes. Errors and state
  changes (servers going down or up, reloads) always reach HAProxy's stdout, which is the
  sidecar's; ``syslog:`` takes ``IP[:PORT]`` (UDP, port 514 by default) or the path of a UNIX
  datagram socket (``/dev/log``);
- ``--haproxy-metrics-listen [IP:]PORT``: HAProxy's Prometheus exporter (``/metrics``), on
  127.0.0.1 unless an address is given; ``--haproxy-stats-page`` adds HAProxy's read-only stats
  page (``/stats``) to that listener.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional

from .grammar import duration, ip_literal
from .option_table import Option, boolean, connections
from .render_settings import RenderSettings

if TYPE_CHECKING:
    from .settings import Settings

# (name, what it bounds); the flag is --timeout-<name>, the RenderSettings field timeout_<name>
TIMEOUTS: tuple[tuple[str, str], ...] = (
    ("connect", "time to open a connection to a task"),
    ("client", "how long a client may stay silent"),
    ("server", "how long a task may stay silent"),
    ("tunnel", "idle time of a WebSocket, or of any tcp-mode connection once both sides talked"),
    ("http-request", "time a client has to send a whole request head (http mode)"),
    ("http-keep-alive", "idle time between two requests on one client connection (http mode)"),
    ("queue", "how long a connection waits for a free server slot"),
    ("check", "time a passive-check probe may take (active checks use the app's timeoutSeconds)"),
)
MAX_TIMEOUT_MS = 24 * 86_400_000  # HAProxy's timers hold up to 2^31-1 ms (24.8 days)
SYSLOG_PORT = 514
LOG_CHOICES = "off, stdout or syslog:ADDR"
METRICS_HOST = "127.0.0.1"

_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h|d)?")
_UNIT_MS = {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SOCKET_PATH_RE = re.compile(r"/[A-Za-z0-9._/@+=,-]{1,100}")


def parse_timeout(value: Any) -> str:
    """``5s``, ``500ms``, ``1m``, ``1h``, ``1d`` or a number of seconds -> an HAProxy time."""
    match = _DURATION_RE.fullmatch(str(value).strip().lower()) if type(value) is not bool else None
    if match is None:
        raise ValueError("expected a duration like 5s, 500ms, 2m, 1h or a number of seconds")
    ms = float(match.group(1)) * _UNIT_MS[match.group(2) or "s"]
    if not 1 <= ms <= MAX_TIMEOUT_MS:
        raise ValueError("expected a duration from 1ms to 24d")
    if ms != int(ms):
        raise ValueError("expected whole milliseconds")
    return duration(int(ms))


def _ip_port(text: str, default_host: Optional[str], default_port: Optional[int]) -> str:
    """``IP:PORT``, ``[IPv6]:PORT``, a bare IP (``default_port``) or a bare port
    (``default_host``) -> the canonical ``ip:port`` / ``[ip]:port``; ValueError otherwise."""
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    elif text.isdigit():
        host, port = default_host or "", text
    canonical = ip_literal(host)
    if canonical is None:
        raise ValueError("expected an IP address literal")
    if not port and default_port is not None:
        port = str(default_port)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("expected a port from 1 to 65535")
    return f"[{canonical}]:{port}" if ":" in canonical else f"{canonical}:{port}"


def parse_log(value: Any) -> str:
    """``off``, ``stdout``, ``syslog:IP[:PORT]`` or ``syslog:/path/of/a/datagram/socket``."""
    if value is False:  # YAML reads a bare off as false
        return "off"
    text = str(value).strip()
    lowered = text.lower()
    if lowered in ("off", "stdout"):
        return lowered
    prefix, sep, target = text.partition(":")
    if prefix.lower() != "syslog" or not sep or not target:
        raise ValueError(f"expected {LOG_CHOICES}")
    if target.startswith("/"):
        if not _SOCKET_PATH_RE.fullmatch(target):
            raise ValueError("syslog:/path: a socket path of [A-Za-z0-9._/@+=,-], 101 at most")
        return f"syslog:{target}"
    try:
        return "syslog:" + _ip_port(target, None, SYSLOG_PORT)
    except ValueError as exc:
        raise ValueError(f"syslog:ADDR: {exc} (or a socket path)") from None


def parse_metrics_listen(value: Any) -> Optional[str]:
    """``[IP:]PORT`` -> ``ip:port`` (127.0.0.1 when only a port is given)."""
    text = str(value).strip() if value is not None and value is not False else ""
    if not text or text.lower() == "off":
        return None
    return _ip_port(text, METRICS_HOST, None)


def _timeout_option(name: str, what: str) -> Option:
    default = getattr(RenderSettings(), "timeout_" + name.replace("-", "_"))
    return Option(
        "timeout-" + name,
        "timeout_" + name.replace("-", "_"),
        parse_timeout,
        f"HAProxy's timeout {name}: {what} (default {default})",
        metavar="DURATION",
    )


def parse_frontend_maxconn(value: Any) -> Optional[int]:
    """A number of connections; empty: none (each port may use the whole global maxconn)."""
    if value is None or value == "":
        return None
    return connections(value)


TUNING_OPTIONS: tuple[Option, ...] = (
    *(_timeout_option(name, what) for name, what in TIMEOUTS),
    Option(
        "frontend-maxconn",
        "frontend_maxconn",
        parse_frontend_maxconn,
        "most concurrent connections of each service port (HAProxy's maxconn in defaults, never "
        "above the global --maxconn; default: the global maxconn)",
        metavar="N",
    ),
    Option(
        "haproxy-log",
        "haproxy_log",
        parse_log,
        "HAProxy's access log: off, stdout (the sidecar's stdout) or syslog:ADDR (IP[:PORT] over "
        "UDP, or a socket path such as /dev/log). Errors and server state changes always go to "
        "stdout (default off)",
        metavar="SINK",
    ),
    Option(
        "haproxy-metrics-listen",
        "haproxy_metrics_listen",
        parse_metrics_listen,
        "serve HAProxy's own Prometheus metrics (/metrics: per service and per task) on "
        "[IP:]PORT, 127.0.0.1 unless an address is given (default: not served)",
        metavar="[IP:]PORT",
    ),
    Option(
        "haproxy-stats-page",
        "haproxy_stats_page",
        boolean,
        "also serve HAProxy's read-only stats page (/stats) on --haproxy-metrics-listen",
        switch=True,
    ),
)


def tuning_problem(settings: Settings) -> str:
    """What is wrong with the combination of tuning settings; "" when nothing."""
    listen = settings.haproxy_metrics_listen
    if settings.haproxy_stats_page and not listen:
        return "--haproxy-stats-page needs --haproxy-metrics-listen"
    if listen:
        port = int(listen.rpartition(":")[2])
        if port == settings.status_port:
            return "--haproxy-metrics-listen: the status server has that port (--status-listen)"
        if port == settings.vhost_port:
            return "--haproxy-metrics-listen: that is the vhost port (--vhost-port)"
        probe = settings.probe_listen
        if probe and port == int(probe.rpartition(":")[2]):
            return "--haproxy-metrics-listen: the probe listener has that port (--probe-listen)"
    return ""


def render_values(settings: Settings) -> dict[str, Any]:
    """The :class:`RenderSettings` fields the tuning settings give (defaults left out)."""
    values: dict[str, Any] = {}
    for name, _what in TIMEOUTS:
        field = "timeout_" + name.replace("-", "_")
        if getattr(settings, field) is not None:
            values[field] = getattr(settings, field)
    sink = settings.haproxy_log
    values["access_log"] = None if sink == "off" else sink.replace("syslog:", "", 1)
    values["maxconn"] = settings.maxconn  # the wanted one: the budget may lower it
    values["frontend_maxconn"] = settings.frontend_maxconn
    values["metrics_listen"] = settings.haproxy_metrics_listen
    values["stats_page"] = settings.haproxy_stats_page
    return values
