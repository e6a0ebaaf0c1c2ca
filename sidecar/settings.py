"""The sidecar's settings: flags > environment > YAML file > defaults.

Every option is described once, in :data:`OPTIONS`; the argument parser, the environment lookup,
the YAML keys and ``--help`` are all derived from that table. Values are parsed and checked here
so the rest of the daemon gets plain typed data; a bad value raises :class:`SettingsError` naming
the option and where the value came from (never the value of a secret).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from marathon_bridge import __version__
from marathon_bridge.errors import MarathonBridgeError

ENV_PREFIX = "MARATHON_SIDECAR_"
SECRET_OPTIONS = frozenset({"password", "token"})
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(MarathonBridgeError):
    """A setting has a bad value (the message names the option and its source)."""


@dataclass(frozen=True)
class Settings:
    """Everything the daemon needs to know, parsed and checked."""

    marathon_urls: tuple[str, ...] = field(default=(), repr=False)  # may hold user:pass@
    user: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    token: Optional[str] = field(default=None, repr=False)
    ca_bundle: Optional[str] = None
    insecure: bool = False
    marathon_timeout: float = 10.0
    haproxy_config: str = ""
    haproxy_bin: str = "haproxy"
    master_socket: Optional[str] = None
    state_dir: str = "/var/lib/marathon-sidecar"
    binds: tuple[str, ...] = ("127.0.0.1",)
    status_host: str = "127.0.0.1"
    status_port: int = 9090
    group: Optional[str] = None
    template: Optional[str] = None
    vhost_port: Optional[int] = None
    resync_interval: float = 300.0
    poll: bool = False
    poll_interval: float = 10.0
    min_reload_interval: float = 1.0
    debounce: float = 0.05
    drain_timeout: float = 30.0
    empty_confirm: float = 5.0
    sync_max_age: float = 0.0
    once: bool = False
    log_format: str = "text"
    log_level: str = "INFO"
    config_file: Optional[str] = None

    @property
    def haproxy_config_path(self) -> str:
        """The config file HAProxy reads: ``--haproxy-config`` or ``<state-dir>/haproxy.cfg``."""
        return self.haproxy_config or str(Path(self.state_dir) / "haproxy.cfg")

    @property
    def status_listen(self) -> str:
        host = f"[{self.status_host}]" if ":" in self.status_host else self.status_host
        return f"{host}:{self.status_port}"

    @property
    def max_sync_age(self) -> float:
        """How old the last successful Marathon sync may be before /health fails."""
        if self.sync_max_age > 0:
            return self.sync_max_age
        period = self.poll_interval if self.poll else self.resync_interval
        return max(60.0, 3 * period)

    def public_dict(self) -> dict[str, Any]:
        """The settings as plain data for logs and the status page; secrets masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_OPTIONS:
                value = "***" if value else None
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["marathon_urls"] = [redact_url(u) for u in self.marathon_urls]
        return out


