"""``python -m marathon_bridge``: the ``marathon-bridge`` command line."""

from __future__ import annotations

import sys

from marathon_bridge.cli import main

if __name__ == "__main__":
    sys.exit(main())
