"""The ``marathon-bridge`` commands, one module per kind: :mod:`.definitions` (validate, diff),
:mod:`.deploy` (deploy, strategy), :mod:`.inspect` (apps, tasks, services), :mod:`.change`
(scale, restart, rollback, delete); :mod:`.common` is what they share."""

from __future__ import annotations

from collections.abc import Mapping

from marathon_bridge.commands.change import (
    cmd_delete,
    cmd_restart,
    cmd_rollback,
    cmd_scale,
)
from marathon_bridge.commands.common import Command
from marathon_bridge.commands.definitions import cmd_diff, cmd_validate
from marathon_bridge.commands.deploy import cmd_deploy, cmd_strategy
from marathon_bridge.commands.emulator import cmd_emulator
from marathon_bridge.commands.inspect import cmd_apps, cmd_services, cmd_tasks

COMMANDS: Mapping[str, Command] = {
    "validate": cmd_validate,
    "diff": cmd_diff,
    "deploy": cmd_deploy,
    "strategy": cmd_strategy,
    "apps": cmd_apps,
    "tasks": cmd_tasks,
    "services": cmd_services,
    "scale": cmd_scale,
    "restart": cmd_restart,
    "rollback": cmd_rollback,
    "delete": cmd_delete,
    "emulator": cmd_emulator,
}
