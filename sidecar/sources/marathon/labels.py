"""Strict parsing of the marathon-lb labels the sidecar honors (pure).

Every label value is checked against a small grammar and turned into typed options
(:class:`PortOptions`). Nothing a label says is ever copied into ``haproxy.cfg``: the renderer only
writes names the sidecar derived, numbers, members of fixed sets, and host names / paths that passed
the checks below. A bad value skips that option (or that port, when it cannot be served safely)
and yields a :class:`Problem`, whose ``reason`` never contains the value.

The single registry :data:`LABELS` drives parsing and is checked against ``docs/labels.md``.
:data:`NOT_HONORED` lists marathon-lb labels that are recognized but deliberately ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from sidecar import grammar
from sidecar.catalog import Problem
from sidecar.grammar import BALANCES, HTTP_ONLY_BALANCES, MAX_PORT_INDEX, MODES, ip_literal

APP = "app"
PORT = "port"

WEIGHT_MIN, WEIGHT_MAX = 0, grammar.ROUTE_WEIGHT_MAX

RAW_TEMPLATE_REASON = "raw template labels are not honored"
NOT_HONORED_REASON = "marathon-lb label not supported by the sidecar; ignored"

_DIGITS_RE = re.compile(r"[0-9]{1,5}")
_PORT_KEY_RE = re.compile(r"HAPROXY_(0|[1-9][0-9]{0,3})_([A-Z0-9_]+)")


@dataclass(frozen=True)
class LabelSpec:
    """One honored label: its key pattern (``{n}`` is the port index) and its documentation."""

    key: str
    scope: str  # APP | PORT
    values: str
    default: str
    meaning: str
    marathon_lb: str

    @property
    def suffix(self) -> str:
        """The part after ``HAPROXY_{n}_`` (port labels) or the whole key (app labels)."""
        return self.key.split("}_", 1)[1] if self.scope == PORT else self.key


LABELS: tuple[LabelSpec, ...] = (
    LabelSpec(
        "HAPROXY_GROUP",
        APP,
        "comma list of group names (`[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 16)",
        "none",
        "groups of the app; with `--group` only apps (ports) of those groups are served",
        "same",
    ),
    LabelSpec(
        "HAPROXY_{n}_GROUP",
        PORT,
        "comma list of group names",
        "the app's `HAPROXY_GROUP`",
        "groups of port n (overrides `HAPROXY_GROUP` for that port)",
        "same",
    ),
    LabelSpec(
        "HAPROXY_{n}_ENABLED",
        PORT,
        "`true` / `false`",
        "`true`",
        "`false` leaves port n out of the config",
        "marathon-lb only reads it in `--strict-mode`",
    ),
    LabelSpec(
        "HAPROXY_{n}_MODE",
        PORT,
        "`http` / `tcp`",
        "`tcp` (`http` when `_VHOST` is set)",
        "proxy mode of the frontend and backend of port n",
        "marathon-lb also switches to `http` for an HTTP health check; we do not",
    ),
    LabelSpec(
        "HAPROXY_{n}_BALANCE",
        PORT,
        "`roundrobin`, `leastconn`, `first`, `random`, `source`, `uri` (http mode only)",
        "`roundrobin`",
        "load-balancing algorithm; `source`/`uri` use `hash-type consistent`",
        "any HAProxy algorithm string was copied; `static-rr`, map-based hashes, `hdr()` and "
        "`url_param` are refused here (they block runtime server changes or take arguments)",
    ),
    LabelSpec(
        "HAPROXY_{n}_PORT",
        PORT,
        "integer 1..65535",
        "the service port",
        "port the frontend binds instead of the service port; a bad value skips port n",
        "same",
    ),
    LabelSpec(
        "HAPROXY_{n}_BIND_ADDR",
        PORT,
        "one IPv4 or IPv6 literal, and only one the operator allows (`--bind` addresses "
        "or the extra label bind addresses setting)",
        "every `--bind` address",
        "address the frontend of port n binds",
        "marathon-lb bound anything given (default `*`)",
    ),
    LabelSpec(
        "HAPROXY_{n}_VHOST",
        PORT,
        "comma list of RFC 1123 host names (lowercased; at most 32; no wildcards)",
        "none",
        "routes requests with that `Host` on the shared vhost port to port n; implies `http`",
        "no HTTPS/SNI frontend; wildcards are not accepted",
    ),
    LabelSpec(
        "HAPROXY_{n}_PATH",
        PORT,
        "one path prefix: `/` then `A-Z a-z 0-9 . _ ~ / -` (at most 200 characters)",
        "none",
        "vhost routes of port n also require this path prefix; needs `_VHOST`",
        "marathon-lb took a space-separated list and `-i`",
    ),
    LabelSpec(
        "HAPROXY_{n}_BACKEND_WEIGHT",
        PORT,
        "integer 0..1000",
        "0",
        "order of vhost routes (higher first) when several ports share a host",
        "same",
    ),
    LabelSpec(
        "HAPROXY_{n}_STICKY",
        PORT,
        "`true` / `false`",
        "`false`",
        "cookie persistence (HAProxy dynamic cookies); http mode only",
        "marathon-lb set a per-server `cookie`; dynamic cookies also work for runtime-added "
        "servers",
    ),
    LabelSpec(
        "HAPROXY_{n}_HEALTHCHECK",
        PORT,
        "`true` / `false`",
        "`false`",
        "adds an active HAProxy check derived from the app's Marathon HTTP/TCP health check "
        "for port n (path, interval, timeout, failures)",
        "marathon-lb always derived checks; here they are opt-in (check load grows with "
        "nodes x tasks)",
    ),
)

# marathon-lb labels we recognize but do not honor (TLS, auth, rewrites, ZDD, templates...).
NOT_HONORED: tuple[str, ...] = (
    "HAPROXY_{n}_SSL_CERT",
    "HAPROXY_{n}_REDIRECT_TO_HTTPS",
    "HAPROXY_{n}_USE_HSTS",
    "HAPROXY_{n}_AUTH",
    "HAPROXY_{n}_HTTP_BACKEND_PROXYPASS_PATH",
    "HAPROXY_{n}_HTTP_BACKEND_REVPROXY_PATH",
    "HAPROXY_{n}_HTTP_BACKEND_REDIR",
    "HAPROXY_{n}_BACKEND_NETWORK_ALLOWED_ACL",
    "HAPROXY_{n}_BACKEND_HEALTHCHECK_PORT_INDEX",
    "HAPROXY_DEPLOYMENT_NEW_INSTANCES",
    "HAPROXY_APP_ID",
)

# Deployment-group labels (app scope): read by deployment_labels.py, see docs/deploys.md.
DEPLOYMENT_LABELS: tuple[str, ...] = (
    "HAPROXY_DEPLOYMENT_GROUP",
    "HAPROXY_DEPLOYMENT_ALT_PORT",
    "HAPROXY_DEPLOYMENT_COLOUR",
    "HAPROXY_DEPLOYMENT_STARTED_AT",
    "HAPROXY_DEPLOYMENT_TARGET_INSTANCES",
    "HAPROXY_DEPLOYMENT_WEIGHT",
)

_APP_SPECS = {s.key: s for s in LABELS if s.scope == APP}
_PORT_SPECS = {s.suffix: s for s in LABELS if s.scope == PORT}
_NOT_HONORED_APP = frozenset(k for k in NOT_HONORED if "{n}" not in k)
_NOT_HONORED_PORT = frozenset(k.split("}_", 1)[1] for k in NOT_HONORED if "{n}" in k)


@dataclass(frozen=True)
class HealthOptions:
    """``HAPROXY_{n}_HEALTHCHECK``: whether port n asks for an active HAProxy check."""

    active: bool = False


@dataclass(frozen=True)
class PortOptions:
    """Checked options of one port (index ``n``). ``skip_reason`` set: do not serve this port."""

    mode: str = "tcp"
    balance: str = "roundrobin"
    bind_port: Optional[int] = None
    bind_addr: Optional[str] = None
    vhosts: tuple[str, ...] = ()
    path: str = ""
    sticky: bool = False
    weight: int = 0
    enabled: bool = True
    health: Optional[HealthOptions] = None
    groups: Optional[tuple[str, ...]] = None  # None: inherit the app's groups
    skip_reason: str = ""


DEFAULT_PORT_OPTIONS = PortOptions()


@dataclass(frozen=True)
class AppOptions:
    """Checked options of one app: its groups and per-port options (absent index = defaults)."""

    app_id: str
    groups: tuple[str, ...] = ()
    ports: Mapping[int, PortOptions] = field(default_factory=dict)

    def port(self, index: int) -> PortOptions:
        return self.ports.get(index, DEFAULT_PORT_OPTIONS)

    def port_groups(self, index: int) -> tuple[str, ...]:
        own = self.port(index).groups
        return self.groups if own is None else own


class _Bad(Exception):
    """A label value failed its grammar; the message is a reason that names no value."""


def parse_app_labels(app: Mapping[str, Any]) -> tuple[Optional[AppOptions], list[Problem]]:
    """Options for every port index named by a label, plus the problems found.

    Returns ``None`` as options when the app cannot be served at all (no usable id).
    """
    return parse_app_labels_memo(app, None)


# The labels of an app (items in order) -> what they parse to, minus the app id.
LabelMemo = dict[Any, "_ParsedLabels"]


def parse_app_labels_memo(
    app: Mapping[str, Any], memo: Optional[LabelMemo]
) -> tuple[Optional[AppOptions], list[Problem]]:
    """:func:`parse_app_labels`, reusing the parse of equal label sets through ``memo``.

    Parsing depends on the labels only (the app id is just copied into the results), so apps with
    the same labels (the same items in the same order) share one parse. ``memo`` is a dict the
    caller owns (e.g. one per :func:`sidecar.desired.build_model` call); ``None``: no memo.
    """
    app_id = app.get("id") if _is_mapping(app) else None
    if not isinstance(app_id, str) or not app_id:
        return None, [Problem("", "id", "app has no usable id")]
    raw = app.get("labels")
    if not raw or not _is_mapping(raw):
        return AppOptions(app_id, (), {}), []
    parsed: Optional[_ParsedLabels] = None
    key: Any = None
    if memo is not None:
        try:
            key = tuple(raw.items())
            parsed = memo.get(key)
        except TypeError:  # an unhashable value (not from Marathon): parse it every time
            key = None
    if parsed is None:
        parsed = _parse_labels(raw)
        if key is not None and memo is not None:
            memo[key] = parsed
    groups, ports, found = parsed
    problems = [Problem(app_id, label, reason) for label, reason in found] if found else []
    return AppOptions(app_id, groups, dict(ports)), problems


# (groups, per-port options, (label, reason) of each problem)
_ParsedLabels = tuple[tuple[str, ...], dict[int, "PortOptions"], tuple[tuple[str, str], ...]]


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _parse_labels(labels: Mapping[Any, Any]) -> _ParsedLabels:
    problems: list[tuple[str, str]] = []
    groups: tuple[str, ...] = ()
    per_port: dict[int, dict[str, Any]] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not key.startswith("HAPROXY_"):
            continue  # not ours: ignored silently
        if key in _APP_SPECS:
            parsed = _parse_value(key, "GROUP", value, problems)
            if parsed is not None:
                groups = parsed
            continue
        if key in DEPLOYMENT_LABELS:
            continue  # checked by sidecar.deployment_groups
        if key in _NOT_HONORED_APP:
            problems.append((key, NOT_HONORED_REASON))
            continue
        match = _PORT_KEY_RE.fullmatch(key)
        if match is None:
            problems.append((key, RAW_TEMPLATE_REASON))
            continue
        index, suffix = int(match.group(1)), match.group(2)
        if suffix in _NOT_HONORED_PORT:
            problems.append((key, NOT_HONORED_REASON))
            continue
        if suffix not in _PORT_SPECS:
            problems.append((key, RAW_TEMPLATE_REASON))
            continue
        if index > MAX_PORT_INDEX:
            problems.append((key, "port index out of range"))
            continue
        parsed = _parse_value(key, suffix, value, problems)
        if parsed is not None:
            per_port.setdefault(index, {})[suffix] = parsed
        elif suffix == "PORT":
            per_port.setdefault(index, {})["_skip"] = "bad HAPROXY_{n}_PORT label"
    ports = {i: _port_options(i, raw_opts, problems) for i, raw_opts in per_port.items()}
    return groups, ports, tuple(problems)


def _parse_value(key: str, suffix: str, value: Any, problems: list[tuple[str, str]]) -> Any:
    try:
        if not isinstance(value, str):
            raise _Bad("value is not a string")
        return _PARSERS[suffix](value)
    except _Bad as bad:
        problems.append((key, str(bad)))
        return None


def _port_options(
    index: int, opts: Mapping[str, Any], problems: list[tuple[str, str]]
) -> PortOptions:
    def key(suffix: str) -> str:
        return f"HAPROXY_{index}_{suffix}"

    vhosts: tuple[str, ...] = opts.get("VHOST", ())
    mode = opts.get("MODE") or ("http" if vhosts else "tcp")
    if vhosts and mode != "http":
        problems.append((key("VHOST"), "vhost routing needs http mode"))
        vhosts = ()
    balance = opts.get("BALANCE", "roundrobin")
    if balance in HTTP_ONLY_BALANCES and mode != "http":
        problems.append((key("BALANCE"), "algorithm needs http mode"))
        balance = "roundrobin"
    sticky = bool(opts.get("STICKY", False))
    if sticky and mode != "http":
        problems.append((key("STICKY"), "sticky sessions need http mode"))
        sticky = False
    path = opts.get("PATH", "")
    if path and not vhosts:
        problems.append((key("PATH"), "a path prefix needs HAPROXY_{n}_VHOST"))
        path = ""
    health = HealthOptions(active=True) if opts.get("HEALTHCHECK") else None
    return PortOptions(
        mode=mode,
        balance=balance,
        bind_port=opts.get("PORT"),
        bind_addr=opts.get("BIND_ADDR"),
        vhosts=vhosts,
        path=path,
        sticky=sticky,
        weight=opts.get("BACKEND_WEIGHT", 0),
        enabled=opts.get("ENABLED", True),
        health=health,
        groups=opts.get("GROUP"),
        skip_reason=opts.get("_skip", ""),
    )


# --- grammars ---------------------------------------------------------------------------------


def parse_bool(value: str) -> bool:
    word = value.strip().lower()
    if word == "true":
        return True
    if word == "false":
        return False
    raise _Bad("not true or false")


def parse_groups(value: str) -> tuple[str, ...]:
    if "," not in value:  # the common case: one name
        name = value.strip()
        if grammar.is_group_name(name):
            return (name,)
    items = [item.strip() for item in value.split(",")]
    names = [item for item in items if item]
    if not names or len(names) > grammar.MAX_GROUPS:
        raise _Bad("not a comma list of 1..16 group names")
    if not all(grammar.is_group_name(name) for name in names):
        raise _Bad("group names may use letters, digits, '_', '.', '-' only")
    return tuple(sorted(set(names)))


def parse_mode(value: str) -> str:
    word = value.strip().lower()
    if word not in MODES:
        raise _Bad("mode must be http or tcp")
    return word


def parse_balance(value: str) -> str:
    word = value.strip().lower()
    if word not in BALANCES:
        raise _Bad("unsupported balance algorithm")
    return word


def parse_port(value: str) -> int:
    text = value.strip()
    if not _DIGITS_RE.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise _Bad("not a port number 1..65535")
    return int(text)


def parse_ip(value: str) -> str:
    address = ip_literal(value.strip())
    if address is None:
        raise _Bad("not an IPv4 or IPv6 address literal")
    return address


def parse_host_name(value: str) -> str:
    name = value.strip().lower().rstrip(".")
    if not name or len(name) > 253:
        raise _Bad("host name empty or longer than 253 characters")
    if not grammar.is_host_name(name):
        raise _Bad("not an RFC 1123 host name")
    return name


def parse_vhosts(value: str) -> tuple[str, ...]:
    items = [item for item in (part.strip() for part in value.split(",")) if item]
    if not items or len(items) > grammar.MAX_VHOSTS:
        raise _Bad("not a comma list of 1..32 host names")
    return tuple(sorted({parse_host_name(item) for item in items}))


def parse_path(value: str) -> str:
    text = value.strip()
    if not grammar.is_path_prefix(text):
        raise _Bad("not a path prefix made of / and unreserved URL characters")
    return text


def parse_weight(value: str) -> int:
    text = value.strip()
    if not _DIGITS_RE.fullmatch(text) or not WEIGHT_MIN <= int(text) <= WEIGHT_MAX:
        raise _Bad("not an integer 0..1000")
    return int(text)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "GROUP": parse_groups,
    "ENABLED": parse_bool,
    "MODE": parse_mode,
    "BALANCE": parse_balance,
    "PORT": parse_port,
    "BIND_ADDR": parse_ip,
    "VHOST": parse_vhosts,
    "PATH": parse_path,
    "BACKEND_WEIGHT": parse_weight,
    "STICKY": parse_bool,
    "HEALTHCHECK": parse_bool,
}
