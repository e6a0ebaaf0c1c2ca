"""The last-known-good catalog on disk: atomic round trip, old format, unreadable files, unwritable
dirs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from sidecar.catalog import (
    DRAIN,
    READY,
    Catalog,
    Instance,
    Problem,
    Service,
    ServiceOptions,
    Skipped,
    updated_catalog,
)
from sidecar.sources.marathon.translate import catalog_from_apps
from sidecar.state_store import CatalogEncoder, StateStore

APPS = [
    {
        "id": "/web",
        "portDefinitions": [{"port": 10000}],
        "tasks": [{"id": "web.1", "host": "h", "ports": [31000], "state": "TASK_RUNNING"}],
    }
]
SERVICE = Service(
    "/web:0",
    "/web",
    0,
    ServiceOptions(10000, 10000),
    (Instance("web.1", "h", 31000, READY, "running", app_id="/web", status="TASK_RUNNING"),),
)
CATALOG = Catalog({SERVICE.key: SERVICE})


def test_round_trip(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    assert store.load() is None
    assert store.save(CATALOG)
    loaded = store.load()
    assert loaded is not None
    assert loaded.catalog == CATALOG
    assert loaded.saved_at > 0 and loaded.describe_time().endswith("Z")
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")]
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600  # it may hold host names


def test_the_format_of_earlier_versions_is_read_through_the_legacy_reader(tmp_path: Path) -> None:
    old = {"version": 1, "saved_at": 1700000000.0, "apps": APPS}
    (tmp_path / "last-applied.json").write_text(json.dumps(old))
    assert StateStore(str(tmp_path)).load() is None  # no reader: not understood
    loaded = StateStore(str(tmp_path), legacy=catalog_from_apps).load()
    assert loaded is not None and loaded.saved_at == 1700000000.0
    assert loaded.catalog == catalog_from_apps(APPS)
    assert [i.id for s in loaded.catalog for i in s.instances] == ["web.1"]


def test_garbage_or_foreign_files_are_ignored(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path), legacy=catalog_from_apps)
    store.path.write_text("{not json")
    assert store.load() is None
    store.path.write_text('{"version": 99, "saved_at": 1, "apps": []}')
    assert store.load() is None
    store.path.write_text('{"version": 1, "saved_at": 1, "apps": ["x"]}')
    assert store.load() is None
    store.path.write_text('{"version": 2, "saved_at": 1, "catalog": {"format": "x"}}')
    assert store.load() is None


def test_state_dir_that_is_a_file_is_counted_not_raised(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    store = StateStore(str(not_a_dir))
    assert store.save(CATALOG) is False
    assert store.write_errors == 1
    assert store.last_error is not None and str(not_a_dir) in store.last_error
    assert store.load() is None


def test_recovers_after_a_failed_write(tmp_path: Path) -> None:
    target = tmp_path / "later"
    target.write_text("x")  # a file where the directory should be
    store = StateStore(str(target))
    assert not store.save(CATALOG)
    target.unlink()
    assert store.save(CATALOG)
    assert store.last_error is None
    loaded = store.load()
    assert loaded is not None and loaded.catalog == CATALOG


def test_the_encoder_writes_what_to_dict_says_as_catalogs_change() -> None:
    encoder = CatalogEncoder()
    api = SERVICE._replace(key="/api:0", app_id="/api", instances=())
    first = updated_catalog(Catalog({}), {SERVICE.key: SERVICE, api.key: api})
    drained = SERVICE._replace(instances=(SERVICE.instances[0]._replace(state=DRAIN),))
    second = updated_catalog(
        first,
        {SERVICE.key: drained, api.key: None},
        problems=(Problem("/web", "HAPROXY_0_X", "unknown"),),
        skipped=(Skipped("/bad", "no ports"),),
    )
    for catalog in (first, second, second, CATALOG):
        assert json.loads(encoder.encode(catalog)) == catalog.to_dict()
