"""The README's first command: the demo runs its whole story with no failed request, directly on
Marathon and in ZooKeeper mode (a publisher and two sidecars on 127.0.0.2 and 127.0.0.3)."""

from __future__ import annotations

import io
import re

import pytest

from sidecar import demo
from testkit.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

STEPS = (
    "scaling /demo/web from 3 to 5",
    "killing task",
    "deploying /demo/admin",
    "scaling /demo/web down to 2",
)


def summary_figure(text: str, label: str) -> int:
    found = re.search(rf"{re.escape(label)}:\s+(\d+)", text)
    assert found is not None, f"no {label!r} in:\n{text}"
    return int(found.group(1))


def run_demo(*args: str) -> str:
    """The demo's output, after checking it ran every step and dropped no request."""
    out = io.StringIO()
    status = demo.main(["--pace", "0", *args], out=out)
    text = out.getvalue()
    assert status == 0, text
    for step in STEPS:
        assert step in text, text
    assert summary_figure(text, "requests sent through HAProxy") > 100
    assert summary_figure(text, "failed requests") == 0, text
    runtime = summary_figure(text, "runtime API server changes")
    assert runtime > 0, "server changes should go through the runtime API"
    return text


def test_demo_runs_every_step_and_drops_no_request(haproxy_bin: str) -> None:
    run_demo("--haproxy-bin", haproxy_bin)


def test_demo_in_zookeeper_mode_routes_through_two_sidecars_that_never_call_marathon(
    haproxy_bin: str, zk_server: ZooKeeperServer
) -> None:
    text = run_demo(
        "--haproxy-bin", haproxy_bin, "--zookeeper", "--zookeeper-hosts", zk_server.address
    )
    for address in ("127.0.0.2", "127.0.0.3"):
        assert f"sidecar on {address}" in text, text
        assert f"new-connection client on {address}:" in text, text
    assert summary_figure(text, "Marathon event streams") == 1, text  # the publisher's alone
