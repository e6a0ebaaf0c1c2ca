"""A pytest plugin (``-p testkit.sharding``) that runs one shard of the selected tests:
``--shard K/N`` keeps every Nth test from the Kth, after ``-m`` and ``-k`` chose. The N shards of
one selection are disjoint and cover it; each slow file is shared between them, so shards run at
once (``scripts/test.sh --fast``) take about the same time."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--shard", default="", metavar="K/N", help="run every Nth test from the Kth")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as (K, N); ``UsageError`` unless 1 <= K <= N."""
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise pytest.UsageError(f"--shard wants K/N with 1 <= K <= N, got {text!r}")
    return int(k), int(n)


@pytest.hookimpl(trylast=True)  # after the selection by marker and keyword
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    text = config.getoption("--shard")
    if not text:
        return
    k, n = parse_shard(text)
    kept = items[k - 1 :: n]
    chosen = {id(item) for item in kept}
    config.hook.pytest_deselected(items=[i for i in items if id(i) not in chosen])
    items[:] = kept
