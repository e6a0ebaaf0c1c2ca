"""The running model's figures for /metrics, counted when they are read, not per change.

Counting every server of a 10k-service model (30,000 servers, and the catalog's instances) takes
tens of milliseconds; on the daemon's loop it held back the changes of an event storm once a
second. :class:`ServedModel` keeps only the newest (model, catalog) pair; a scrape counts it
once (:func:`model_figures`, pure) and reuses the figures until the pair changes.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, NamedTuple, Optional

if TYPE_CHECKING:
    from sidecar.catalog import Catalog
    from sidecar.haproxy_model import HAProxyModel


class ModelFigures(NamedTuple):
    services: int  # backends served
    ready: int  # servers in rotation
    drain: int  # servers kept out of rotation
    skipped: int  # apps or ports left out
    problems: int  # distinct labels not honored
    tasks_out: int  # known tasks out of rotation


NO_MODEL = ModelFigures(0, 0, 0, 0, 0, 0)


def model_figures(model: HAProxyModel, catalog: Catalog) -> ModelFigures:
    """Count what the running config serves and the catalog's instances out of rotation."""
    ready = drain = 0
    for backend in model.backends:
        for server in backend.servers:
            if server.state == "ready":
                ready += 1
            else:
                drain += 1
    out = {i.id for _s, i in catalog.instances() if i.state != "ready"}
    return ModelFigures(
        services=len(model.backends),
        ready=ready,
        drain=drain,
        skipped=len(model.skipped),
        problems=len(set(model.problems)),
        tasks_out=len(out - catalog.in_rotation()),
    )


class ServedModel:
    """The newest (model, catalog) pair and its figures, counted at most once per pair."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pair: Optional[tuple[HAProxyModel, Catalog]] = None
        self._figures: Optional[ModelFigures] = None

    def set(self, model: HAProxyModel, catalog: Catalog) -> None:
        with self._lock:
            self._pair, self._figures = (model, catalog), None

    def figures(self) -> ModelFigures:
        with self._lock:
            if self._figures is None:
                pair = self._pair
                self._figures = NO_MODEL if pair is None else model_figures(*pair)
            return self._figures
