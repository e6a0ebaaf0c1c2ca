"""The ``marathon-bridge`` commands, one module per kind: :mod:`.definitions` (validate, diff),
:mod:`.deploy` (deploy, strategy), :mod:`.inspect` (apps, tasks, services), :mod:`.change`
(scale, restart, rollback, delete), :mod:`.emulator`; :mod:`.common` is what they share and
:mod:`.failures` how they fail. The table of commands is :data:`marathon_bridge.cli.COMMANDS`."""

from __future__ import annotations
