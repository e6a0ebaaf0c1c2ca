"""``python -m marathon_bridge.testing``: run the emulator until interrupted."""

from __future__ import annotations

import sys

from marathon_bridge.testing import main

if __name__ == "__main__":
    sys.exit(main())
