"""The one way the sidecar replaces a file: atomically and durably (imperative shell).

A reader (HAProxy, a restarted sidecar) sees the old file or the new one, never a part: the data
goes to a temporary file in the target's directory (same file system, so the rename is atomic),
is flushed and ``fsync``'d, gets its mode, and is renamed over the target; then the directory is
``fsync``'d so the rename itself survives a crash. :func:`write_temp` and :func:`install` are the
two halves, for callers that check the temporary file before it replaces the target (the
applier runs ``haproxy -c`` on it).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Union

Data = Union[str, bytes]


def write_atomically(path: str, data: Data, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (see the module doc); raises ``OSError`` on failure."""
    temp = write_temp(path, data, mode)
    try:
        install(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def write_temp(path: str, data: Data, mode: int = 0o600) -> str:
    """A temporary file next to ``path`` holding ``data``, synced to disk, with ``mode``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return temp


def install(temp: str, path: str) -> None:
    """Rename ``temp`` over ``path`` and sync the directory."""
    os.replace(temp, path)
    sync_directory(os.path.dirname(os.path.abspath(path)))


def sync_directory(directory: str) -> None:
    """``fsync`` a directory (its entries); file systems that cannot are skipped silently."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def existing_mode(path: str, default: int) -> int:
    """The permission bits of ``path``, or ``default`` when it does not exist."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return default
