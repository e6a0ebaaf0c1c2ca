"""Which keys changed between two versions of a value made copy-on-write (pure).

A producer that makes each version of a keyed value (a catalog's services, a model's backends)
from the one before tags every version with :class:`Changes`: its place in the producer's
history (a :class:`Lineage` and a generation number) and the keys changed since an earlier
version of that history, the *anchor*. A consumer holding an older version of the same history
learns what to look at with :func:`changed_between`, without walking every key, even when it
skipped the versions in between (a coalesced burst).

The keys accumulate from the anchor on; once more than :data:`KEYS_LIMIT` have accumulated the
version becomes the next anchor. A consumer older than the anchor gets ``None`` and walks every
key once. The keys are a superset: a key listed may be unchanged after all (it changed back), so
consumers compare what they find under it. A value without changes (made some other way, or a
copy with parts left out) tells nothing: ``None`` again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Optional

KEYS_LIMIT = 64  # a consumer checks at most this many keys, or walks every key once


class Lineage:
    """The identity of one producer's linear history of versions."""

    __slots__ = ()


class Changes(NamedTuple):
    """Where a version stands in its history and what changed since the anchor."""

    lineage: Lineage
    since: int  # the anchor's generation
    generation: int
    keys: frozenset[str]  # every key that may differ from the anchor's version


def first_version() -> Changes:
    """The start of a new history: it relates to no earlier value."""
    return Changes(Lineage(), 0, 0, frozenset())


def next_version(previous: Optional[Changes], keys: Iterable[str]) -> Changes:
    """The changes of a version made from the one tagged ``previous`` by changing ``keys``."""
    if previous is None:
        return first_version()
    step = frozenset(keys)
    merged = previous.keys | step if previous.keys else step
    if len(merged) > KEYS_LIMIT:  # the previous version becomes the anchor
        return Changes(previous.lineage, previous.generation, previous.generation + 1, step)
    return Changes(previous.lineage, previous.since, previous.generation + 1, merged)


def changed_between(old: Optional[Changes], new: Optional[Changes]) -> Optional[frozenset[str]]:
    """The keys that may differ from the version tagged ``old`` to the one tagged ``new``;
    ``None`` when the tags cannot tell (other histories, or ``old`` is older than the anchor)."""
    if old is None or new is None or old.lineage is not new.lineage:
        return None
    if old.generation == new.generation:
        return frozenset()
    if new.since <= old.generation < new.generation:
        return new.keys
    return None
