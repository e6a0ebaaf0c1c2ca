"""Parsers of the runtime API client, fed with output captured from Debian's HAProxy 2.6.12."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.haproxy.runtime import (
    CMAINT,
    FDRAIN,
    FMAINT,
    ReloadFailed,
    RuntimeAPIError,
    ServerState,
    add_server_command,
    is_error_answer,
    judge_reload,
    parse_csv_stat,
    parse_info,
    parse_servers_state,
    parse_show_proc,
    split_prompt_answers,
    write_succeeded,
)

DATA = Path(__file__).parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_show_stat_rows_are_keyed_by_header_name() -> None:
    rows = parse_csv_stat(read("show_stat.txt"))
    names = [(r["pxname"], r["svname"]) for r in rows]
    assert ("fe_1", "FRONTEND") in names
    assert ("be_1", "s1") in names
    s1 = next(r for r in rows if r["svname"] == "s1")
    assert s1["addr"] == "127.0.0.1:19101"
    assert s1["scur"] == "0"
    assert s1["mode"] == "http"
    assert "-" not in s1  # the literal "-" column is dropped
    assert "" not in s1  # the trailing comma does not make an empty-named column


def test_show_stat_survives_trailing_comma_and_short_rows() -> None:
    text = "# pxname,svname,scur,-,status,\nbe,s1,3,-,UP,\nbe,s2\n\n"
    rows = parse_csv_stat(text)
    assert rows[0] == {"pxname": "be", "svname": "s1", "scur": "3", "status": "UP"}
    assert rows[1]["svname"] == "s2" and rows[1]["scur"] == ""


def test_show_info_gives_pid_and_version() -> None:
    info = parse_info(read("show_info.txt"))
    assert info["Name"] == "HAProxy"
    assert info["Pid"].isdigit()
    assert info["Version"].startswith("2.6")


def test_servers_state_admin_state_is_a_bitmask() -> None:
    states = parse_servers_state(read("show_servers_state.txt"))
    assert [s.name for s in states] == ["s1", "x"]
    s1, x = states
    assert s1.backend == "be_1" and s1.address == "127.0.0.1" and s1.port == 19101
    assert s1.admin_state == FDRAIN and s1.admin == "drain" and s1.draining
    assert s1.operational == "running" and s1.uweight == 2
    # a dynamic server with an unresolvable name: forced maintenance, no address
    assert x.address == "-" and x.fqdn == "notanip" and x.admin == "maint"


@pytest.mark.parametrize(
    ("mask", "admin", "flags"),
    [
        (0, "ready", []),
        (FMAINT, "maint", ["FMAINT"]),
        (FMAINT | CMAINT, "maint", ["FMAINT", "CMAINT"]),
        (CMAINT, "ready", ["CMAINT"]),  # "disabled" in the file, enabled at runtime since
        (CMAINT | FDRAIN, "drain", ["CMAINT", "FDRAIN"]),
        (FMAINT | FDRAIN, "maint", ["FMAINT", "FDRAIN"]),
        (0x20, "maint", ["RMAINT"]),
        (0x40, "maint", ["HMAINT"]),
    ],
)
def test_admin_state_decoding(mask: int, admin: str, flags: list[str]) -> None:
    state = ServerState(1, "be", 1, "s", "127.0.0.1", 2, mask, 1, 1, 0, 80)
    assert state.admin == admin
    assert state.admin_flags() == flags


def test_show_proc_lists_master_workers_and_old_workers() -> None:
    status = parse_show_proc(read("show_proc_old_workers.txt"))
    assert status.master is not None and status.master.kind == "master"
    assert status.reloads == 4 and status.failed == 0
    assert [w.pid for w in status.workers] == [9644]
    assert [(w.pid, w.reloads) for w in status.old_workers] == [(7970, 1)]
    assert status.workers[0].version.startswith("2.6")


def test_show_proc_failed_counter_and_prompt() -> None:
    text = "master[ReloadFailed]> " + read("show_proc_failed.txt")
    status = parse_show_proc(text)
    assert status.master is not None and status.master.pid == 7059
    assert status.reloads == 5 and status.failed == 1
    assert status.old_workers == ()


def test_judge_reload_success_failure_and_undecided() -> None:
    before = parse_show_proc(read("show_proc_old_workers.txt"))
    failed = parse_show_proc(read("show_proc_failed.txt"))
    verdict = judge_reload(before, failed)
    assert verdict is not None and not verdict.ok and "refused" in verdict.message
    newer = parse_show_proc(read("show_proc_old_workers.txt").replace("9644", "9999"))
    verdict = judge_reload(before, newer)
    assert verdict is not None and verdict.ok and verdict.new_pid == 9999
    assert verdict.old_workers == 1
    assert judge_reload(before, before) is None
    assert verdict.raise_for_failure() is verdict
    with pytest.raises(ReloadFailed, match="refused"):
        judge_reload(before, failed).raise_for_failure()  # type: ignore[union-attr]


def test_prompt_mode_answers_split_even_without_blank_lines() -> None:
    # captured: add, del (no blank line after it), set weight (empty), del of a missing server
    stream = "\n> New server registered.\n\n> Server deleted.\n> \n> No such server.\n> "
    answers = split_prompt_answers(stream, 4)
    assert answers == ["New server registered.", "Server deleted.", "", "No such server."]
    with pytest.raises(ValueError):
        split_prompt_answers("\n> only one\n> ", 3)


@pytest.mark.parametrize(
    ("command", "answer", "ok"),
    [
        ("add server be/s 127.0.0.1:1", "New server registered.", True),
        (
            "add server be/s 127.0.0.1:1",
            "Already exists a server with the same name in backend.",
            False,
        ),
        (
            "add server be/s 127.0.0.1:1 cookie a",
            "'cookie' option is not accepted for dynamic server",
            False,
        ),
        ("del server be/s", "Server deleted.", True),
        ("del server be/s", "Only servers in maintenance mode can be deleted.", False),
        (
            "del server be/s",
            "Server still has connections attached to it, cannot remove it.",
            False,
        ),
        ("set server be/s state ready", "", True),
        ("set server be/s state ready", "No such server.", False),
        (
            "set server be/s weight 300",
            "Absolute weight can only be between 0 and 256 inclusive.",
            False,
        ),
        (
            "set server be/s addr 10.0.0.1 port 80",
            "IP changed from '127.0.0.1' to '10.0.0.1'",
            True,
        ),
        ("set server be/s addr bad port 1", "Invalid addr 'bad' by 'stats socket command'", False),
    ],
)
def test_write_success_is_judged_per_command(command: str, answer: str, ok: bool) -> None:
    assert write_succeeded(command, answer) is ok


def test_error_texts_are_recognised() -> None:
    assert is_error_answer("No such server.")
    assert is_error_answer("Can't find backend.\n")
    assert is_error_answer(
        "Unknown command, but maybe one of the following ones is a better match:"
    )
    assert not is_error_answer("1\n# be_id be_name")
    err = RuntimeAPIError("del server be/s", "Server deleted?")
    assert err.command == "del server be/s" and "Server deleted?" in str(err)


def test_add_server_command_brackets_ipv6() -> None:
    assert add_server_command("be", "s", "10.0.0.1", 80, "weight 2") == (
        "add server be/s 10.0.0.1:80 weight 2"
    )
    assert add_server_command("be", "s", "::1", 80) == "add server be/s [::1]:80"


def test_batches_are_cut_in_chunks_under_the_byte_limit() -> None:
    from sidecar.haproxy.runtime import _chunks

    commands = [f"set server be/s{i} state ready" for i in range(100)]
    chunks = _chunks(commands, 300)
    assert [c for chunk in chunks for c in chunk] == commands
    assert all(sum(len(c) + 1 for c in chunk) <= 300 for chunk in chunks)
    assert _chunks(["x" * 500], 300) == [["x" * 500]]  # one oversized command still goes
    assert _chunks([], 300) == []
