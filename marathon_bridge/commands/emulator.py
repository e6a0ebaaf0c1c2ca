"""``emulator``: a local Marathon emulator for experiments and demos (until Ctrl-C)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from marathon_bridge.commands.common import Io


def cmd_emulator(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    """Serve an emulated Marathon until SIGINT/SIGTERM (the emulator's own runner)."""
    from marathon_bridge.testing import run_emulator

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        io.error(f"warning: the emulator listens on {args.host}, beyond this machine's loopback")
    return run_emulator(host=args.host, port=args.port, run_tasks=args.run_tasks)
