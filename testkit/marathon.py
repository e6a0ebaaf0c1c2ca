"""The Marathon side of tests that run real tasks: the emulator and a client on it
(:class:`EmulatedMarathon`); for fault tests also a relay to the leader that a test can cut or
silence, and a standby that reaches the leader through a second relay (:class:`MarathonCluster`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from testkit.apps import healthy_task_ids
from testkit.relay import Relay
from testkit.waiting import wait_until

TASK_RUNNER_OPTIONS: dict[str, Any] = {"run_tasks": True, "heartbeat_interval": 1.0}


@dataclass
class EmulatedMarathon:
    """The emulator (running real tasks) and a client on it."""

    emulator: MarathonEmulator
    client: MarathonClient

    def deploy(self, app: dict[str, Any], timeout: float = 90.0) -> None:
        """Create ``app`` and wait until all its instances run and pass their checks."""
        self.client.create_app(app)
        wait_until(
            lambda: len(self.healthy(app["id"])) == app["instances"],
            timeout,
            f"{app['id']}: {app['instances']} healthy tasks",
        )

    def healthy(self, app_id: str) -> set[str]:
        """Ids of the app's running tasks that pass their health checks."""
        return healthy_task_ids(self.emulator, app_id)


@dataclass
class MarathonCluster(EmulatedMarathon):
    """A leader running tasks, a standby, and relays to the leader."""

    standby: MarathonEmulator
    relay: Relay  # a sidecar's first --marathon URL
    standby_relay: Relay  # the standby's way to the leader (its 302 for /v2/events points here)

    def freeze_streams(self) -> int:
        """Silence every open event stream, whichever way it reached the leader."""
        return self.relay.freeze_streams() + self.standby_relay.freeze_streams()


@contextmanager
def emulated_marathon(**emulator_options: Any) -> Iterator[EmulatedMarathon]:
    """The emulator running real tasks (:data:`TASK_RUNNER_OPTIONS`, then ``emulator_options``)
    and a client; both stopped at the end (the emulator with every task process)."""
    with ExitStack() as stack:
        emulator = _start_leader(stack, emulator_options)
        yield EmulatedMarathon(emulator, _client(stack, emulator))


@contextmanager
def marathon_cluster(**emulator_options: Any) -> Iterator[MarathonCluster]:
    """The leader (as :func:`emulated_marathon`, tasks killed 0.5 s after TASK_KILLING), its
    relays and the standby; everything is stopped at the end, the leader last."""
    with ExitStack() as stack:
        emulator = _start_leader(stack, {"kill_grace": 0.5, **emulator_options})
        relay = Relay(emulator.url).start()
        stack.callback(relay.stop)
        standby_relay = Relay(emulator.url).start()
        stack.callback(standby_relay.stop)
        standby = MarathonEmulator(leader=False, leader_url=lambda: standby_relay.url).start()
        stack.callback(standby.stop)
        client = _client(stack, emulator)
        yield MarathonCluster(emulator, client, standby, relay, standby_relay)


def _start_leader(stack: ExitStack, options: dict[str, Any]) -> MarathonEmulator:
    emulator = MarathonEmulator(**{**TASK_RUNNER_OPTIONS, **options}).start()
    stack.callback(emulator.stop)
    return emulator


def _client(stack: ExitStack, emulator: MarathonEmulator) -> MarathonClient:
    client = MarathonClient(emulator.url, timeout=(3.0, 10.0))
    stack.callback(client.close)
    return client
