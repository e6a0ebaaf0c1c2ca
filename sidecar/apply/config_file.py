"""The config file HAProxy reads: candidates next to it, checked, then renamed into place."""

from __future__ import annotations

import contextlib
import os
from typing import Optional

from sidecar.files import existing_mode, install, write_atomically, write_temp

DEFAULT_MODE = 0o644


class ConfigFile:
    """``haproxy.cfg`` and its candidates (same directory, same mode; :mod:`sidecar.files`)."""

    def __init__(self, path: str) -> None:
        self.path = str(path)

    def read(self) -> Optional[str]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return fh.read()
        except OSError:
            return None

    def write_candidate(self, text: str) -> str:
        """A synced temporary file next to the config, with its mode: for ``haproxy -c``."""
        return write_temp(self.path, text, existing_mode(self.path, DEFAULT_MODE))

    def install(self, candidate: str) -> None:
        """Rename a checked candidate over the config."""
        install(candidate, self.path)

    def write(self, text: str) -> None:
        """Replace the config with ``text`` without a check (text that ran before)."""
        write_atomically(self.path, text, existing_mode(self.path, DEFAULT_MODE))

    @staticmethod
    def discard(candidate: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(candidate)
