"""The rules every source shares (CatalogKeeper), with a fake clock and no threads."""

from __future__ import annotations

from typing import Optional

from sidecar.catalog import Catalog, Service, ServiceOptions
from sidecar.sources.base import CatalogKeeper


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Listener:
    def __init__(self) -> None:
        self.catalogs: list[tuple[Catalog, str]] = []
        self.problems: list[Optional[str]] = []
        self.contacts = 0

    def catalog_changed(self, catalog: Catalog, reason: str) -> None:
        self.catalogs.append((catalog, reason))

    def source_problem(self, problem: Optional[str]) -> None:
        self.problems.append(problem)

    def source_contact(self) -> None:
        self.contacts += 1


def catalog(*ports: int) -> Catalog:
    services = [Service(f"/a{p}:0", f"/a{p}", 0, ServiceOptions(p, p)) for p in ports]
    return Catalog({s.key: s for s in services})


def keeper(**kwargs: float) -> tuple[CatalogKeeper, Listener, Clock]:
    clock, listener = Clock(), Listener()
    keep = CatalogKeeper("Marathon", clock=clock, **kwargs)  # type: ignore[arg-type]
    keep.attach(listener)
    return keep, listener, clock


def test_snapshots_are_published_only_when_they_change() -> None:
    keep, listener, _clock = keeper()
    assert keep.offer_snapshot(catalog(1), "start") is None
    assert keep.offer_snapshot(catalog(1), "resync") is None
    assert [reason for _c, reason in listener.catalogs] == ["snapshot (start)"]
    assert listener.contacts == 2 and keep.synced
    keep.offer_change(catalog(1, 2), "event")
    assert listener.catalogs[-1] == (catalog(1, 2), "event")


def test_an_empty_snapshot_after_services_needs_confirmation() -> None:
    keep, listener, clock = keeper(empty_confirm=5.0)
    keep.offer_snapshot(catalog(1, 2), "start")
    hold = keep.offer_snapshot(catalog(), "resync")
    assert hold is not None and 0 < hold <= 5.0
    assert keep.catalog == catalog(1, 2) and len(listener.catalogs) == 1
    assert listener.problems[-1] is not None and "while 2 were known" in listener.problems[-1]
    clock.now += 5.0  # still empty after the confirmation time, and asked twice: believed
    assert keep.offer_snapshot(catalog(), "confirm empty") is None
    assert listener.catalogs[-1] == (catalog(), "snapshot (confirm empty)")


def test_a_short_empty_blip_is_forgotten() -> None:
    keep, listener, clock = keeper(empty_confirm=5.0)
    keep.offer_snapshot(catalog(1), "start")
    assert keep.offer_snapshot(catalog(), "resync") is not None
    assert keep.offer_snapshot(catalog(1), "resync") is None  # back: the count starts again
    clock.now += 10.0
    assert keep.offer_snapshot(catalog(), "resync") is not None
    assert listener.catalogs == [(catalog(1), "snapshot (start)")]


def test_empty_after_empty_or_first_is_believed_at_once() -> None:
    keep, listener, _clock = keeper()
    assert keep.offer_snapshot(catalog(), "start") is None
    assert keep.offer_snapshot(catalog(), "resync") is None
    keep.offer_change(catalog(1), "event")
    keep.offer_change(catalog(), "app deleted")  # one by one: no confirmation needed
    assert listener.catalogs[-1] == (catalog(), "app deleted")


def test_a_seeded_catalog_makes_an_empty_first_snapshot_suspicious() -> None:
    keep, _listener, _clock = keeper()
    keep.seed(catalog(1))
    assert not keep.synced
    assert keep.offer_snapshot(catalog(), "start") is not None


def test_failures_back_off_exponentially_and_clear_on_success() -> None:
    keep, listener, _clock = keeper(retry_backoff=0.5, max_retry_backoff=3.0)
    delays = [keep.failed("connection refused", "marathon") for _ in range(5)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert listener.problems[-1] == ("Marathon: connection refused; keeping the last good state")
    assert keep.last_error == "connection refused"
    keep.offer_snapshot(catalog(1), "retry")
    assert listener.problems[-1] is None and keep.last_error is None and keep.backoff() == 0.5
