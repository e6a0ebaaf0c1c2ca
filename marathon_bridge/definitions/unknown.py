"""Fields Marathon does not read (pure): found with the closest known name, or dropped.

Marathon's readers are generated from its RAML types and read only the fields they declare, at
every depth: ``instnaces: 3`` or ``healthChecks[0].pathh`` are dropped without a word, and the
app runs with the defaults. :func:`unknown_fields` finds every such key (with Marathon's path and
the known name it most likely meant); :func:`drop_unknown_fields` does what Marathon does with
them. What the schema leaves open (labels, env, secrets, and the objects it does not describe
field by field: volumes, ``linuxInfo``, ``check``, ...) is never reported nor dropped.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Optional

from marathon_bridge.definitions.positions import marathon_path_parts
from marathon_bridge.definitions.schema import (
    APP,
    READ_ONLY_FIELDS,
    Arr,
    MapOf,
    Obj,
    OneOf,
    Spec,
    accepts_json_type,
    child_path,
    index_path,
)
from marathon_bridge.errors import Issue

UNKNOWN_KIND = "unknown"


def closest_name(key: str, known: list[str]) -> Optional[str]:
    """The known name ``key`` most likely misspells (case, a missing or extra letter, a swap)."""
    by_lower = {name.lower(): name for name in known}
    if key.lower() in by_lower:
        return by_lower[key.lower()]
    found = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None


def unknown_field_message(key: str, known: list[str]) -> str:
    suggestion = closest_name(key, known)
    hint = f"; did you mean `{suggestion}`?" if suggestion else ""
    return f"unknown field: Marathon ignores it{hint}"


def unknown_fields(app: Any, *, source: str = "") -> list[Issue]:
    """One issue (``kind="unknown"``) per key Marathon would not read, in document order."""
    found: list[Issue] = []
    _walk(APP, app, "", found, top=True)
    return [replace(i, source=source) for i in found] if source else found


def _chosen(spec: Spec, value: Any) -> Optional[Spec]:
    """The spec that reads ``value`` (a union picks by JSON type); None: nothing to look into."""
    if isinstance(spec, OneOf):
        return next((o for o in spec.options if accepts_json_type(o, value)), None)
    return spec


def _walk(spec: Spec, value: Any, path: str, found: list[Issue], top: bool = False) -> None:
    chosen = _chosen(spec, value)
    if isinstance(chosen, Arr) and isinstance(value, list):
        for index, item in enumerate(value):
            _walk(chosen.item, item, index_path(path, index), found)
    elif isinstance(chosen, MapOf) and isinstance(value, Mapping):
        for key, item in value.items():
            _walk(chosen.value, item, child_path(path, str(key)), found)
    elif isinstance(chosen, Obj) and chosen.fields and isinstance(value, Mapping):
        known = list(chosen.fields)
        for key, item in value.items():
            here = child_path(path, str(key))
            if key in chosen.fields:
                _walk(chosen.fields[key].spec, item, here, found)
            elif not (top and key in READ_ONLY_FIELDS):
                found.append(Issue(here, unknown_field_message(str(key), known), "", UNKNOWN_KIND))


def drop_unknown_fields(app: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``app`` with only what Marathon reads, at every depth."""
    kept = _kept(APP, app)
    return kept if isinstance(kept, dict) else {}


def _kept(spec: Spec, value: Any) -> Any:
    chosen = _chosen(spec, value)
    if isinstance(chosen, Arr) and isinstance(value, list):
        return [_kept(chosen.item, item) for item in value]
    if isinstance(chosen, MapOf) and isinstance(value, Mapping):
        return {key: _kept(chosen.value, item) for key, item in value.items()}
    if isinstance(chosen, Obj) and chosen.fields and isinstance(value, Mapping):
        return {
            key: _kept(chosen.fields[key].spec, item)
            for key, item in value.items()
            if key in chosen.fields
        }
    return value


def value_at(app: Any, path: str) -> Any:
    """The value at a Marathon path of ``app`` (``/healthChecks(0)/pathh``), None if absent."""
    value = app
    for part in marathon_path_parts(path):
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and part < len(value) else None
        else:
            value = value.get(part) if isinstance(value, Mapping) else None
    return value