def redact_url(url: str) -> str:
    """``http://user:pass@host`` -> ``http://***@host`` (credentials in URLs never get logged)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}://{authority}{slash}{path}"


# --- value parsers: str (from flag/env) or YAML scalar -> typed value ---

Parser = Callable[[Any], Any]


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a string")
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _optional_text(value: Any) -> Optional[str]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _text(value)


def _secret(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, int)):
        raise ValueError("expected a string")
    return str(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    try:
        number = float(str(value).strip().rstrip("s"))
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if number != number or number < 0 or number > 86400 * 30:
        raise ValueError("expected a number of seconds between 0 and 30 days")
    return number


def _positive_seconds(value: Any) -> float:
    number = _seconds(value)
    if number <= 0:
        raise ValueError("must be more than 0 seconds")
    return number


def _port(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a port number")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError("expected a port number") from None
    if not 1 <= number <= 65535:
        raise ValueError("expected a port number from 1 to 65535")
    return number


def _optional_port(value: Any) -> Optional[int]:
    if value is None or value == "" or value == 0 or value == "0":
        return None
    return _port(value)


def _url(value: Any) -> str:
    url = _text(value).rstrip("/")
    scheme, sep, rest = url.partition("://")
    if scheme.lower() not in ("http", "https") or not sep or not rest:
        raise ValueError("expected an http:// or https:// URL")
    return url


def _address(value: Any) -> str:
    text = _text(value)
    if any(c.isspace() for c in text) or "/" in text:
        raise ValueError("expected an IP address or host name")
    return text.strip("[]")


def parse_listen(value: Any) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); port 0 picks a free one."""
    text = _text(value)
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or (":" in host and not text.startswith("[")):
        raise ValueError("expected HOST:PORT")
    try:
        number = int(port)
    except ValueError:
        raise ValueError("expected HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise ValueError("the port must be from 0 to 65535")
    return host, number


def _choice(choices: Sequence[str], upper: bool = False) -> Parser:
    def parse(value: Any) -> str:
        text = _text(value)
        text = text.upper() if upper else text.lower()
        if text not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return text

    return parse


@dataclass(frozen=True)
class Option:
    """One setting: its flag, env var, YAML key, parser and help."""

    name: str  # flag name without dashes; YAML key (dashes or underscores)
    target: str  # Settings field
    parse: Parser
    help: str
    env: str = ""  # default: MARATHON_SIDECAR_<NAME>
    repeatable: bool = False
    switch: bool = False  # a flag without a value
    metavar: str = ""

    @property
    def env_var(self) -> str:
        return self.env or ENV_PREFIX + self.name.upper().replace("-", "_")

    @property
    def flag(self) -> str:
        return "--" + self.name


OPTIONS: tuple[Option, ...] = (
    Option(
        "marathon",
        "marathon_urls",
        _url,
        "Marathon URL; repeat for several (failover)",
        env="MARATHON_URL",
        repeatable=True,
        metavar="URL",
    ),
    Option("user", "user", _optional_text, "Marathon HTTP basic auth user", env="MARATHON_USER"),
    Option(
        "password",
        "password",
        _secret,
        "Marathon HTTP basic auth password (prefer the env var)",
        env="MARATHON_PASSWORD",
    ),
    Option(
        "token",
        "token",
        _secret,
        "DC/OS auth token (sent as 'Authorization: token=...')",
        env="MARATHON_TOKEN",
    ),
    Option(
        "ca-bundle",
        "ca_bundle",
        _optional_text,
        "CA bundle to verify Marathon's TLS certificate",
        metavar="FILE",
    ),
    Option("insecure", "insecure", _bool, "do not verify Marathon's TLS certificate", switch=True),
    Option(
        "marathon-timeout",
        "marathon_timeout",
        _positive_seconds,
        "read timeout of a Marathon request, seconds (default 10)",
        metavar="S",
    ),
    Option(
        "haproxy-config",
        "haproxy_config",
        _optional_text,
        "the haproxy.cfg the sidecar writes (default <state-dir>/haproxy.cfg)",
        metavar="PATH",
    ),
    Option(
        "haproxy-bin",
        "haproxy_bin",
        _text,
        "the haproxy binary (default 'haproxy' on PATH)",
        metavar="PATH",
    ),
    Option(
        "master-socket",
        "master_socket",
        _optional_text,
        "drive an HAProxy started by someone else (e.g. Debian's systemd unit) through this "
        "master CLI socket instead of starting one",
        metavar="PATH",
    ),
    Option(
        "state-dir",
        "state_dir",
        _text,
        "directory for the last known good state and HAProxy's sockets "
        "(default /var/lib/marathon-sidecar)",
        metavar="DIR",
    ),
    Option(
        "bind",
        "binds",
        _address,
        "address every service port listens on; repeatable (default 127.0.0.1)",
        repeatable=True,
        metavar="ADDR",
    ),
    Option(
        "status-listen",
        "status_listen",
        parse_listen,
        "HOST:PORT of the status server (default 127.0.0.1:9090)",
        metavar="HOST:PORT",
    ),
    Option(
        "group",
        "group",
        _optional_text,
        "serve only apps with this HAPROXY_GROUP (default: every app with a service port)",
        metavar="NAME",
    ),
    Option(
        "template",
        "template",
        _optional_text,
        "a Jinja2 template replacing the built-in one",
        metavar="PATH",
    ),
    Option(
        "vhost-port",
        "vhost_port",
        _optional_port,
        "shared HTTP port for HAPROXY_{n}_VHOST routing (default: none)",
        metavar="PORT",
    ),
    Option(
        "resync-interval",
        "resync_interval",
        _positive_seconds,
        "full Marathon snapshot every S seconds, jittered (default 300)",
        metavar="S",
    ),
    Option(
        "poll",
        "poll",
        _bool,
        "poll Marathon instead of following its event stream "
        "(also the automatic fallback when the stream is unavailable)",
        switch=True,
    ),
    Option(
        "poll-interval",
        "poll_interval",
        _positive_seconds,
        "seconds between snapshots in poll mode (default 10)",
        metavar="S",
    ),
    Option(
        "min-reload-interval",
        "min_reload_interval",
        _seconds,
        "minimum seconds between HAProxy reloads (default 1)",
        metavar="S",
    ),
    Option(
        "debounce",
        "debounce",
        _seconds,
        "wait this long for a burst of changes to settle before applying (default 0.05)",
        metavar="S",
    ),
    Option(
        "drain-timeout",
        "drain_timeout",
        _seconds,
        "how long old HAProxy workers may finish connections after a reload (default 30)",
        metavar="S",
    ),
    Option(
        "empty-confirm",
        "empty_confirm",
        _seconds,
        "an empty app list after a non-empty one is believed only after it persists this "
        "long (default 5)",
        metavar="S",
    ),
    Option(
        "sync-max-age",
        "sync_max_age",
        _seconds,
        "/health fails when the last Marathon sync is older (default: 3 x the resync or poll "
        "interval, at least 60)",
        metavar="S",
    ),
    Option(
        "once",
        "once",
        _bool,
        "render from one snapshot, validate, write the config and exit (no HAProxy)",
        switch=True,
    ),
    Option(
        "log-format",
        "log_format",
        _choice(LOG_FORMATS),
        "text or json (default text)",
        metavar="FORMAT",
    ),
    Option(
        "log-level",
        "log_level",
        _choice(LOG_LEVELS, upper=True),
        "DEBUG, INFO, WARNING or ERROR (default INFO)",
        metavar="LEVEL",
    ),
)

CONFIG_ENV = ENV_PREFIX + "CONFIG"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every default is left unset so a given flag can be told apart."""
    parser = argparse.ArgumentParser(
        prog="marathon-sidecar",
        description="Follow Marathon and keep a node-local HAProxy in step: every app's service "
        "port answers on 127.0.0.1:<servicePort>. Precedence: flags > environment > YAML "
        "file > defaults.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"YAML file with any of the options below as keys (env: {CONFIG_ENV})",
    )
    for option in OPTIONS:
        text = f"{option.help} (env: {option.env_var})"
        if option.switch:
            parser.add_argument(option.flag, dest=option.name, action="store_true", help=text)
        elif option.repeatable:
            parser.add_argument(
                option.flag, dest=option.name, action="append", metavar=option.metavar, help=text
            )
        else:
            parser.add_argument(
                option.flag, dest=option.name, metavar=option.metavar or "VALUE", help=text
            )
    return parser


def load_settings(argv: Optional[Sequence[str]], environ: Mapping[str, str]) -> Settings:
    """Parse flags, env and the YAML file into :class:`Settings`.

    ``--help`` and unknown flags exit through argparse (status 0 / 2); a bad value raises
    :class:`SettingsError`.
    """
    given = vars(build_parser().parse_args(list(argv) if argv is not None else []))
    config_path = given.pop("config", None) or environ.get(CONFIG_ENV) or None
    file_values = _read_yaml(config_path) if config_path else {}
    values: dict[str, Any] = {"config_file": config_path}
    for option in OPTIONS:
        found = _lookup(option, given, environ, file_values)
        if found is None:
            continue
        raw, source = found
        parsed = _parse_value(option, raw, source)
        if option.target == "status_listen":
            values["status_host"], values["status_port"] = parsed
        else:
            values[option.target] = parsed
    return _check(Settings(**values))


def _lookup(
    option: Option, given: Mapping[str, Any], environ: Mapping[str, str], file_values: Mapping
) -> Optional[tuple[Any, str]]:
    if option.name in given:
        return given[option.name], option.flag
    env_value = environ.get(option.env_var)
    if env_value is not None and (env_value != "" or option.name in SECRET_OPTIONS):
        if option.repeatable:
            return [v for v in env_value.split(",") if v.strip()], option.env_var
        return env_value, option.env_var
    if option.name in file_values:
        return file_values[option.name], f"{option.name} in the config file"
    return None


def _parse_value(option: Option, raw: Any, source: str) -> Any:
    try:
        if option.repeatable:
            items = raw if isinstance(raw, list) else str(raw).split(",")
            parsed = tuple(option.parse(item) for item in items if str(item).strip())
            if not parsed:
                raise ValueError("must not be empty")
            return parsed
        return option.parse(raw)
    except ValueError as exc:
        shown = "" if option.name in SECRET_OPTIONS else f" (got {str(raw)[:80]!r})"
        raise SettingsError(f"{source}: {exc}{shown}") from None


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"--config {path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise SettingsError(f"--config {path}{where}: not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"--config {path}: expected a mapping of option: value")
    known = {o.name for o in OPTIONS}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("_", "-")
        if name not in known:
            raise SettingsError(f"--config {path}: unknown option {str(key)[:60]!r}")
        out[name] = value
    return out


def _check(settings: Settings) -> Settings:
    if settings.password and not settings.user:
        raise SettingsError("--password needs --user")
    if settings.token and settings.user:
        raise SettingsError("--token and --user are exclusive: choose one way to authenticate")
    if not settings.marathon_urls:
        raise SettingsError("--marathon: at least one Marathon URL is needed (env MARATHON_URL)")
    if settings.ca_bundle and not Path(settings.ca_bundle).is_file():
        raise SettingsError(f"--ca-bundle: no such file: {settings.ca_bundle}")
    if settings.template and not Path(settings.template).is_file():
        raise SettingsError(f"--template: no such file: {settings.template}")
    return settings
