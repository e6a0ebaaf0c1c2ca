"""What may reach ``haproxy.cfg``: the value grammars every source's data is checked against (pure).

Sources parse their own formats (Marathon labels, catalog JSON read back from disk or ZooKeeper),
but the checks of a value that ends up in the config file are the same whoever produced it: a
mode or balance algorithm from a fixed set, host names and paths of a small alphabet, group names
that are safe inside proxy names, IP literals in canonical form.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Optional

MODES = ("http", "tcp")
# Balance algorithms that keep a backend "dynamic" (HAProxy accepts runtime add/del server there).
BALANCES = ("roundrobin", "leastconn", "first", "random", "source", "uri")
HASHED_BALANCES = ("source", "uri")  # rendered with "hash-type consistent"
HTTP_ONLY_BALANCES = ("uri",)
CHECK_KINDS = ("http", "tcp")

MAX_VHOSTS = 32
MAX_PATH_LEN = 200
MAX_GROUPS = 16
MAX_PORT_INDEX = 1000
ROUTE_WEIGHT_MAX = 1000
SERVER_WEIGHT_MAX = 256  # HAProxy's server weight range is 0..256

_GROUP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_HOST_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A URL path prefix: "/" then unreserved characters and "/" only (no spaces, quotes, "#", "%").
_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]*")
# An HTTP health-check request target: a path plus an optional simple query string.
_CHECK_PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]*(?:\?[A-Za-z0-9._~=&/-]*)?")
# An ISO 8601 time as deployment tools write it (HAPROXY_DEPLOYMENT_STARTED_AT)
_STARTED_AT_RE = re.compile(r"[0-9T:.+Z-]{1,40}")


def ip_literal(value: Any) -> Optional[str]:
    """The canonical text of an IPv4/IPv6 literal (no zone id), or ``None``."""
    if not isinstance(value, str) or "%" in value or len(value) > 64:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def is_group_name(value: Any) -> bool:
    """A group (or deployment group) name: ``[A-Za-z0-9][A-Za-z0-9_.-]*``, 63 at most."""
    return isinstance(value, str) and _GROUP_RE.fullmatch(value) is not None


def is_host_name(value: Any) -> bool:
    """A lowercase RFC 1123 host name as vhost routing accepts it (no wildcard, no IP)."""
    if not isinstance(value, str) or not value or len(value) > 253:
        return False
    parts = value.split(".")
    return all(_HOST_LABEL_RE.fullmatch(part) for part in parts) and not parts[-1].isdigit()


def is_path_prefix(value: Any) -> bool:
    """A vhost route's path prefix: ``/`` then ``A-Z a-z 0-9 . _ ~ / -``."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_PATH_LEN
        and _PATH_RE.fullmatch(value) is not None
    )


def is_check_path(value: Any) -> bool:
    """Whether an HTTP health-check path may go into ``option httpchk``."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_PATH_LEN
        and _CHECK_PATH_RE.fullmatch(value) is not None
    )


def is_started_at(value: Any) -> bool:
    """A deployment's start time as written by deployment tools (ISO 8601 characters only)."""
    return isinstance(value, str) and _STARTED_AT_RE.fullmatch(value) is not None


def is_int_in(value: Any, low: int, high: int) -> bool:
    """An ``int`` (not a ``bool``) in ``low..high``."""
    return type(value) is int and low <= value <= high


def duration(ms: int) -> str:
    """An HAProxy time value in its largest whole unit: ``24h`` for 86400000 (the passive
    checks' interval), ``1m`` for 60000, ``90s``, ``1500ms``; the renderer's and the timeout
    options' one formatter."""
    if ms % 3_600_000 == 0 and ms >= 3_600_000:
        return f"{ms // 3_600_000}h"
    if ms % 60000 == 0 and ms >= 60000:
        return f"{ms // 60000}m"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"
