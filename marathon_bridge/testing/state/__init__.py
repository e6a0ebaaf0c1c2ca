"""The emulated cluster: apps, versions, deployments, tasks, service ports and events.

Everything runs under one lock (:attr:`EmulatorState.lock`). The HTTP layer calls the public
methods, which raise :class:`ApiError` for Marathon's error answers; a scheduler thread calls
:meth:`EmulatorState.tick` every few milliseconds to move tasks through their lifecycle, apply
health, replace old tasks and finish deployments. Events go to a ``publish(type, payload)``
callback that never blocks (the event bus only queues them).

One module per job: :mod:`.records` (the data), :mod:`.views` (how it looks on the wire, pure),
:mod:`.core` (events, a task's start and end), :mod:`.queries` (reads), :mod:`.changes` (API
writes), :mod:`.scheduler` (the tick), :mod:`.task_hooks` (health probes and test hooks).
"""

from __future__ import annotations

from marathon_bridge.testing.state.changes import StateChanges
from marathon_bridge.testing.state.queries import StateQueries
from marathon_bridge.testing.state.records import Agent, ApiError, Options, PortsExhausted
from marathon_bridge.testing.state.scheduler import StateScheduler
from marathon_bridge.testing.state.task_hooks import TaskHooks


class EmulatorState(StateQueries, StateChanges, StateScheduler, TaskHooks):
    """The emulated Marathon leader's state: every part of :mod:`marathon_bridge.testing.state`."""


__all__ = ["Agent", "ApiError", "EmulatorState", "Options", "PortsExhausted"]
