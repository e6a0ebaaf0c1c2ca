"""``python -m publisher``: the same as ``marathon-publisher``."""

from __future__ import annotations

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
