"""What the validation rules share: the issue collector and tolerant readers of JSON values
(a rule skips a value of the wrong type: the schema check reported it already)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from marathon_bridge.definitions.schema import Enum, is_integral
from marathon_bridge.errors import Issue


class Collector:
    """Issues in the order found, without duplicates."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self._seen: set[tuple[str, str, str]] = set()

    def add(self, path: str, message: str, kind: str = "semantic", hint: str = "") -> None:
        """One issue; ``hint`` says what is allowed when Marathon's message does not."""
        key = (path, message, kind)
        if key not in self._seen:
            self._seen.add(key)
            self.issues.append(Issue(path=path, message=message, kind=kind, hint=hint))


def as_dict(value: Any) -> Optional[Mapping[str, Any]]:
    return value if isinstance(value, Mapping) else None


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def dicts(value: Any) -> list[tuple[int, Mapping[str, Any]]]:
    return [(i, item) for i, item in enumerate(as_list(value)) if isinstance(item, Mapping)]


def present(mapping: Mapping[str, Any], key: str) -> bool:
    return mapping.get(key) is not None


def non_empty_list(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0


def as_int(value: Any) -> Optional[int]:
    return int(value) if is_integral(value) else None


def as_str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def container_type(view: Mapping[str, Any]) -> Optional[str]:
    container = as_dict(view.get("container"))
    if container is None:
        return None
    raw = container.get("type")
    if raw is None:
        return "DOCKER"
    return Enum(("MESOS", "DOCKER")).canonical(raw)


def duplicate_names(items: Any) -> bool:
    names = [item.get("name") for _, item in dicts(items) if isinstance(item.get("name"), str)]
    return len(names) != len(set(names))
