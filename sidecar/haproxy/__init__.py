"""HAProxy process and runtime API."""

from __future__ import annotations
