"""Pytest plugin: the ``marathon_emulator`` fixture (filled in by the emulator work)."""

from __future__ import annotations
