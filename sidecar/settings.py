"""The sidecar's settings: flags > environment > YAML file > defaults.

Every option is described once: the options the sidecar shares with ``marathon-publisher``
(following Marathon, logging) in :mod:`sidecar.common_settings`, the sidecar's own below; the
argument parser, the environment lookup, the YAML keys and ``--help`` are all derived from the
table (:mod:`sidecar.option_table`). Values are parsed and checked there so the rest of the daemon
gets plain typed data; a bad value raises :class:`SettingsError` naming the option and where the
value came from (never the value of a secret).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from sidecar.common_settings import (
    LOG_OPTION_NAMES,
    ZOOKEEPER_OPTION_NAMES,
    CommonSettings,
    check_common,
    common,
)
from sidecar.option_table import (
    Option,
    OptionTable,
    SettingsError,
    address,
    boolean,
    choice,
    connections,
    optional_listen,
    optional_port,
    optional_text,
    parse_listen,
    seconds,
    text,
)
from sidecar.sources.zookeeper.layout import DEFAULT_ZK_PATH
from sidecar.sources.zookeeper.local_services import (
    LocalService,
    parse_local_services,
)
from sidecar.sources.zookeeper.local_services import as_dict as local_services_dict
from sidecar.tuning import TUNING_OPTIONS, tuning_problem

__all__ = ["OPTIONS", "Option", "Settings", "SettingsError", "build_parser", "load_settings"]

ENV_PREFIX = "MARATHON_SIDECAR_"
SOURCES = ("marathon", "zookeeper")
SERVICES_KEY = "services"  # YAML only: how to serve nerve-registered services (ZooKeeper mode)


@dataclass(frozen=True)
class Settings(CommonSettings):
    """Everything the daemon needs to know, parsed and checked."""

    source: str = "marathon"
    zookeeper: tuple[str, ...] = ()  # HOST:PORT of each ZooKeeper server
    zk_path: str = DEFAULT_ZK_PATH
    services: tuple[LocalService, ...] = ()  # the YAML `services:` map
    haproxy_config: str = ""
    haproxy_bin: str = "haproxy"
    master_socket: Optional[str] = None
    state_dir: str = "/var/lib/marathon-sidecar"
    binds: tuple[str, ...] = ("127.0.0.1",)
    status_host: str = "127.0.0.1"
    status_port: int = 9090
    probe_listen: Optional[str] = None  # HOST:PORT answering only /livez and /readyz
    group: Optional[str] = None
    template: Optional[str] = None
    vhost_port: Optional[int] = None
    maxconn: int = 4096
    min_reload_interval: float = 1.0
    debounce: float = 0.02
    drain_timeout: float = 30.0
    once: bool = False
    output: Optional[str] = None  # --once: write here instead of stdout
    strict: bool = False  # --once: exit 3 when labels are not honored or apps left out
    # HAProxy tuning (sidecar/tuning.py); a timeout left None keeps RenderSettings' default
    timeout_connect: Optional[str] = None
    timeout_client: Optional[str] = None
    timeout_server: Optional[str] = None
    timeout_tunnel: Optional[str] = None
    timeout_http_request: Optional[str] = None
    timeout_http_keep_alive: Optional[str] = None
    timeout_queue: Optional[str] = None
    timeout_check: Optional[str] = None
    frontend_maxconn: Optional[int] = None
    haproxy_log: str = "off"
    haproxy_metrics_listen: Optional[str] = None
    haproxy_stats_page: bool = False

    @property
    def haproxy_config_path(self) -> str:
        """The config file HAProxy reads: ``--haproxy-config`` or ``<state-dir>/haproxy.cfg``."""
        return self.haproxy_config or str(Path(self.state_dir) / "haproxy.cfg")

    @property
    def status_listen(self) -> str:
        host = f"[{self.status_host}]" if ":" in self.status_host else self.status_host
        return f"{host}:{self.status_port}"

    def public_dict(self) -> dict[str, Any]:
        out = super().public_dict()
        out["services"] = local_services_dict(self.services)
        return out


_SIDECAR_OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "source",
            "source",
            choice(SOURCES),
            "where the service catalog comes from: marathon (follow Marathon itself, the "
            "default) or zookeeper (watch the catalog marathon-publisher writes; no Marathon "
            "connection; needs --zookeeper)",
            metavar="KIND",
        ),
        Option(
            "haproxy-config",
            "haproxy_config",
            optional_text,
            "the haproxy.cfg the sidecar writes (default <state-dir>/haproxy.cfg)",
            metavar="PATH",
        ),
        Option(
            "haproxy-bin",
            "haproxy_bin",
            text,
            "the haproxy binary (default 'haproxy' on PATH)",
            metavar="PATH",
        ),
        Option(
            "master-socket",
            "master_socket",
            optional_text,
            "drive an HAProxy started by someone else (e.g. Debian's systemd unit) through this "
            "master CLI socket instead of starting one",
            metavar="PATH",
        ),
        Option(
            "state-dir",
            "state_dir",
            text,
            "directory for the last known good state and HAProxy's sockets "
            "(default /var/lib/marathon-sidecar)",
            metavar="DIR",
        ),
        Option(
            "bind",
            "binds",
            address,
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
            split=("status_host", "status_port"),
        ),
        Option(
            "probe-listen",
            "probe_listen",
            optional_listen,
            "HOST:PORT of a second listener answering only /livez and /readyz, for checks made "
            "from other hosts such as Marathon's readinessCheck (default: none)",
            metavar="HOST:PORT",
        ),
        Option(
            "group",
            "group",
            optional_text,
            "serve only apps with this HAPROXY_GROUP (default: every app with a service port)",
            metavar="NAME",
        ),
        Option(
            "template",
            "template",
            optional_text,
            "a Jinja2 template replacing the built-in one",
            metavar="PATH",
        ),
        Option(
            "vhost-port",
            "vhost_port",
            optional_port,
            "shared HTTP port for HAPROXY_{n}_VHOST routing (default: none)",
            metavar="PORT",
        ),
        Option(
            "maxconn",
            "maxconn",
            connections,
            "HAProxy's global maxconn wanted (default 4096); lowered to fit the open-files limit "
            "when it must (docs/operations.md, 'Open files')",
            metavar="N",
        ),
        Option(
            "min-reload-interval",
            "min_reload_interval",
            seconds,
            "minimum seconds between HAProxy reloads (default 1)",
            metavar="S",
        ),
        Option(
            "debounce",
            "debounce",
            seconds,
            "server changes are applied at most once per S during a storm; a change that "
            "needs a reload waits for S without changes (default 0.02)",
            metavar="S",
        ),
        Option(
            "drain-timeout",
            "drain_timeout",
            seconds,
            "how long old HAProxy workers may finish connections after a reload (default 30)",
            metavar="S",
        ),
        Option(
            "once",
            "once",
            boolean,
            "preview: render one snapshot, check it with haproxy -c, print it (or --output) and "
            "exit; touches nothing of a running node",
            switch=True,
        ),
        Option(
            "output",
            "output",
            optional_text,
            "with --once: write the config to this file (atomically; its folder must exist) "
            "instead of stdout",
            metavar="FILE",
        ),
        Option(
            "strict",
            "strict",
            boolean,
            "with --once: exit 3 when a label is not honored or an app, port or task is left out",
            switch=True,
        ),
    )
}


def _own(*names: str) -> tuple[Option, ...]:
    return tuple(_SIDECAR_OPTIONS[name] for name in names)


TABLE = OptionTable(
    "marathon-sidecar",
    "Follow Marathon (or the catalog marathon-publisher writes into ZooKeeper) and keep a "
    "node-local HAProxy in step: every app's service port answers on "
    "127.0.0.1:<servicePort>. Precedence: flags > environment > YAML file > defaults.",
    ENV_PREFIX,
    (
        *_own("source"),
        *common(*ZOOKEEPER_OPTION_NAMES),
        *common(
            "marathon", "user", "password", "token", "ca-bundle", "insecure", "marathon-timeout"
        ),
        *_own(
            "haproxy-config",
            "haproxy-bin",
            "master-socket",
            "state-dir",
            "bind",
            "status-listen",
            "probe-listen",
            "group",
            "template",
            "vhost-port",
            "maxconn",
        ),
        *common("resync-interval", "poll", "poll-interval"),
        *_own("min-reload-interval", "debounce", "drain-timeout"),
        *common("empty-confirm", "sync-max-age"),
        *TUNING_OPTIONS,
        *_own("once", "output", "strict"),
        *common(*LOG_OPTION_NAMES),
    ),
)
OPTIONS: tuple[Option, ...] = TABLE.options
CONFIG_ENV = TABLE.config_env


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every default is left unset so a given flag can be told apart."""
    return TABLE.build_parser()


