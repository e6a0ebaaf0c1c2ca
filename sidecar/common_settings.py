"""The settings ``marathon-sidecar`` and ``marathon-publisher`` share, described once.

Both follow Marathon the same way (URLs, credentials, TLS, the event stream with resyncs or
polling, the empty-catalog rule, how old a sync may get), log the same way, and (in ZooKeeper
mode) name the same ZooKeeper servers and catalog path. Each command lists these options in its
own :class:`~sidecar.option_table.OptionTable`, so the environment variables that are not fixed
(``MARATHON_URL``...) take the command's prefix (``MARATHON_SIDECAR_POLL``,
``MARATHON_PUBLISHER_POLL``). :class:`CommonSettings` holds their values; each command's settings
class extends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from sidecar.option_table import (
    Option,
    SettingsError,
    boolean,
    choice,
    optional_text,
    parse_listen,
    positive_seconds,
    seconds,
    secret,
    text,
    url,
)
from sidecar.sources.zookeeper.layout import DEFAULT_ZK_PATH, LayoutError, check_zk_path

SECRET_FIELDS = frozenset({"password", "token"})
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class CommonSettings:
    """Following Marathon, and logging: the values both commands read."""

    marathon_urls: tuple[str, ...] = field(default=(), repr=False)  # may hold user:pass@
    user: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    token: Optional[str] = field(default=None, repr=False)
    ca_bundle: Optional[str] = None
    insecure: bool = False
    marathon_timeout: float = 10.0
    resync_interval: float = 300.0
    poll: bool = False
    poll_interval: float = 10.0
    empty_confirm: float = 5.0
    sync_max_age: float = 0.0
    log_format: str = "text"
    log_level: str = "INFO"
    config_file: Optional[str] = None

    @property
    def max_sync_age(self) -> float:
        """How old the last successful Marathon sync may be before /health (and the sidecar's
        /readyz) fails."""
        if self.sync_max_age > 0:
            return self.sync_max_age
        period = self.poll_interval if self.poll else self.resync_interval
        return max(60.0, 3 * period)

    def public_dict(self) -> dict[str, Any]:
        """The settings as plain data for logs and the status page; secrets masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                value = "***" if value else None
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["marathon_urls"] = [redact_url(u) for u in self.marathon_urls]
        return out


def redact_url(address: str) -> str:
    """``http://user:pass@host`` -> ``http://***@host`` (credentials in URLs never get logged)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        return address
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}://{authority}{slash}{path}"


def check_common(settings: CommonSettings, marathon_required: bool = True) -> None:
    """The checks across options; SettingsError names the option."""
    if settings.password and not settings.user:
        raise SettingsError("--password needs --user")
    if settings.token and settings.user:
        raise SettingsError("--token and --user are exclusive: choose one way to authenticate")
    if marathon_required and not settings.marathon_urls:
        raise SettingsError("--marathon: at least one Marathon URL is needed (env MARATHON_URL)")
    if settings.ca_bundle and not Path(settings.ca_bundle).is_file():
        raise SettingsError(f"--ca-bundle: no such file: {settings.ca_bundle}")


# --- ZooKeeper values ----------------------------------------------------------------------------


def zookeeper_hosts(value: Any) -> tuple[str, ...]:
    """``HOST:PORT[,HOST:PORT...]`` (or a YAML list) -> each server as ``host:port``."""
    items = value if isinstance(value, list) else str(value).split(",")
    hosts = []
    for item in items:
        entry = str(item).strip()
        if not entry:
            continue
        host, number = parse_listen(entry)
        if not number or "/" in host:
            raise ValueError("expected HOST:PORT[,HOST:PORT...] with ports from 1 to 65535")
        hosts.append(f"[{host}]:{number}" if ":" in host else f"{host}:{number}")
    if not hosts:
        raise ValueError("expected HOST:PORT[,HOST:PORT...]")
    return tuple(hosts)


def zk_path(value: Any) -> str:
    try:
        return check_zk_path(text(value))
    except LayoutError as exc:
        raise ValueError(str(exc)) from None


# --- the shared options --------------------------------------------------------------------------

_OPTIONS: tuple[Option, ...] = (
    Option(
        "marathon",
        "marathon_urls",
        url,
        "Marathon URL; repeat for several (failover)",
        env="MARATHON_URL",
        repeatable=True,
        metavar="URL",
    ),
    Option("user", "user", optional_text, "Marathon HTTP basic auth user", env="MARATHON_USER"),
    Option(
        "password",
        "password",
        secret,
        "Marathon HTTP basic auth password (prefer the env var)",
        env="MARATHON_PASSWORD",
    ),
    Option(
        "token",
        "token",
        secret,
        "DC/OS auth token (sent as 'Authorization: token=...')",
        env="MARATHON_TOKEN",
    ),
    Option(
        "ca-bundle",
        "ca_bundle",
        optional_text,
        "CA bundle to verify Marathon's TLS certificate",
        metavar="FILE",
    ),
    Option(
        "insecure", "insecure", boolean, "do not verify Marathon's TLS certificate", switch=True
    ),
    Option(
        "marathon-timeout",
        "marathon_timeout",
        positive_seconds,
        "read timeout of a Marathon request, seconds (default 10)",
        metavar="S",
    ),
    Option(
        "resync-interval",
        "resync_interval",
        positive_seconds,
        "full Marathon snapshot every S seconds, jittered (default 300)",
        metavar="S",
    ),
    Option(
        "poll",
        "poll",
        boolean,
        "poll Marathon instead of following its event stream "
        "(also the automatic fallback when the stream is unavailable)",
        switch=True,
    ),
    Option(
        "poll-interval",
        "poll_interval",
        positive_seconds,
        "seconds between snapshots in poll mode (default 10)",
        metavar="S",
    ),
    Option(
        "empty-confirm",
        "empty_confirm",
        seconds,
        "an empty app list after a non-empty one is believed only after it persists this "
        "long (default 5)",
        metavar="S",
    ),
    Option(
        "sync-max-age",
        "sync_max_age",
        seconds,
        "/health (and the sidecar's /readyz) fails when the last Marathon sync is older "
        "(default: 3 x the resync or poll interval, at least 60)",
        metavar="S",
    ),
    Option(
        "log-format",
        "log_format",
        choice(LOG_FORMATS),
        "text or json (default text)",
        metavar="FORMAT",
    ),
    Option(
        "log-level",
        "log_level",
        choice(LOG_LEVELS, upper=True),
        "DEBUG, INFO, WARNING or ERROR (default INFO)",
        metavar="LEVEL",
    ),
    Option(
        "zookeeper",
        "zookeeper",
        zookeeper_hosts,
        "ZooKeeper servers, HOST:PORT[,HOST:PORT...]",
        metavar="HOSTS",
    ),
    Option(
        "zk-path",
        "zk_path",
        zk_path,
        f"where the service catalog lives in ZooKeeper (default {DEFAULT_ZK_PATH})",
        metavar="PATH",
    ),
)
COMMON_OPTIONS = {option.name: option for option in _OPTIONS}
MARATHON_OPTION_NAMES = (
    "marathon",
    "user",
    "password",
    "token",
    "ca-bundle",
    "insecure",
    "marathon-timeout",
    "resync-interval",
    "poll",
    "poll-interval",
    "empty-confirm",
    "sync-max-age",
)
LOG_OPTION_NAMES = ("log-format", "log-level")
ZOOKEEPER_OPTION_NAMES = ("zookeeper", "zk-path")


def common(*names: str) -> tuple[Option, ...]:
    """The shared options of these names, in this order."""
    return tuple(COMMON_OPTIONS[name] for name in names)
