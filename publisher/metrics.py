"""Prometheus metrics of one publisher (its own registry). Names start with ``marathon_publisher_``.

Following Marathon: the sidecar's collectors under this prefix (:class:`FollowerMetrics`: events,
resyncs, errors, stream connects, poll mode, sync age). The rest is read from the publisher at
scrape time (:class:`PublisherFigures`): the role and leadership changes, the ZooKeeper
connection, the writes (transactions, nodes created and deleted, options rewritten, conflicts),
and the catalog this publisher hands to ZooKeeper while it leads.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable, Optional

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.metrics import FollowerMetrics

PREFIX = "marathon_publisher_"


@dataclass(frozen=True)
class PublisherFigures:
    """What the publisher reports at a scrape."""

    leader: bool
    leader_changes: int
    zookeeper_connected: bool
    transactions: int
    created: int
    deleted: int
    options_set: int
    conflicts: int
    services: int  # in the catalog handed to ZooKeeper (0 while standby)
    instances: int
    refused_services: int  # services that cannot be written (name, instances, options)
    skipped_apps: int  # apps or ports of Marathon's catalog left out (bad labels...)
    label_problems: int


_GAUGES = (
    ("leader", "1 on the publisher that leads, 0 on standbys"),
    ("zookeeper_connected", "1 while the ZooKeeper session is connected"),
    ("services", "Services in the catalog this publisher writes (0 while standby)"),
    ("instances", "Instances in rotation in the catalog this publisher writes (0 while standby)"),
    ("refused_services", "Services that cannot be written to ZooKeeper (reported on /health)"),
    ("skipped_apps", "Marathon apps or ports left out of the catalog (bad labels...)"),
    ("label_problems", "Labels not (fully) honored: bad values, unsupported marathon-lb labels"),
)
_COUNTERS = (
    ("leader_changes", "leader_changes", "Times this publisher gained or lost leadership"),
    ("zk_transactions", "transactions", "ZooKeeper transactions committed"),
    ("zk_nodes_created", "created", "Instance, service and options nodes created"),
    ("zk_nodes_deleted", "deleted", "Instance, service and options nodes deleted"),
    ("zk_options_written", "options_set", "Options nodes rewritten (set_data)"),
    ("zk_conflicts", "conflicts", "Transactions refused because a service changed behind us"),
)


class _FiguresCollector(Collector):
    def __init__(self, figures: Callable[[], PublisherFigures]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        now = self._figures()
        for name, helptext in _GAUGES:
            yield GaugeMetricFamily(PREFIX + name, helptext, value=float(getattr(now, name)))
        for name, field, helptext in _COUNTERS:
            yield CounterMetricFamily(PREFIX + name, helptext, value=float(getattr(now, field)))


class PublisherMetrics(FollowerMetrics):
    """Every collector of the publisher, on a registry owned by this object."""

    def __init__(
        self,
        figures: Callable[[], PublisherFigures],
        registry: Optional[CollectorRegistry] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(PREFIX, registry, clock)
        self.registry.register(_FiguresCollector(figures))

    def forget_sync(self) -> None:
        """A standby follows nothing: no sync age, no poll mode."""
        self._last_sync = None
        self.last_sync_timestamp.set(0)
        self.poll_mode.set(0)
