"""What the ZooKeeper watcher delivered, as the neutral catalog (pure).

One watched service (a :class:`~sidecar.sources.zookeeper.update.ServiceUpdate`) becomes a
:class:`ServiceEntry`: the catalog :class:`~sidecar.catalog.Service` it stands for, with what was
left out (:class:`~sidecar.catalog.Skipped`) or not honored (:class:`~sidecar.catalog.Problem`):

- a service our publisher wrote has an options node: its JSON gives the catalog identity (app id,
  port index) and the :class:`~sidecar.catalog.ServiceOptions`, checked by the catalog's own
  rules; a bad options node keeps the last good options (a problem), or skips the service when
  there never were good ones;
- a service nerve registered has no options node: the operator's ``services:`` map gives its
  options (:mod:`.local_services`), its app id is the znode name; without an entry it is skipped
  and reported, never fatal;
- each instance is in rotation (``ready``): ZooKeeper holds only instances that take traffic, and
  one that leaves is drained by the applier as any server that leaves the model. Its id is the
  task id our publisher labels it with, or synapse's ``<name>_<host>:<port>`` for nerve's.

What the publisher writes and how it reads back (names, the options JSON, the instance labels)
is the contract in :mod:`.mapping`; this module adds the reading side's rules around it.

:func:`assemble` puts the entries together: one catalog, every service key once (the lowest
znode name wins a key two services claim; the other is skipped). :class:`Assembly` does the same
one changed entry at a time, for the watcher's batches: each catalog is made copy-on-write from
the one before and tagged with the keys it changed, so a batch costs what it changed. Entries are
reused while their update is the same object, so unchanged services keep their very
:class:`~sidecar.catalog.Service` objects (the builder caches by identity).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple, Optional

from sidecar.catalog import (
    Catalog,
    CatalogError,
    Instance,
    Problem,
    Service,
    ServiceOptions,
    Skipped,
    service_key,
    updated_catalog,
)
from sidecar.sources.zookeeper import layout
from sidecar.sources.zookeeper.mapping import Identity, catalog_instance, identity_from_options
from sidecar.sources.zookeeper.update import ServiceUpdate

_NO_NAMES: Mapping[str, str] = MappingProxyType({})
OPTIONS_LABEL = "options"  # the Problem's "label" for a bad options node
NO_OPTIONS = (
    "no options in ZooKeeper and no entry in the sidecar's services: map "
    "(a service nerve registered needs at least a port there)"
)


class ServiceEntry(NamedTuple):
    """What one watched service contributes to the catalog."""

    update: ServiceUpdate
    services: tuple[Service, ...] = ()
    problems: tuple[Problem, ...] = ()
    skipped: tuple[Skipped, ...] = ()


def service_entry(
    update: ServiceUpdate,
    local: Mapping[str, ServiceOptions],
    previous: Optional[ServiceEntry] = None,
) -> ServiceEntry:
    """The entry for one update; reuses ``previous``'s services when they come out equal."""
    if not update.exists:
        return ServiceEntry(update)
    problems: list[Problem] = []
    skipped: list[Skipped] = []
    identity = _identity(update, local, previous, problems, skipped)
    app = update.service if identity is None else identity.app_id
    skipped += [_child_skipped(app, p) for p in update.problems if p != update.options_problem]
    if identity is None:
        return ServiceEntry(update, (), tuple(problems), tuple(skipped))
    instances = _instances(update, identity.app_id, skipped)
    key = service_key(identity.app_id, identity.port_index)
    service = Service(key, identity.app_id, identity.port_index, identity.options, instances)
    if previous is not None and previous.services == (service,):
        service = previous.services[0]
    return ServiceEntry(update, (service,), tuple(problems), tuple(skipped))


def _identity(
    update: ServiceUpdate,
    local: Mapping[str, ServiceOptions],
    previous: Optional[ServiceEntry],
    problems: list[Problem],
    skipped: list[Skipped],
) -> Optional[Identity]:
    name = update.service
    bad = update.options_problem and update.options_problem.reason
    if update.options is not None:
        try:
            identity = identity_from_options(update.options)
        except CatalogError as exc:
            identity, bad = None, str(exc)
        if identity is None and previous is not None and previous.services:
            last = previous.services[0]  # the last good options stay
            identity = Identity(last.app_id, last.port_index, last.options)
        if identity is None:
            skipped.append(Skipped(name, f"options node not used ({bad})"[:300]))
        elif bad is not None:  # the options node changed to something unusable
            reason = f"options node not used ({bad}); the last good options stay"
            problems.append(Problem(identity.app_id, OPTIONS_LABEL, reason[:300]))
        return identity
    if bad is not None:
        skipped.append(Skipped(name, f"options node not used ({bad})"[:300]))
        return None
    options = local.get(name)
    if options is None:
        skipped.append(Skipped(name, NO_OPTIONS))
        return None
    return Identity(name, 0, options)


def _instances(update: ServiceUpdate, app_id: str, skipped: list[Skipped]) -> tuple[Instance, ...]:
    found: dict[str, Instance] = {}
    for item in update.instances:
        instance = catalog_instance(item, app_id)
        if instance.id in found:
            skipped.append(Skipped(app_id, "another instance has the same id", 0, instance.id))
            continue
        found[instance.id] = instance
    return tuple(sorted(found.values(), key=_by_id))


