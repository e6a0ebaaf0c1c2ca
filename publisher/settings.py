"""The publisher's settings: flags > environment > YAML file > defaults.

The Marathon and logging options are the sidecar's own (:mod:`sidecar.common_settings`; the
environment variables that are not fixed take the prefix ``MARATHON_PUBLISHER_``), plus the
ZooKeeper servers and catalog path, the status server and the state directory. A bad value raises
:class:`~sidecar.option_table.SettingsError` naming the option.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

from sidecar.common_settings import (
    LOG_OPTION_NAMES,
    MARATHON_OPTION_NAMES,
    ZOOKEEPER_OPTION_NAMES,
    CommonSettings,
    check_common,
    common,
)
from sidecar.option_table import (
    Option,
    OptionTable,
    SettingsError,
    parse_listen,
    positive_seconds,
    text,
)
from sidecar.sources.zookeeper.layout import DEFAULT_ZK_PATH

ENV_PREFIX = "MARATHON_PUBLISHER_"
DEFAULT_STATUS_PORT = 9091
MIN_SESSION_TIMEOUT = 1.0


@dataclass(frozen=True)
class PublisherSettings(CommonSettings):
    """Everything marathon-publisher needs to know, parsed and checked."""

    zookeeper: tuple[str, ...] = ()  # HOST:PORT of each ZooKeeper server
    zk_path: str = DEFAULT_ZK_PATH
    zk_session_timeout: float = 10.0
    status_host: str = "127.0.0.1"
    status_port: int = DEFAULT_STATUS_PORT
    state_dir: str = "/var/lib/marathon-publisher"

    @property
    def zookeeper_hosts(self) -> str:
        """The connection string kazoo takes."""
        return ",".join(self.zookeeper)

    @property
    def status_listen(self) -> str:
        host = f"[{self.status_host}]" if ":" in self.status_host else self.status_host
        return f"{host}:{self.status_port}"


def _session_timeout(value: object) -> float:
    number = positive_seconds(value)
    if number < MIN_SESSION_TIMEOUT:
        raise ValueError(f"must be at least {MIN_SESSION_TIMEOUT:g} second")
    return number


_OWN = (
    Option(
        "zk-session-timeout",
        "zk_session_timeout",
        _session_timeout,
        "ZooKeeper session timeout asked for, seconds (default 10; the servers clamp it to "
        "2-20 ticks): how long a silent leader keeps the lead",
        metavar="S",
    ),
    Option(
        "status-listen",
        "status_listen",
        parse_listen,
        f"HOST:PORT of the status server (/health, /metrics; default "
        f"127.0.0.1:{DEFAULT_STATUS_PORT})",
        metavar="HOST:PORT",
        split=("status_host", "status_port"),
    ),
    Option(
        "state-dir",
        "state_dir",
        text,
        "directory for the last catalog this publisher wrote (default /var/lib/marathon-publisher)",
        metavar="DIR",
    ),
)

TABLE = OptionTable(
    "marathon-publisher",
    "Follow Marathon while leading and write the service catalog into ZooKeeper for every "
    "node's sidecar (and synapse) to watch; run two or three, one leads. Precedence: flags > "
    "environment > YAML file > defaults.",
    ENV_PREFIX,
    (
        *common(*MARATHON_OPTION_NAMES),
        *common(*ZOOKEEPER_OPTION_NAMES),
        *_OWN,
        *common(*LOG_OPTION_NAMES),
    ),
)
OPTIONS: tuple[Option, ...] = TABLE.options


def load_settings(argv: Optional[Sequence[str]], environ: Mapping[str, str]) -> PublisherSettings:
    """Parse flags, env and the YAML file; SettingsError names a bad option.

    ``--help``, ``--version`` and unknown flags exit through argparse (status 0 / 2).
    """
    values, _extra = TABLE.load(argv, environ)
    settings = PublisherSettings(**values)
    check_common(settings)
    if not settings.zookeeper:
        raise SettingsError(
            f"--zookeeper: at least one ZooKeeper server HOST:PORT is needed "
            f"(env {ENV_PREFIX}ZOOKEEPER)"
        )
    return settings
