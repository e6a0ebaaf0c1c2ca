"""One znode's existence and children, watched with kazoo's DataWatch and ChildrenWatch.

kazoo's ChildrenWatch stops for good when its node does not exist (it needs the path to exist),
while a DataWatch also works on a missing node and survives reconnects and session loss. So a
`NodeWatch` keeps a DataWatch on the path and (re)starts a ChildrenWatch whenever the node exists
under a new creation (`czxid`): a node deleted and created again gets a fresh children watch.
Results of an older children watch are dropped (its callback returns False, which stops it).

Callbacks run on kazoo's callback thread: `on_children(names)` and `on_gone()` must only hand the
news on (e.g. put it on a queue). With `stop_when_gone` the watch ends when the node is gone (a
service's watch: its parent's children watch starts a new one if the service comes back);
without, it waits for the node to appear (the catalog root).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from kazoo.recipe.watchers import ChildrenWatch, DataWatch


class NodeWatch:
    def __init__(
        self,
        client: Any,
        path: str,
        on_children: Callable[[list[str]], None],
        on_gone: Callable[[], None],
        stop_when_gone: bool,
    ) -> None:
        self.client = client
        self.path = path
        self._on_children = on_children
        self._on_gone = on_gone
        self._stop_when_gone = stop_when_gone
        self._mutex = threading.Lock()
        self._generation = 0
        self._czxid: Optional[int] = None
        self._children_watch: Any = None
        self.active = True

    def start(self) -> None:
        DataWatch(self.client, self.path, self._on_data)

    def cancel(self) -> None:
        """Stop delivering; kazoo's watches end at their next event."""
        with self._mutex:
            self.active = False
            self._generation += 1
            self._forget_children_watch()

    def _on_data(self, data: Optional[bytes], stat: Any) -> Optional[bool]:
        with self._mutex:
            if not self.active:
                return False
            if stat is None:
                self._generation += 1
                self._czxid = None
                self._forget_children_watch()
                if self._stop_when_gone:
                    self.active = False
                gone = True
            else:
                gone = False
                if stat.czxid == self._czxid:
                    return None
                self._czxid = stat.czxid
                self._generation += 1
                generation = self._generation
        if gone:
            self._on_gone()
            return False if self._stop_when_gone else None
        watch = ChildrenWatch(self.client, self.path, self._children_callback(generation))
        with self._mutex:
            if generation == self._generation:
                self._children_watch = watch
        return None

    def _children_callback(self, generation: int) -> Callable[[list[str]], Optional[bool]]:
        def deliver(children: list[str]) -> Optional[bool]:
            with self._mutex:
                if generation != self._generation:
                    return False
            self._on_children(children)
            return None

        return deliver

    def _forget_children_watch(self) -> None:
        """Unhook a children watch that will never be called again (kazoo keeps the listener of
        a ChildrenWatch that stopped on a missing node)."""
        watch, self._children_watch = self._children_watch, None
        if watch is not None:
            self.client.remove_listener(watch._session_watcher)
