"""Parts of an HAProxy model: without some apps, without some frontends (pure).

The applier leaves out what HAProxy refuses (apps whose config does not validate, listeners whose
port another process holds) and applies the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from sidecar.catalog import Skipped
from sidecar.haproxy_model import FrontendSpec, HAProxyModel

PORT_SKIP_REASON = "its service port cannot be bound"


def apps_of(model: HAProxyModel) -> list[str]:
    return sorted({b.app_id for b in model.backends})


def without_apps(model: HAProxyModel, drop: Iterable[str], reason: str = "") -> HAProxyModel:
    """The model without the backends of ``drop`` (and routes/frontends left with nothing)."""
    dropped = set(drop)
    if not dropped:
        return model
    backends = tuple(b for b in model.backends if b.app_id not in dropped)
    kept = {b.name for b in backends}
    frontends = []
    for fe in model.frontends:
        routes = tuple(r for r in fe.routes if r.backend in kept)
        default = fe.default_backend if fe.default_backend in kept else None
        if routes or default:
            frontends.append(replace(fe, routes=routes, default_backend=default))
    skipped = model.skipped
    if reason:
        skipped += tuple(Skipped(app_id=a, reason=reason) for a in sorted(dropped))
    return replace(model, frontends=tuple(frontends), backends=backends, skipped=skipped)


def only_apps(model: HAProxyModel, keep: Iterable[str]) -> HAProxyModel:
    kept = set(keep)
    return without_apps(model, [a for a in apps_of(model) if a not in kept])


def frontend_backends(frontend: FrontendSpec) -> set[str]:
    """The backends a frontend sends traffic to."""
    names = {r.backend for r in frontend.routes}
    if frontend.default_backend:
        names.add(frontend.default_backend)
    return names


def without_frontends(
    model: HAProxyModel, blocked: Mapping[str, str], prefix: str = PORT_SKIP_REASON
) -> HAProxyModel:
    """The model without the frontends in ``blocked`` (name -> why it cannot listen).

    Backends only those frontends served go too; every app that lost a route is listed in
    ``skipped`` with the reason (after ``prefix``), like an app HAProxy refused.
    """
    if not blocked:
        return model
    frontends = tuple(fe for fe in model.frontends if fe.name not in blocked)
    still_served = {name for fe in frontends for name in frontend_backends(fe)}
    lost: dict[str, str] = {}  # backend -> reason
    for fe in model.frontends:
        if fe.name in blocked:
            for name in sorted(frontend_backends(fe)):
                lost.setdefault(name, blocked[fe.name])
    backends = tuple(b for b in model.backends if b.name not in lost or b.name in still_served)
    reasons: dict[str, str] = {}
    for b in model.backends:
        if b.name in lost:
            reasons.setdefault(b.app_id, lost[b.name])
    skipped = tuple(
        Skipped(app_id=app, reason=f"{prefix}: {reason}" if prefix else reason)
        for app, reason in sorted(reasons.items())
    )
    return replace(model, frontends=frontends, backends=backends, skipped=model.skipped + skipped)
