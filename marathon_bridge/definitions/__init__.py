"""App definitions: load from files, validate offline, normalize the way Marathon does, diff.

See :mod:`.load`, :mod:`.validate`, :mod:`.normalize` and :mod:`.diff`; the shape Marathon
reads is in :mod:`.schema`.
"""

from __future__ import annotations

from marathon_bridge.definitions.diff import MISSING, Change, diff_apps, same_json
from marathon_bridge.definitions.load import AppSource, load_definitions, resolve_id
from marathon_bridge.definitions.normalize import canonical_view, comparable, normalize_app
from marathon_bridge.definitions.unknown import drop_unknown_fields, unknown_fields
from marathon_bridge.definitions.validate import (
    field_warnings,
    human_message,
    validate_app,
    validate_apps,
)

__all__ = [
    "MISSING",
    "AppSource",
    "Change",
    "canonical_view",
    "comparable",
    "diff_apps",
    "drop_unknown_fields",
    "field_warnings",
    "human_message",
    "load_definitions",
    "normalize_app",
    "resolve_id",
    "same_json",
    "unknown_fields",
    "validate_app",
    "validate_apps",
]
