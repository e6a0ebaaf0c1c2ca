"""The last-known-good snapshot on disk: atomic round trip, unreadable files, unwritable dirs."""

from __future__ import annotations

from pathlib import Path

from sidecar.state_store import StateStore

APPS = [
    {"id": "/web", "portDefinitions": [{"port": 10000}], "tasks": [{"id": "web.1", "host": "h"}]}
]


def test_round_trip(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    assert store.load() is None
    assert store.save(APPS)
    loaded = store.load()
    assert loaded is not None
    assert loaded.apps == APPS
    assert loaded.saved_at > 0 and loaded.describe_time().endswith("Z")
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")]


def test_garbage_or_foreign_files_are_ignored(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    store.path.write_text("{not json")
    assert store.load() is None
    store.path.write_text('{"version": 99, "saved_at": 1, "apps": []}')
    assert store.load() is None
    store.path.write_text('{"version": 1, "saved_at": 1, "apps": ["x"]}')
    assert store.load() is None


def test_state_dir_that_is_a_file_is_counted_not_raised(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    store = StateStore(str(not_a_dir))
    assert store.save(APPS) is False
    assert store.write_errors == 1
    assert store.last_error is not None and str(not_a_dir) in store.last_error
    assert store.load() is None


def test_recovers_after_a_failed_write(tmp_path: Path) -> None:
    target = tmp_path / "later"
    target.write_text("x")  # a file where the directory should be
    store = StateStore(str(target))
    assert not store.save(APPS)
    target.unlink()
    assert store.save(APPS)
    assert store.last_error is None
    loaded = store.load()
    assert loaded is not None and loaded.apps == APPS
