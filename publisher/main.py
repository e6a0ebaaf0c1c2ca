"""``marathon-publisher``: parse settings, set up logging and signals, build and run the daemon.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), ``--help`` or ``--version``; 1 when the daemon
cannot start (the status port is taken, kazoo is missing); 2 for bad settings (the message names
the option). SIGHUP takes a fresh Marathon snapshot when this publisher leads.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from marathon_bridge import __version__
from publisher.settings import PublisherSettings, load_settings
from sidecar.main import (
    install_signal_handlers,
    make_folders,
    settings_or_exit_code,
    setup_logging,
)

if TYPE_CHECKING:
    from publisher.daemon import PublisherDaemon
    from sidecar.metrics import FollowerMetrics
    from sidecar.sources.base import CatalogSource

log = logging.getLogger("publisher")

PROG = "marathon-publisher"


def prepare_state_dir(state_dir: str) -> str:
    """Create --state-dir (mode 700); "" or what went wrong."""
    return make_folders([(Path(state_dir), 0o700)])


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None) -> int:
    """Entry point of ``marathon-publisher``."""
    settings = settings_or_exit_code(PROG, load_settings, argv, environ)
    if isinstance(settings, int):
        return settings
    setup_logging(settings)
    problem = prepare_state_dir(settings.state_dir)
    if problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    try:
        daemon = build_daemon(settings)
        log.info("starting", extra={"settings": json.dumps(settings.public_dict(), sort_keys=True)})
        install_signal_handlers(
            daemon, log, "SIGHUP: taking a fresh Marathon snapshot (when leading)"
        )
        return daemon.run()
    except Exception as exc:
        log.error("cannot run", extra={"error": str(exc)[:500]})
        return 1


# --- wiring: imported inside the functions, so --help and --version stay fast -------------------


def build_daemon(settings: PublisherSettings, client: Any = None) -> PublisherDaemon:
    """The daemon the settings describe; `client` (a KazooClient) may be given instead."""
    try:
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry
    except ImportError:
        raise RuntimeError("kazoo is not installed: install marathon-bridge[zookeeper]") from None
    from publisher.daemon import PublisherDaemon
    from publisher.publisher import default_identifier
    from sidecar.state_store import StateStore

    identifier = default_identifier()
    if client is None:
        client = KazooClient(
            hosts=settings.zookeeper_hosts,
            timeout=settings.zk_session_timeout,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=5.0),
        )

    def make_source(metrics: FollowerMetrics) -> CatalogSource:
        from sidecar.sources.marathon.source import MarathonSource, client_from_settings

        marathon = client_from_settings(settings, user_agent=f"{PROG}/{__version__} ({identifier})")
        return MarathonSource(
            marathon,
            metrics=metrics,
            poll=settings.poll,
            poll_interval=settings.poll_interval,
            resync_interval=settings.resync_interval,
            empty_confirm=settings.empty_confirm,
        )

    return PublisherDaemon(
        settings,
        client,
        make_source,
        identifier=identifier,
        state_store=StateStore(settings.state_dir),
    )
