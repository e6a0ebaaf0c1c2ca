"""Validation messages for people: Marathon's play-json key first, then what the field accepts.

``/mem: error.min: must be >= 0``; ``/healthChecks(0)/protocol: error.unknown.enum.literal: one
of HTTP, HTTPS, TCP, ...``; ``/instances: error.expected.jsnumber: expected a whole number >= 0``.
The allowed values and limits come from the schema (:mod:`.schema`), so they are the ones the
check used. Marathon's own rule messages (``AppDefinition must either contain ...``) stay as
Marathon writes them, with the allowed values in parentheses when the message lacks them (an
issue's ``hint``: the port indexes, port names or secrets the app has).
"""

from __future__ import annotations

from typing import Any, Optional

from marathon_bridge.definitions.schema import (
    PATH_ID_WHAT,
    Anything,
    Arr,
    Bool,
    Enum,
    Int,
    MapOf,
    Num,
    Obj,
    OneOf,
    Spec,
    Str,
    spec_at,
)
from marathon_bridge.errors import Issue

_EXPECTED = {
    "error.expected.jsstring": "expected",
    "error.expected.jsnumber": "expected",
    "error.expected.jsboolean": "expected",
    "error.expected.jsarray": "expected",
    "error.expected.jsobject": "expected",
    "error.expected.int": "expected",
    "error.expected.long": "expected",
    "error.path.missing": "required:",
}


def human_message(issue: Issue) -> str:
    """``key: explanation`` for a play-json key; Marathon's own sentences unchanged."""
    key = issue.message
    if not key.startswith("error."):
        return f"{key} ({issue.hint})" if issue.hint else key
    text = explain(key, issue.path)
    return f"{key}: {text}" if text else key


def explain(key: str, path: str) -> str:
    """What the field at ``path`` accepts, worded for the play-json ``key`` it failed with."""
    spec = spec_at(path) if path.startswith("/") else None
    if key in _EXPECTED:
        what = describe(spec) if spec is not None else _FALLBACK.get(key, "")
        return f"{_EXPECTED[key]} {what}" if what else ""
    if key == "error.pattern" and (path == "/id" or path.startswith("/dependencies(")):
        return f"must be {PATH_ID_WHAT}"
    return _limit(key, spec)


_FALLBACK = {
    "error.expected.jsstring": "a string",
    "error.expected.jsnumber": "a number",
    "error.expected.jsboolean": "true or false",
    "error.expected.jsarray": "a list",
    "error.expected.jsobject": "an object",
    "error.expected.int": "a whole number (32-bit)",
    "error.expected.long": "a whole number (64-bit)",
    "error.path.missing": "a value",
}


def _limit(key: str, spec: Optional[Spec]) -> str:
    if key == "error.min" and isinstance(spec, (Int, Num)) and spec.minimum is not None:
        return f"must be >= {_number(spec.minimum)}"
    if key == "error.max" and isinstance(spec, (Int, Num)) and spec.maximum is not None:
        return f"must be <= {_number(spec.maximum)}"
    if key in ("error.minLength", "error.maxLength"):
        return _length(key == "error.minLength", spec)
    if key == "error.pattern":
        return f"must be {spec.what}" if isinstance(spec, Str) and spec.what else "bad format"
    if key == "error.unknown.enum.literal" and isinstance(spec, Enum):
        return "one of " + ", ".join(spec.values)
    return {
        "error.min": "too small",
        "error.max": "too big",
        "error.unknown.enum.literal": "not one of the allowed values",
    }.get(key, "")


def _length(low: bool, spec: Optional[Spec]) -> str:
    bound: Optional[int] = None
    unit = ""
    if isinstance(spec, Str):
        bound, unit = (spec.min_length if low else spec.max_length), "character"
    elif isinstance(spec, Arr):
        bound, unit = (spec.min_items if low else spec.max_items), "item"
    if bound is None:
        return "too short" if low else "too long"
    if low and bound == 1 and unit == "character":
        return "must not be empty"
    return f"{'at least' if low else 'at most'} {bound} {unit}{'s' if bound != 1 else ''}"


def describe(spec: Spec) -> str:
    """A value ``spec`` accepts, in words: ``a whole number >= 0``, ``one of HTTP, TCP``."""
    if isinstance(spec, Str):
        return _describe_str(spec)
    if isinstance(spec, (Int, Num)):
        noun = "a number" if isinstance(spec, Num) else "a whole number"
        if isinstance(spec, Int):
            noun += " (64-bit)" if spec.long else " (32-bit)"
        return noun + _bounds(spec.minimum, spec.maximum)
    if isinstance(spec, Bool):
        return "true or false"
    if isinstance(spec, Enum):
        return "one of " + ", ".join(spec.values)
    if isinstance(spec, Arr):
        return "a list, each " + describe(spec.item)
    if isinstance(spec, Obj):
        return _describe_obj(spec)
    if isinstance(spec, MapOf):
        return "an object, each value " + describe(spec.value)
    if isinstance(spec, OneOf):
        return " or ".join(describe(option) for option in spec.options)
    if isinstance(spec, Anything):
        return "any value"
    return ""


def _describe_str(spec: Str) -> str:
    text = "a string"
    if spec.min_length and spec.max_length:
        text += f" of {spec.min_length} to {spec.max_length} characters"
    elif spec.min_length == 1:
        text = "a non-empty string"
    elif spec.min_length:
        text += f" of at least {spec.min_length} characters"
    elif spec.max_length:
        text += f" of at most {spec.max_length} characters"
    return f"{text}: {spec.what}" if spec.what else text


def _describe_obj(spec: Obj) -> str:
    if not spec.fields:
        return "an object"
    required = [name for name, fld in spec.fields.items() if fld.required]
    if required:
        return "an object with " + ", ".join(required)
    return "an object (" + ", ".join(spec.fields) + ")"


def _bounds(minimum: Any, maximum: Any) -> str:
    if minimum is not None and maximum is not None:
        return f" from {_number(minimum)} to {_number(maximum)}"
    if minimum is not None:
        return f" >= {_number(minimum)}"
    if maximum is not None:
        return f" <= {_number(maximum)}"
    return ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
