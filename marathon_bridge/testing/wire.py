"""Wire helpers for the emulator: Marathon timestamps and the two JSON number styles.

Marathon 1.10 writes REST bodies with a plain Jackson mapper (whole doubles as ``1.0``) and events,
``/v2/info`` and error bodies with play-json (whole doubles as ``1``). Both are compact.
"""

from __future__ import annotations

import json
import time
from typing import Any, Optional


def timestamp(epoch: Optional[float] = None) -> str:
    """``yyyy-MM-ddTHH:mm:ss.SSSZ`` in UTC, always three millisecond digits."""
    now = time.time() if epoch is None else epoch
    millis = round(now * 1000)
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def dumps_rest(obj: Any) -> bytes:
    """Compact JSON as Marathon's REST resources write it (floats keep their ``.0``)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def play_numbers(obj: Any) -> Any:
    """A copy of ``obj`` where whole floats become ints (play-json's ``1`` instead of ``1.0``)."""
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {k: play_numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [play_numbers(v) for v in obj]
    return obj


def dumps_play(obj: Any) -> bytes:
    """Compact JSON as Marathon's play-json writers produce it (events, /v2/info)."""
    return dumps_rest(play_numbers(obj))


def sse_frame(event_type: str, payload: bytes) -> bytes:
    """One server-sent event exactly as Jetty's EventSourceServlet frames it (CRLF lines)."""
    return b"event: " + event_type.encode("utf-8") + b"\r\ndata: " + payload + b"\r\n\r\n"


HEARTBEAT = b"\r\n"
