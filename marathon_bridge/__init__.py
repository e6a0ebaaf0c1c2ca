"""marathon-bridge: a Marathon REST v2 client, app definitions and the Marathon -> services map."""

from __future__ import annotations

__version__ = "0.1.0"

import logging as _logging

# A library logs to "marathon_bridge.*" and leaves the handlers to the application.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
