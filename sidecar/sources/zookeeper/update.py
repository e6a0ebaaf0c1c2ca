"""What a service now has, from what was read: the one rule set of the ZooKeeper watcher (pure).

- Instances come from the children that decoded (or whose data parsed); the rest are problems.
- Backends are de-duplicated on (host, port, name), as synapse does.
- A service whose znode is gone has no instances: a deleted path is believed.
- An empty list while the node exists (no children, or none valid) keeps the previous instances
  when `keep_on_empty` is set (synapse's `use_previous_backends`, on by default); the update says
  so (`kept_previous`).
- Options are the last valid options node; a bad one is a problem (`options_problem`) and the
  previous stays.
- A service whose instances our publisher wrote is complete only with its options (written in
  the same transaction, but seen through another watch) or a reason why they cannot be read:
  until then it is not delivered. When no options node exists for it at all there is nothing
  to wait for (instances that merely claim to be ours, in a service nerve registered, must not
  freeze it): it is delivered, and the consumer serves or skips it by its own rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

from sidecar.sources.zookeeper.layout import Instance, Problem


@dataclass(frozen=True)
class ServiceUpdate:
    """Service `service` now has `instances` (what to serve)."""

    service: str
    exists: bool
    instances: tuple[Instance, ...]
    options: Optional[Mapping[str, Any]] = None  # None: no options node (a nerve service)
    children: int = 0  # children listed, valid or not
    kept_previous: bool = False
    problems: tuple[Problem, ...] = ()  # children skipped, and the options problem
    options_problem: Optional[Problem] = None  # the options node cannot be read (also in problems)


def gone(service: str) -> ServiceUpdate:
    return ServiceUpdate(service, exists=False, instances=())


def assemble(
    service: str,
    children: Iterable[str],
    read: Mapping[str, Union[Instance, Problem]],
    options: Optional[Mapping[str, Any]],
    options_problem: Optional[Problem],
    previous: Optional[ServiceUpdate],
    keep_on_empty: bool = True,
) -> ServiceUpdate:
    """The update for an existing service node from its children's read results."""
    names = sorted(children)
    instances: dict[tuple[str, int, str], Instance] = {}
    problems = [options_problem] if options_problem else []
    for name in names:
        result = read.get(name)
        if isinstance(result, Instance):
            instances.setdefault(result.key, result)
        elif isinstance(result, Problem):
            problems.append(result)
    found = tuple(sorted(instances.values(), key=lambda i: i.key))
    kept = not found and keep_on_empty and previous is not None and bool(previous.instances)
    return ServiceUpdate(
        service,
        exists=True,
        instances=previous.instances if kept and previous else found,
        options=options,
        children=len(names),
        kept_previous=kept,
        problems=tuple(problems),
        options_problem=options_problem,
    )


def complete(update: ServiceUpdate, options_expected: bool = True) -> bool:
    """Deliverable: gone, a nerve service, one of ours whose options were read (or found bad:
    the consumer reports that), or one with no options node to wait for."""
    return (
        update.options is not None
        or update.options_problem is not None
        or not options_expected
        or not any(i.owned for i in update.instances)
    )
