"""marathon-bridge: a Marathon REST v2 client, app definitions, and the Marathon -> services mapping."""

from __future__ import annotations

__version__ = "0.1.0"
