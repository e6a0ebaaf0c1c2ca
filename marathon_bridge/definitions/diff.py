"""What a deploy would change: desired app definition vs the live one Marathon has.

Both sides are put in :func:`~marathon_bridge.definitions.normalize.comparable` form first, so
defaults, deprecated spellings and what Marathon owns (versions, task counts, tasks,
deployments, ...) never show up as differences. On top of that:
- a port the desired side asks as ``0`` (``/portDefinitions(i)/port``,
  ``/container/portMappings(i)/servicePort``) means "any": the live port Marathon assigned
  (10001, ...) is not a difference;
- a key the desired side has but Marathon does not read at that place (an unknown top-level
  field, ``container.docker.requirePorts``, ...) is not a difference when the live side lacks it,
  because Marathon drops such keys on write.

Each :class:`Change` has a Marathon-style path (``/instances``, ``/labels/HAPROXY_GROUP``,
``/portDefinitions(0)/port``), the live value as ``old`` and the desired value as ``new``;
:data:`MISSING` stands for "absent". ``live=None`` means the app does not exist yet: one change
at ``/`` from MISSING to the whole desired app.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from marathon_bridge.definitions.normalize import comparable
from marathon_bridge.definitions.schema import APP, Arr, Spec, declares, field_spec, is_number

ANY_PORT_PATHS = re.compile(
    r"/portDefinitions\(\d+\)/port|/container/portMappings\(\d+\)/servicePort"
)


class _Missing:
    """The value of an absent key or list element (falsy; one instance: :data:`MISSING`)."""

    _instance: Optional[_Missing] = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Change:
    """One difference: ``old`` is the live value, ``new`` the desired one (MISSING if absent)."""

    path: str
    old: Any
    new: Any


def diff_apps(desired: Mapping[str, Any], live: Optional[Mapping[str, Any]]) -> list[Change]:
    """Differences between the desired app and the live one, in desired-key order."""
    wanted = comparable(desired)
    if live is None:
        return [Change("/", MISSING, wanted)]
    changes: list[Change] = []
    _diff(wanted, comparable(live), "", APP, changes)
    return changes


def _diff(new: Any, old: Any, path: str, spec: Optional[Spec], changes: list[Change]) -> None:
    if same_json(new, old):
        return
    if ANY_PORT_PATHS.fullmatch(path) and new == 0 and is_number(new) and is_number(old):
        return
    if isinstance(new, Mapping) and isinstance(old, Mapping):
        for key, value in new.items():
            here = f"{path}/{key}"
            if key in old:
                _diff(
                    value,
                    old[key],
                    here,
                    field_spec(spec, key) if spec is not None else None,
                    changes,
                )
            elif declares(spec, key):
                changes.append(Change(here, MISSING, value))
        for key, value in old.items():
            if key not in new:
                changes.append(Change(f"{path}/{key}", value, MISSING))
        return
    if isinstance(new, list) and isinstance(old, list):
        item_spec = spec.item if isinstance(spec, Arr) else None
        for index in range(max(len(new), len(old))):
            here = f"{path}({index})"
            if index >= len(new):
                changes.append(Change(here, old[index], MISSING))
            elif index >= len(old):
                changes.append(Change(here, MISSING, new[index]))
            else:
                _diff(new[index], old[index], here, item_spec, changes)
        return
    changes.append(Change(path or "/", old, new))


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: ``1 == 1.0`` but ``true != 1``; dict key order does not matter."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and bool(a == b)
