"""SSEParser on Marathon's recorded event-stream bytes and on hand-made edge cases."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marathon_bridge.events import Event, SSEFrame, SSEParser, event_from_frame

# file -> (event names in order, heartbeats)
RECORDED = {
    "real-captures/sse.single-event.async-worker.txt": (["event_stream_attached"], 0),
    "real-captures/sse.multi-event-with-extra-blank-lines.marathon-1.4.async-worker.txt": (
        ["group_change_success", "api_post_event", "status_update_event", "instance_changed_event"],
        5,
    ),
    "derived-from-code/sse.wire-bytes.crlf.txt": (
        ["event_stream_attached", "status_update_event"],
        1,
    ),
    "api-docs-head/GET_v2_events.sse-stream.txt": (
        ["event_stream_attached", "status_update_event", "status_update_event"],
        1,
    ),
}


def parse(chunks: Sequence[bytes]) -> tuple[list[SSEFrame], int]:
    parser = SSEParser()
    frames: list[SSEFrame] = []
    for chunk in chunks:
        frames.extend(parser.feed(chunk))
    return frames, parser.heartbeats


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@pytest.fixture(scope="module", params=sorted(RECORDED))
def recording(request: pytest.FixtureRequest, examples_dir: Path) -> tuple[str, bytes]:
    name: str = request.param
    return name, (examples_dir / name).read_bytes()


def test_recorded_stream_whole(recording: tuple[str, bytes]) -> None:
    name, data = recording
    frames, heartbeats = parse([data])
    names, expected_heartbeats = RECORDED[name]
    assert [f.event for f in frames] == names
    assert heartbeats == expected_heartbeats
    for frame in frames:
        payload = json.loads(frame.data)
        assert payload["eventType"] == frame.event


def test_recorded_stream_byte_by_byte(recording: tuple[str, bytes]) -> None:
    _, data = recording
    assert parse([data[i : i + 1] for i in range(len(data))]) == parse([data])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=25))
def test_recorded_stream_in_random_splits(recording: tuple[str, bytes], cuts: list[int]) -> None:
    _, data = recording
    assert parse(split_at(data, cuts)) == parse([data])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=25),
    ending=st.sampled_from([b"\r\n", b"\n", b"\r"]),
)
def test_line_endings_do_not_change_the_frames(
    recording: tuple[str, bytes], cuts: list[int], ending: bytes
) -> None:
    _, data = recording
    canonical = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    converted = canonical.replace(b"\n", ending)
    assert parse(split_at(converted, cuts)) == parse([canonical])


def test_crlf_split_between_cr_and_lf_is_one_line_ending() -> None:
    frames, heartbeats = parse([b"event: a\r", b"\ndata: {}\r", b"\n\r", b"\n\r", b"\n"])
    assert frames == [SSEFrame("a", "{}")]
    assert heartbeats == 1


def test_bare_cr_line_endings() -> None:
    frames, heartbeats = parse([b"\revent: a\rdata: 1\r\r\r"])
    assert frames == [SSEFrame("a", "1")]
    assert heartbeats == 2


def test_multiple_data_lines_are_joined_with_newline() -> None:
    frames, _ = parse([b"data: first\r\ndata:second\r\ndata:  third\r\n\r\n"])
    assert frames == [SSEFrame("", "first\nsecond\n third")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    frames, heartbeats = parse([b": hello\r\nid: 7\r\nretry: 10\r\nevent: x\r\ndata: y\r\n\r\n"])
    assert frames == [SSEFrame("x", "y")]
    assert heartbeats == 0


def test_empty_data_field_still_dispatches() -> None:
    assert parse([b"data\r\n\r\n"])[0] == [SSEFrame("", "")]


def test_heartbeats_alone_are_counted_and_yield_nothing() -> None:
    assert parse([b"\r\n" * 7]) == ([], 7)


def test_utf8_split_inside_a_character_is_decoded_once_whole() -> None:
    line = 'data: {"message":"caf\u00e9 \u2603"}\r\n\r\n'.encode()
    cut = line.index(b"\xe2") + 1
    frames, _ = parse([line[:cut], line[cut:]])
    assert json.loads(frames[0].data) == {"message": "caf\u00e9 \u2603"}


def test_utf8_byte_order_mark_at_the_start_is_dropped() -> None:
    frames, _ = parse([b"\xef\xbb", b"\xbfevent: a\r\ndata: 1\r\n\r\n"])
    assert frames == [SSEFrame("a", "1")]


def test_an_unfinished_frame_is_not_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: a\r\ndata: {") == []
    assert parser.feed(b"}\r\n") == []
    assert parser.feed(b"\r\n") == [SSEFrame("a", "{}")]


def test_event_from_frame() -> None:
    data = '{"eventType":"status_update_event","taskId":"t"}'
    assert event_from_frame(SSEFrame("status_update_event", data)) == Event(
        "status_update_event", {"eventType": "status_update_event", "taskId": "t"}
    )
    assert event_from_frame(SSEFrame("", data)) == Event(
        "status_update_event", {"eventType": "status_update_event", "taskId": "t"}
    )
    assert event_from_frame(SSEFrame("x", "{not json")) is None
    assert event_from_frame(SSEFrame("x", "[1, 2]")) is None


def test_a_line_without_end_past_the_limit_is_refused_not_buffered_forever() -> None:
    from marathon_bridge.events import SSELineTooLong

    parser = SSEParser(max_line=1024)
    parser.feed(b"event: status_update_event\r\n")
    with pytest.raises(SSELineTooLong):
        for _ in range(10):
            parser.feed(b"data: " + b"x" * 200)
    # the parser starts clean afterwards
    assert parser.feed(b"\r\nevent: a\r\ndata: {}\r\n\r\n")[-1].event == "a"
