"""ShardedMap: an immutable mapping whose one-key updates share all but one shard."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sidecar.persistent_map import ShardedMap

KEYS = st.text(min_size=1, max_size=6)
OPS = st.lists(st.tuples(st.booleans(), KEYS, st.integers()), max_size=60)


def test_reads_like_the_dict_it_was_built_from() -> None:
    plain = {f"/app-{n}": n for n in range(1000)}
    mapped = ShardedMap(plain)
    assert mapped == plain and len(mapped) == 1000
    assert mapped["/app-7"] == 7 and mapped.get("/none") is None and mapped.get("/none", 3) == 3
    assert "/app-999" in mapped and "/app-1000" not in mapped
    assert sorted(mapped) == sorted(plain)


def test_set_and_remove_leave_the_old_map_as_it_was() -> None:
    old = ShardedMap({f"/app-{n}": n for n in range(100)})
    added = old.set("/new", 1).set("/app-3", 33)
    removed = added.remove("/app-4")
    assert "/new" not in old and old["/app-3"] == 3 and old["/app-4"] == 4 and len(old) == 100
    assert added["/new"] == 1 and added["/app-3"] == 33 and len(added) == 101
    assert "/app-4" not in removed and "/app-4" in added and len(removed) == 100


def test_an_update_copies_one_shard_and_shares_the_others() -> None:
    old = ShardedMap({f"/app-{n}": n for n in range(10_000)})
    new = old.set("/app-5", -5)
    shared = sum(1 for a, b in zip(old._shards, new._shards) if a is b)
    assert len(old._shards) == 100 and shared == 99


def test_removing_a_missing_key_is_the_same_map() -> None:
    mapped = ShardedMap({"a": 1})
    assert mapped.remove("b") is mapped


def test_a_map_grown_one_key_at_a_time_spreads_over_more_shards() -> None:
    mapped: ShardedMap[str, int] = ShardedMap()
    for n in range(2000):
        mapped = mapped.set(f"k{n}", n)
    assert len(mapped._shards) >= 20 and dict(mapped) == {f"k{n}": n for n in range(2000)}


def test_of_keeps_a_sharded_map_and_converts_a_dict() -> None:
    mapped = ShardedMap({"a": 1})
    assert ShardedMap.of(mapped) is mapped
    assert isinstance(ShardedMap.of({"a": 1}), ShardedMap) and ShardedMap.of({"a": 1}) == mapped


@given(st.dictionaries(KEYS, st.integers(), max_size=40), OPS)
def test_any_updates_match_the_same_updates_on_a_dict(start: dict[str, int], ops: list) -> None:
    mapped, plain = ShardedMap(start), dict(start)
    for is_set, key, value in ops:
        if is_set:
            mapped = mapped.set(key, value)
            plain[key] = value
        else:
            mapped = mapped.remove(key)
            plain.pop(key, None)
        assert len(mapped) == len(plain)
    assert dict(mapped) == plain
