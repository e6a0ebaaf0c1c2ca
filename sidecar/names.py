"""Names of HAProxy proxies and servers, derived from ids (pure).

HAProxy accepts ``[A-Za-z0-9_.:-]`` in names. An id that fits is used as is; anything else is
sanitized and gets a hash of the original appended, so different ids keep different names.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME_LEN = 64
_NAME_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.:-]")
NAME_SAFE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")


def short_hash(text: str, length: int = 10) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]  # noqa: S324


def safe_name(raw: str, max_len: int = MAX_NAME_LEN) -> str:
    """A name HAProxy accepts (``[A-Za-z0-9_.:-]``), stable and injective in practice.

    Unsafe characters become ``_``; when anything was replaced or the text is too long, a hash of
    the original is appended so that different inputs keep different names.
    """
    if len(raw) <= max_len and NAME_SAFE_RE.fullmatch(raw):
        return raw
    cleaned = _NAME_UNSAFE_RE.sub("_", raw)
    if not cleaned[:1].isalnum():
        cleaned = "x" + cleaned
    if cleaned == raw and len(raw) <= max_len:
        return raw
    suffix = short_hash(raw)
    return f"{cleaned[: max_len - len(suffix) - 1]}-{suffix}"


def server_name(instance_id: str) -> str:
    """The server name of an instance: its id when HAProxy accepts it, else sanitized + hash."""
    return safe_name(instance_id)


def backend_name(app_id: str, service_port: int) -> str:
    stem = app_id.strip("/").replace("/", "_") or "root"
    return safe_name(f"be_{stem}_{service_port}")


def frontend_name(bind_port: int) -> str:
    return f"fe_{bind_port}"


def vhost_frontend_name(port: int) -> str:
    return f"fe_vhost_{port}"
