"""Fast JSON for Marathon bodies: orjson when it is installed, the standard library otherwise.

``loads`` takes the raw ``bytes`` of a response (no text decoding step) and returns plain Python
data; ``dumps`` returns compact UTF-8 ``bytes`` ready to send. Both raise ``ValueError`` (a
``json.JSONDecodeError`` or ``TypeError`` respectively) the way ``json`` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Set
from typing import Any, Union

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _orjson = None  # type: ignore[assignment]

__all__ = ["dumps", "loads"]


def loads(data: Union[bytes, bytearray, memoryview, str]) -> Any:
    """Parse a JSON document from ``bytes`` or ``str``.

    What orjson refuses but the standard library accepts (``NaN``, ``Infinity``) is parsed
    again with :mod:`json`. One difference remains: orjson reads integers beyond 64 bits as
    floats (Marathon never sends such numbers).
    """
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass  # fall through: json either accepts it or raises its own error
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    return json.loads(data)


def _default(obj: Any) -> Any:
    """Make the non-JSON containers callers commonly pass (mappings, sets) serializable."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (Set, frozenset)):
        return sorted(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` as compact UTF-8 JSON ``bytes`` (no whitespace, non-ASCII kept)."""
    if _orjson is not None:
        return _orjson.dumps(obj, default=_default)
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_default)
    return text.encode("utf-8")