def _by_id(instance: Instance) -> str:
    return instance.id


def _child_skipped(app_id: str, problem: layout.Problem) -> Skipped:
    """A child left out: the task id field names the child (shortened), the reason says why."""
    child = problem.path.rsplit("/", 1)[-1]
    return Skipped(app_id, problem.reason[:300], None, child[:120])


def assemble(
    entries: Iterable[tuple[str, ServiceEntry]], bad_names: Mapping[str, str] = _NO_NAMES
) -> Catalog:
    """One catalog from every entry (znode name, entry); every service key once. `bad_names`:
    znodes under the catalog path that are not service names (name -> why), reported."""
    return Assembly().update(dict(entries), bad_names)


class Assembly:
    """The catalog of every entry, kept one changed entry at a time: :meth:`update` gives what
    :func:`assemble` gives for all the entries, made with
    :func:`~sidecar.catalog.updated_catalog` from the catalog before (tagged with the service
    keys it changed, so consumers look at those only). Problems and skipped entries are listed
    bad names first, then by znode name."""

    def __init__(self) -> None:
        self.catalog = Catalog()
        self._entries: dict[str, ServiceEntry] = {}
        self._claims: dict[str, set[str]] = {}  # service key -> znode names whose entry has it
        self._reporting: set[str] = set()  # names whose entry has problems or skipped parts
        self._contested: set[str] = set()  # keys claimed by more than one name
        self._bad_names: Mapping[str, str] = _NO_NAMES

    def entry(self, name: str) -> Optional[ServiceEntry]:
        return self._entries.get(name)

    def update(
        self,
        changed: Mapping[str, Optional[ServiceEntry]],
        bad_names: Mapping[str, str] = _NO_NAMES,
    ) -> Catalog:
        """Replace the entries of ``changed`` (None: the znode is gone) and the bad names; the
        new catalog (also :attr:`catalog`)."""
        keys: set[str] = set()
        report = bad_names != self._bad_names
        for name, entry in changed.items():
            report |= name in self._reporting
            self._drop(name, keys)
            if entry is not None:
                report |= self._add(name, entry, keys)
        report |= not self._contested.isdisjoint(keys)
        services = self._owned_services(keys)
        report |= not self._contested.isdisjoint(keys)
        self._bad_names = bad_names
        problems, skipped = self._report() if report else (None, None)
        self.catalog = updated_catalog(self.catalog, services, problems, skipped)
        return self.catalog

    def _drop(self, name: str, keys: set[str]) -> None:
        entry = self._entries.pop(name, None)
        self._reporting.discard(name)
        for service in entry.services if entry is not None else ():
            self._claims[service.key].discard(name)
            keys.add(service.key)

    def _add(self, name: str, entry: ServiceEntry, keys: set[str]) -> bool:
        """Take ``entry`` in; whether it has something to report."""
        self._entries[name] = entry
        for service in entry.services:
            self._claims.setdefault(service.key, set()).add(name)
            keys.add(service.key)
        if entry.problems or entry.skipped:
            self._reporting.add(name)
            return True
        return False

    def _owned_services(self, keys: set[str]) -> dict[str, Optional[Service]]:
        """The service each of ``keys`` now has (the lowest claiming name's), where it differs
        from the catalog's; updates which keys are contested."""
        changed: dict[str, Optional[Service]] = {}
        for key in keys:
            claims = self._claims.get(key)
            if len(claims or ()) > 1:
                self._contested.add(key)
            else:
                self._contested.discard(key)
            service = self._service_of(min(claims), key) if claims else None
            if not claims:
                self._claims.pop(key, None)
            if self.catalog.services.get(key) is not service:
                changed[key] = service
        return changed

    def _service_of(self, name: str, key: str) -> Service:
        return next(s for s in self._entries[name].services if s.key == key)

    def _report(self) -> tuple[tuple[Problem, ...], tuple[Skipped, ...]]:
        """Every problem and skipped part: bad names, then each reporting entry's with the keys
        it lost to a lower name."""
        problems: list[Problem] = []
        bad = sorted(self._bad_names.items())
        skipped = [Skipped(printable(name), reason[:300]) for name, reason in bad]
        losers = {name for key in self._contested for name in self._claims[key]}
        for name in sorted(self._reporting | losers):
            entry = self._entries[name]
            problems.extend(entry.problems)
            skipped.extend(entry.skipped)
            for service in entry.services:
                owner = min(self._claims[service.key])
                if owner != name:
                    skipped.append(_lost_key(service, owner))
        return tuple(problems), tuple(skipped)


def printable(name: str, limit: int = 200) -> str:
    """A name read from ZooKeeper as shown in reports: control characters escaped, shortened."""
    return name.encode("unicode_escape").decode("ascii")[:limit]


def _lost_key(service: Service, winner: str) -> Skipped:
    reason = f"{service.key} is already served from ZooKeeper service {winner}"
    return Skipped(service.app_id, reason, service.port_index)