def load_settings(argv: Optional[Sequence[str]], environ: Mapping[str, str]) -> Settings:
    """Parse flags, env and the YAML file into :class:`Settings`.

    ``--help`` and unknown flags exit through argparse (status 0 / 2); a bad value raises
    :class:`SettingsError`.
    """
    values, extra = TABLE.load(argv, environ, extra_file_keys=frozenset({SERVICES_KEY}))
    if SERVICES_KEY in extra:
        try:
            values["services"] = parse_local_services(extra[SERVICES_KEY])
        except ValueError as exc:
            raise SettingsError(f"{SERVICES_KEY} in the config file: {exc}") from None
    return _check(Settings(**values))


def _check(settings: Settings) -> Settings:
    settings = _absolute_paths(settings)
    _check_state_dir(settings.state_dir)
    _check_preview(settings)
    zookeeper_mode = settings.source == "zookeeper"
    check_common(settings, marathon_required=not zookeeper_mode)
    if zookeeper_mode and not settings.zookeeper:
        raise SettingsError(
            "--zookeeper: at least one ZooKeeper server HOST:PORT is needed with "
            f"--source zookeeper (env {ENV_PREFIX}ZOOKEEPER)"
        )
    problem = tuning_problem(settings)
    if problem:
        raise SettingsError(problem)
    if settings.template and not Path(settings.template).is_file():
        raise SettingsError(f"--template: no such file: {settings.template}")
    status = (settings.status_host, settings.status_port)
    if (
        settings.probe_listen
        and settings.status_port
        and parse_listen(settings.probe_listen) == status
    ):
        raise SettingsError("--probe-listen: the status server listens there already")
    return settings


