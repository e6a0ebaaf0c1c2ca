"""--shard K/N: the shards of one selection are disjoint and together run all of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testkit.sharding import parse_shard

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ["tests/testkit/test_waiting.py", "tests/testkit/test_ports.py"]


def collected(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-p", "testkit.sharding", *args, *SAMPLE],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_shards_partition_the_selection() -> None:
    everything = collected("-k", "not lambda")
    shards = [collected("-k", "not lambda", "--shard", f"{k}/3") for k in (1, 2, 3)]
    assert sorted(t for shard in shards for t in shard) == sorted(everything)
    assert all(shards) and max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_bad_shard_is_refused(text: str) -> None:
    with pytest.raises(pytest.UsageError, match="K/N"):
        parse_shard(text)


def test_a_good_shard_is_read() -> None:
    assert parse_shard("2/3") == (2, 3)
