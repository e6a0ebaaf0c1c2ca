"""The edge of the descriptor budget: limits read and raised, threads, the --maxconn setting."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from sidecar.fd_limits import ProcessLimit, haproxy_threads, hard_limit_of, kernel_ceiling
from sidecar.settings import SettingsError, load_settings

LIMITS = """Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 {hard}                files
Max locked memory         8388608              8388608              bytes
"""


def write_limits(proc: Path, pid: int, hard: str) -> None:
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "limits").write_text(LIMITS.format(hard=hard))


def test_hard_limit_of_a_process(tmp_path: Path) -> None:
    write_limits(tmp_path, 7, "4096")
    write_limits(tmp_path, 8, "unlimited")
    assert hard_limit_of(7, tmp_path) == 4096
    assert hard_limit_of(8, tmp_path) == (kernel_ceiling() or 1 << 20)
    assert hard_limit_of(9, tmp_path) is None  # no such process


def test_hard_limit_of_this_process() -> None:
    assert hard_limit_of(os.getpid()) == min(
        resource.getrlimit(resource.RLIMIT_NOFILE)[1], kernel_ceiling() or 1 << 62
    )


def test_process_limit_is_read_once_the_master_is_known(tmp_path: Path) -> None:
    answers: list[Optional[int]] = [None, os.getpid()]
    calls = []

    def master() -> Optional[int]:
        calls.append(1)
        return answers.pop(0) if answers else pytest.fail("read again after it was known")

    limit = ProcessLimit(master)
    assert limit() is None  # no master yet
    known = limit()
    assert known == hard_limit_of(os.getpid())
    assert limit() == known and len(calls) == 2


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    """What an HAProxy started by the sidecar inherits (run under prlimit in a child)."""
    code = (
        "import resource; from sidecar.fd_limits import raise_soft_limit; "
        "print(raise_soft_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))"
    )
    out = subprocess.run(
        ["prlimit", "--nofile=64:512", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert out == ["512", "512", "512"]


def test_threads_are_nbthread_or_the_cpus_this_process_may_use() -> None:
    assert haproxy_threads(3) == 3
    assert haproxy_threads(None) == min(64, len(os.sched_getaffinity(0)))


@pytest.mark.parametrize(
    ("argv", "env", "yaml", "expected"),
    [
        ([], {}, "", 4096),
        (["--maxconn", "1000"], {"MARATHON_SIDECAR_MAXCONN": "2000"}, "maxconn: 3000\n", 1000),
        ([], {"MARATHON_SIDECAR_MAXCONN": "2000"}, "maxconn: 3000\n", 2000),
        ([], {}, "maxconn: 3000\n", 3000),
    ],
)
def test_maxconn_from_flag_env_or_file(
    tmp_path: Path, argv: list[str], env: dict[str, str], yaml: str, expected: int
) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text(yaml or "{}\n")
    base = ["--marathon", "http://127.0.0.1:8080", "--config", str(config)]
    assert load_settings(base + argv, env).maxconn == expected


@pytest.mark.parametrize("value", ["0", "-5", "many", "10000001"])
def test_a_bad_maxconn_names_the_option(value: str) -> None:
    with pytest.raises(SettingsError, match="--maxconn"):
        load_settings(["--marathon", "http://127.0.0.1:8080", "--maxconn", value], {})
