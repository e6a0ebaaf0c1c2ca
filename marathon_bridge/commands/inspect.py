"""``apps``, ``tasks`` and ``services``: what runs on Marathon, as tables or JSON."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from marathon_bridge import output
from marathon_bridge.commands.common import (
    EXIT_OK,
    Io,
    absolute,
    make_client,
)


def cmd_apps(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    apps = make_client(args, environ).list_apps(embed=["apps.counts", "apps.deployments"])
    if io.json:
        io.result(output.to_json(output.apps_json(apps)))
    else:
        io.result(output.table(*output.apps_rows(apps)))
    return EXIT_OK


def cmd_tasks(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    client = make_client(args, environ)
    tasks = client.list_app_tasks(absolute(args.app)) if args.app else client.list_tasks()
    if io.json:
        io.result(output.to_json(output.tasks_json(tasks)))
    else:
        io.result(output.table(*output.tasks_rows(tasks)))
    return EXIT_OK


def cmd_services(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge.services import services_from_apps

    apps = make_client(args, environ).list_apps(embed=["apps.tasks"])
    services = services_from_apps(apps)
    if io.json:
        io.result(output.to_json(output.services_json(services)))
    else:
        io.result(output.table(*output.services_rows(services)))
    for warning in output.port_clash_warnings(services):
        io.error(warning)
    return EXIT_OK
