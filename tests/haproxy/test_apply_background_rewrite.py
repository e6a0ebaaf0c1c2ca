"""The deferred config rewrite in its own thread (the daemon's setting): the applier keeps
applying runtime changes while a rewrite renders and checks, and a rewrite overtaken by a reload
is dropped, never installed over the newer file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sidecar.haproxy_model import HAProxyModel
from testkit import free_port, wait_until
from testkit.clock import FakeClock

REWRITER_THREAD = "config-rewriter"


class HeldRender:
    """The kit's renderer; in the rewriter's thread it waits for :attr:`release` first."""

    def __init__(self, kit: Any) -> None:
        self.kit = kit
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, model: HAProxyModel) -> str:
        if threading.current_thread().name == REWRITER_THREAD:
            self.entered.set()
            self.release.wait(30)
        return str(self.kit.render(model))


@pytest.fixture
def held(kit: Any) -> Iterator[HeldRender]:
    render = HeldRender(kit)
    yield render
    render.release.set()


@pytest.fixture
def rewriting(make_applier: Any, held: HeldRender) -> Iterator[tuple[Any, FakeClock]]:
    """An applier with background rewrites, a 1 s write delay and a fake clock."""
    clock = FakeClock()
    applier = make_applier(
        clock=clock, config_write_delay=1.0, background_rewrites=True, render=held
    )
    yield applier, clock
    applier.close()


def config_text(kit: Any) -> str:
    return str(kit.paths.config.read_text())


def start_held_rewrite(applier: Any, clock: FakeClock, held: HeldRender) -> None:
    clock.now += 1.0
    applier.tick()
    wait_until(held.entered.is_set, message="the rewrite started")


def test_runtime_changes_apply_while_a_rewrite_runs(
    rewriting: tuple[Any, FakeClock], held: HeldRender, kit: Any, backends: Any
) -> None:
    applier, clock = rewriting
    a, b, c = backends("a"), backends("b"), backends("c")
    port = free_port()
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a}))).ok
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b}))).ok
    start_held_rewrite(applier, clock, held)
    result = applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b, "c": c})))
    assert result.ok and result.action == "runtime"
    assert set(kit.answers(port, 9)) == {"a", "b", "c"}  # routed while the rewrite waits
    assert "server b " not in config_text(kit)
    held.release.set()
    wait_until(lambda: "server b " in config_text(kit), message="the rewrite installed")
    assert "server c " not in config_text(kit)  # its snapshot was taken before c came
    wait_until(lambda: not applier.writes.busy, message="the rewriter idle")
    clock.now += 1.0
    applier.tick()  # c made the file dirty again
    wait_until(lambda: "server c " in config_text(kit), message="the second rewrite")
    assert applier.counters.reloads == 0


def test_a_rewrite_overtaken_by_a_reload_is_dropped(
    rewriting: tuple[Any, FakeClock], held: HeldRender, kit: Any, backends: Any
) -> None:
    applier, clock = rewriting
    a, b, c = backends("a"), backends("b"), backends("c")
    port, other_port = free_port(), free_port()
    first = kit.service("/a", port, {"a": a})
    assert applier.apply(kit.model_of(first)).ok
    assert applier.apply(kit.model_of(kit.service("/a", port, {"a": a, "b": b}))).ok
    start_held_rewrite(applier, clock, held)
    both = kit.model_of(
        kit.service("/a", port, {"a": a, "b": b}), kit.service("/x", other_port, {"c": c})
    )
    result = applier.apply(both)
    assert result.ok and result.reloaded
    after_reload = config_text(kit)
    assert f":{other_port}" in after_reload
    held.release.set()
    wait_until(lambda: not applier.writes.busy, message="the rewrite ended")
    assert config_text(kit) == after_reload
    assert set(kit.answers(other_port, 3)) == {"c"}
