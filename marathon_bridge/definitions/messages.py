"""Validation messages for people: play-json keys turned into text with the limits and allowed
values of the field, the key kept visible."""

from __future__ import annotations

from typing import Any

from marathon_bridge.definitions.schema import PATH_ID_WHAT, Arr, Enum, Int, Num, Str, spec_at
from marathon_bridge.errors import Issue

_PLAIN = {
    "error.expected.jsstring": "expected a string",
    "error.expected.jsnumber": "expected a number",
    "error.expected.jsboolean": "expected true or false",
    "error.expected.jsarray": "expected a list",
    "error.expected.jsobject": "expected an object",
    "error.expected.int": "expected a whole number (32-bit)",
    "error.expected.long": "expected a whole number",
    "error.path.missing": "required field is missing",
}


def human_message(issue: Issue) -> str:
    """Readable text for an issue; play-json keys stay visible in parentheses."""
    key = issue.message
    if not key.startswith("error."):
        return key
    text = _PLAIN.get(key) or _describe_limit(key, issue.path)
    return f"{text} ({key})" if text else key


def _describe_limit(key: str, path: str) -> str:
    spec = spec_at(path) if path.startswith("/") else None
    if key == "error.min" and isinstance(spec, (Int, Num)) and spec.minimum is not None:
        return f"must be at least {_number(spec.minimum)}"
    if key == "error.max" and isinstance(spec, (Int, Num)) and spec.maximum is not None:
        return f"must be at most {_number(spec.maximum)}"
    if key in ("error.minLength", "error.maxLength"):
        return _describe_length(key, spec)
    if key == "error.pattern":
        if path == "/id" or path.startswith("/dependencies("):
            return f"must be {PATH_ID_WHAT}"
        if isinstance(spec, Str) and spec.what:
            return f"must be {spec.what}"
        return "does not have the required format"
    if key == "error.unknown.enum.literal" and isinstance(spec, Enum):
        return "must be one of " + ", ".join(spec.values)
    if key == "error.unknown.enum.literal":
        return "is not one of the allowed values"
    return {"error.min": "is too small", "error.max": "is too big"}.get(key, "")


def _describe_length(key: str, spec: Any) -> str:
    low = key == "error.minLength"
    if isinstance(spec, Str):
        bound = spec.min_length if low else spec.max_length
        if bound == 1 and low:
            return "must not be empty"
        if bound is not None:
            return f"must have {'at least' if low else 'at most'} {bound} characters"
    if isinstance(spec, Arr):
        bound = spec.min_items if low else spec.max_items
        if bound is not None:
            return f"must have {'at least' if low else 'at most'} {bound} items"
    return "is too short" if low else "is too long"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
