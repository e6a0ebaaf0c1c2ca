"""An immutable mapping whose one-key updates copy a small part of it (pure).

:class:`ShardedMap` spreads its keys over about ``sqrt(n)`` dicts by hash: :meth:`ShardedMap.set`
and :meth:`ShardedMap.remove` return a new map that shares every shard but the one the key is in,
so an update copies about ``2 * sqrt(n)`` references instead of ``n`` (at 10,000 keys: some 200
instead of 10,000); a map grown one key at a time is spread over more shards as it grows.
Nothing mutates a map once built: the old map stays valid, which is what lets a state be kept
as "the one before" while the next is made from it.

Iteration follows the shards, not insertion order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from math import isqrt
from typing import Any, Generic, Optional, TypeVar, Union, overload

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")

MIN_SHARDS = 1
REBALANCE = 4  # a map grown past REBALANCE x shards^2 keys is spread over more shards


class ShardedMap(Mapping[K, V], Generic[K, V]):
    """An immutable mapping with cheap one-key updates (module doc)."""

    __slots__ = ("_len", "_shards")

    def __init__(self, items: Union[Mapping[K, V], None] = None) -> None:
        source: Mapping[K, V] = items if items is not None else {}
        count = max(MIN_SHARDS, isqrt(len(source)))
        shards: list[dict[K, V]] = [{} for _ in range(count)]
        for key, value in source.items():
            shards[hash(key) % count][key] = value
        self._shards: tuple[dict[K, V], ...] = tuple(shards)
        self._len = len(source)

    @classmethod
    def of(cls, items: Mapping[K, V]) -> ShardedMap[K, V]:
        """``items`` itself when it is a :class:`ShardedMap`, else a new one with its items."""
        return items if isinstance(items, ShardedMap) else cls(items)

    def _shard(self, key: object) -> dict[K, V]:
        return self._shards[hash(key) % len(self._shards)]

    def __getitem__(self, key: K) -> V:
        return self._shard(key)[key]

    @overload
    def get(self, key: K) -> Optional[V]: ...

    @overload
    def get(self, key: K, default: Union[V, D]) -> Union[V, D]: ...

    def get(self, key: K, default: Any = None) -> Any:
        return self._shard(key).get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._shard(key)

    def __iter__(self) -> Iterator[K]:
        for shard in self._shards:
            yield from shard

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"ShardedMap({dict(self)!r})"

    def set(self, key: K, value: V) -> ShardedMap[K, V]:
        """A new map with ``key`` bound to ``value``; this one is unchanged."""
        index = hash(key) % len(self._shards)
        shard = dict(self._shards[index])
        grown = key not in shard
        shard[key] = value
        return self._with_shard(index, shard, self._len + grown)

    def remove(self, key: K) -> ShardedMap[K, V]:
        """A new map without ``key`` (this very map when it has no ``key``)."""
        index = hash(key) % len(self._shards)
        if key not in self._shards[index]:
            return self
        shard = {k: v for k, v in self._shards[index].items() if k != key}
        return self._with_shard(index, shard, self._len - 1)

    def _with_shard(self, index: int, shard: dict[K, V], length: int) -> ShardedMap[K, V]:
        new: ShardedMap[K, V] = ShardedMap.__new__(ShardedMap)
        shards = list(self._shards)
        shards[index] = shard
        new._shards = tuple(shards)
        new._len = length
        if length > REBALANCE * len(shards) ** 2:  # grown one key at a time: spread it again
            return ShardedMap(new)
        return new
