"""``scale``, ``restart``, ``rollback`` and ``delete``: one change to one app, then its wait."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from marathon_bridge import output
from marathon_bridge.commands.common import (
    EXIT_OK,
    Io,
    absolute,
    make_client,
)


def cmd_scale(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge import deploy

    client = make_client(args, environ)
    ref = deploy.scale(client, args.app, args.instances, force=args.force)
    what = f"scaled {absolute(args.app)} to {args.instances}"
    return _follow(client, args, io, ref, what, expect=deploy.EXPECT_RUNNING)


def cmd_restart(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge import deploy

    client = make_client(args, environ)
    ref = deploy.restart(client, args.app, force=args.force)
    return _follow(
        client, args, io, ref, f"restarted {absolute(args.app)}", expect=deploy.EXPECT_RUNNING
    )


def cmd_rollback(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge import deploy

    client = make_client(args, environ)
    version, ref = deploy.rollback(client, args.app, args.to_version, force=args.force)
    what = f"rolled back {absolute(args.app)} to version {version}"
    return _follow(client, args, io, ref, what, expect=deploy.EXPECT_RUNNING)


def cmd_delete(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge import deploy

    client = make_client(args, environ)
    ref = deploy.delete(client, args.app)
    return _follow(
        client, args, io, ref, f"deleted {absolute(args.app)}", expect=deploy.EXPECT_GONE
    )


def _follow(
    client: Any, args: argparse.Namespace, io: Io, ref: Any, what: str, *, expect: str
) -> int:
    from marathon_bridge.deploy import WaitTarget, wait_for_deployments

    deployment_id = str(getattr(ref, "deployment_id", "") or "")
    if args.wait and deployment_id:
        wait_for_deployments(
            client,
            [WaitTarget(deployment_id, absolute(args.app), expect)],
            timeout=args.wait_timeout,
            progress=lambda p: io.error(str(p)),
        )
    if io.json:
        io.result(
            output.to_json(
                {
                    "ok": True,
                    "app_id": absolute(args.app),
                    "deployment_id": deployment_id,
                    "waited": bool(args.wait and deployment_id),
                    "message": what,
                }
            )
        )
    else:
        io.result(f"{what} (deployment {deployment_id})\n" if deployment_id else f"{what}\n")
    return EXIT_OK
