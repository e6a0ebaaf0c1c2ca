"""Picks and builds the catalog source the settings ask for (``marathon`` today)."""

from __future__ import annotations

from typing import Optional

from sidecar.metrics import SidecarMetrics
from sidecar.settings import Settings, SettingsError
from sidecar.sources.base import CatalogSource
from sidecar.sources.marathon.follower import MarathonAPI
from sidecar.sources.marathon.source import MarathonSource, client_from_settings
from sidecar.sources.marathon.translate import catalog_from_apps
from sidecar.state_store import LegacyReader

SOURCES = ("marathon",)


def make_source(
    settings: Settings,
    metrics: SidecarMetrics,
    *,
    kind: str = "marathon",
    marathon_client: Optional[MarathonAPI] = None,
    stream_silence: float = 15.0,
) -> CatalogSource:
    """The source of ``kind``; ``marathon_client`` replaces the one built from the settings."""
    if kind == "marathon":
        return MarathonSource(
            marathon_client if marathon_client is not None else client_from_settings(settings),
            metrics=metrics,
            poll=settings.poll,
            poll_interval=settings.poll_interval,
            resync_interval=settings.resync_interval,
            empty_confirm=settings.empty_confirm,
            stream_silence=stream_silence,
        )
    raise SettingsError(f"source: not one of {', '.join(SOURCES)}: {kind!r}")


def legacy_state_reader(kind: str = "marathon") -> Optional[LegacyReader]:
    """How the state store reads a file of format 1, which earlier versions wrote with Marathon's
    app list: through the Marathon translation."""
    return catalog_from_apps if kind == "marathon" else None
