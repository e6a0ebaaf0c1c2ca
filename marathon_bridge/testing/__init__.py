"""The in-process Marathon emulator."""

from __future__ import annotations
