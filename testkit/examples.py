"""Marathon's own example responses and schemas, copied into tests/fixtures/marathon-api (see
its README for where they come from), and a comparison of JSON shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXAMPLES = (
    Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "marathon-api" / "examples"
)


def example(relative: str) -> Any:
    """A JSON example (``relative`` to :data:`EXAMPLES`)."""
    return json.loads((EXAMPLES / relative).read_text())


def example_bytes(relative: str) -> bytes:
    return (EXAMPLES / relative).read_bytes()


def json_kind(value: Any) -> str:
    """JSON type name; ints and floats are both "number" (Jackson vs play-json formatting)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def shape_differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Differences in keys and JSON types between two documents (values ignored).

    Lists are compared element-wise against the expected list's first element.
    """
    problems: list[str] = []
    if json_kind(expected) != json_kind(actual):
        return [f"{path or '/'}: expected {json_kind(expected)}, got {json_kind(actual)}"]
    if isinstance(expected, dict):
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        if missing:
            problems.append(f"{path or '/'}: missing keys {missing}")
        if extra:
            problems.append(f"{path or '/'}: extra keys {extra}")
        for key in expected:
            if key in actual:
                problems += shape_differences(expected[key], actual[key], f"{path}/{key}")
    elif isinstance(expected, list) and expected and actual:
        for index, item in enumerate(actual):
            problems += shape_differences(expected[0], item, f"{path}({index})")
    return problems
