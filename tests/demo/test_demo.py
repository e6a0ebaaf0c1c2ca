"""The README's first command: the demo runs its whole story with no failed request."""

from __future__ import annotations

import io
import re

import pytest

from sidecar import demo

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


def test_demo_runs_every_step_and_drops_no_request(haproxy_bin: str) -> None:
    out = io.StringIO()
    status = demo.main(["--pace", "0", "--haproxy-bin", haproxy_bin], out=out)
    text = out.getvalue()
    assert status == 0, text
    for step in (
        "scaling /demo/web from 3 to 5",
        "killing task",
        "deploying /demo/admin",
        "scaling /demo/web down to 2",
    ):
        assert step in text, text
    sent = int(re.search(r"requests sent through HAProxy: (\d+)", text).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"failed requests:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
    runtime = int(re.search(r"runtime API server changes:\s+(\d+)", text).group(1))  # type: ignore[union-attr]
    assert sent > 100
    assert failed == 0, text
    assert runtime > 0, "server changes should go through the runtime API"
