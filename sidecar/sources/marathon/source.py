"""Marathon as a :class:`~sidecar.sources.base.CatalogSource`: the follower behind the interface."""

from __future__ import annotations

import time
from typing import Callable, Optional, Union

from marathon_bridge.client import BasicAuth, MarathonClient, TokenAuth
from sidecar.catalog import Catalog
from sidecar.common_settings import CommonSettings
from sidecar.metrics import FollowerMetrics
from sidecar.sources.base import CatalogKeeper, CatalogListener, SourceHealth

from .follower import MarathonAPI, MarathonFollower

NAME = "Marathon"


class MarathonSource:
    """Follows Marathon (event stream, snapshots, resyncs or polling) and publishes catalogs."""

    def __init__(
        self,
        client: MarathonAPI,
        *,
        metrics: Optional[FollowerMetrics] = None,
        poll: bool = False,
        poll_interval: float = 10.0,
        resync_interval: float = 300.0,
        empty_confirm: float = 5.0,
        stream_silence: float = 15.0,
        retry_backoff: float = 0.5,
        max_retry_backoff: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.keeper = CatalogKeeper(
            NAME,
            empty_confirm=empty_confirm,
            retry_backoff=retry_backoff,
            max_retry_backoff=max_retry_backoff,
            clock=clock,
        )
        self.follower = MarathonFollower(
            client,
            self.keeper,
            metrics=metrics,
            poll=poll,
            poll_interval=poll_interval,
            resync_interval=resync_interval,
            stream_silence=stream_silence,
            clock=clock,
        )

    @property
    def name(self) -> str:
        return NAME

    @property
    def catalog(self) -> Optional[Catalog]:
        return self.keeper.catalog

    def start(self, listener: CatalogListener) -> None:
        self.keeper.attach(listener)
        self.follower.start()

    def stop(self) -> None:
        self.follower.stop()
        self.client.close()

    def snapshot_once(self) -> Catalog:
        return self.follower.snapshot_once()

    def request_resync(self, reason: str) -> None:
        self.follower.request_resync(reason)

    def seed(self, catalog: Catalog) -> None:
        self.keeper.seed(catalog)
        self.follower.translator.seed(catalog)

    def health(self) -> SourceHealth:
        follower = self.follower
        connected = follower.stream_connected
        if follower.poll_mode:
            mode = "poll"
        else:
            mode = "stream" if connected else "poll (event stream down)"
        return SourceHealth(
            name=NAME,
            mode=mode,
            connected=connected,
            synced=self.keeper.synced,
            last_contact=follower.last_contact,
            last_error=self.keeper.last_error,
        )


def client_from_settings(
    settings: CommonSettings, user_agent: Optional[str] = None
) -> MarathonClient:
    """The Marathon client the settings describe (URLs, credentials, TLS, timeout)."""
    auth: Union[BasicAuth, TokenAuth, None] = None
    if settings.token:
        auth = TokenAuth(settings.token)
    elif settings.user:
        auth = BasicAuth(settings.user, settings.password or "")
    verify: Union[bool, str] = False if settings.insecure else (settings.ca_bundle or True)
    return MarathonClient(
        list(settings.marathon_urls),
        auth=auth,
        verify=verify,
        timeout=(3.05, settings.marathon_timeout),
        retries=1,
        user_agent=user_agent,
    )