# paths relative to the working directory at start; the daemon never changes directory
PATH_FIELDS = ("state_dir", "haproxy_config", "master_socket", "template", "ca_bundle", "output")
# what HAProxy's config may name in a path (the state dir holds its sockets and state file)
_CONFIG_PATH_RE = re.compile(r"/[A-Za-z0-9._/@+=,-]*")
_LONGEST_SOCKET = "/run/master.sock"
_SOCKET_PATH_MAX = 97  # HAProxy's limit for a UNIX socket path (it binds <path>.<pid>.tmp first)


def _absolute_paths(settings: Settings) -> Settings:
    """Relative paths (and a relative ``--haproxy-bin`` with a slash) made absolute."""
    changes = {
        name: os.path.abspath(getattr(settings, name))
        for name in PATH_FIELDS
        if getattr(settings, name) and not os.path.isabs(getattr(settings, name))
    }
    if "/" in settings.haproxy_bin and not os.path.isabs(settings.haproxy_bin):
        changes["haproxy_bin"] = os.path.abspath(settings.haproxy_bin)
    return replace(settings, **changes) if changes else settings


def _check_state_dir(state_dir: str) -> None:
    if not _CONFIG_PATH_RE.fullmatch(state_dir):
        raise SettingsError(
            f"--state-dir: haproxy.cfg names paths in it, which may only hold letters, digits "
            f"and . _ / @ + = , - (got {state_dir[:120]!r})"
        )
    longest = len(state_dir.rstrip("/")) + len(_LONGEST_SOCKET)
    if longest > _SOCKET_PATH_MAX:
        raise SettingsError(
            f"--state-dir: too long for HAProxy's sockets in it ({longest} characters for "
            f"{_LONGEST_SOCKET.lstrip('/')}; HAProxy allows {_SOCKET_PATH_MAX})"
        )


def _check_preview(settings: Settings) -> None:
    """``--output`` and ``--strict`` belong to ``--once``; ``--output``'s folder must exist."""
    for name, given in (("--output", settings.output), ("--strict", settings.strict)):
        if given and not settings.once:
            raise SettingsError(f"{name} only applies to --once")
    if settings.output:
        folder = os.path.dirname(settings.output)
        if not os.path.isdir(folder):
            raise SettingsError(f"--output: no such directory: {folder} (create it first)")
        if os.path.isdir(settings.output):
            raise SettingsError(f"--output: is a directory: {settings.output}")
