"""Picks and builds the catalog source the settings ask for (``--source``: marathon or zookeeper).

Each source is imported only when asked for: the ZooKeeper source needs kazoo (the
``marathon-bridge[zookeeper]`` extra), the Marathon source never connects to ZooKeeper and the
ZooKeeper source never builds a Marathon client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from sidecar.metrics import SidecarMetrics
from sidecar.settings import SOURCES, Settings, SettingsError
from sidecar.sources.base import CatalogSource
from sidecar.sources.marathon.translate import catalog_from_apps
from sidecar.state_store import LegacyReader

if TYPE_CHECKING:
    from sidecar.sources.marathon.follower import MarathonAPI


def make_source(
    settings: Settings,
    metrics: SidecarMetrics,
    *,
    kind: Optional[str] = None,
    marathon_client: Optional[MarathonAPI] = None,
    stream_silence: float = 15.0,
) -> CatalogSource:
    """The source of ``kind`` (default: ``settings.source``); ``marathon_client`` replaces the
    one built from the settings."""
    kind = kind or settings.source
    if kind == "marathon":
        from sidecar.sources.marathon.source import MarathonSource, client_from_settings

        return MarathonSource(
            marathon_client if marathon_client is not None else client_from_settings(settings),
            metrics=metrics,
            poll=settings.poll,
            poll_interval=settings.poll_interval,
            resync_interval=settings.resync_interval,
            empty_confirm=settings.empty_confirm,
            stream_silence=stream_silence,
        )
    if kind == "zookeeper":
        return _zookeeper_source(settings, metrics)
    raise SettingsError(f"source: not one of {', '.join(SOURCES)}: {kind!r}")


def _zookeeper_source(settings: Settings, metrics: SidecarMetrics) -> CatalogSource:
    try:
        from sidecar.sources.zookeeper.source import ZooKeeperSource
    except ImportError as exc:  # kazoo is an extra
        raise SettingsError(
            f"--source zookeeper needs kazoo: pip install 'marathon-bridge[zookeeper]' ({exc})"
        ) from None
    return ZooKeeperSource(
        settings.zookeeper,
        settings.zk_path,
        local_services=settings.services,
        metrics=metrics,
        empty_confirm=settings.empty_confirm,
    )


def legacy_state_reader(kind: str = "marathon") -> Optional[LegacyReader]:
    """How the state store reads a file of format 1, which earlier versions wrote with Marathon's
    app list: through the Marathon translation."""
    return catalog_from_apps if kind == "marathon" else None
