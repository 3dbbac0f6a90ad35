"""The change feed: synchronous callbacks and queue subscriptions for debouncing consumers."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple

from kubewatch.records import Record

log = logging.getLogger(__name__)

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"

Callback = Callable[[str, str, Record | None, Record | None], None]


class Change(NamedTuple):
    """One change of one object: its kind, ADDED/MODIFIED/DELETED, and the records before and after."""

    kind: str
    type: str  # ADDED | MODIFIED | DELETED
    old: Record | None
    new: Record | None


class ChangeBatch(NamedTuple):
    """The changes a queue collected since it was last read."""

    changes: list[Change]
    # True when the queue was full and changes were dropped: the consumer must rebuild
    # from the store rather than trust the list.
    overflowed: bool


class ChangeQueue:
    """A bounded queue of changes for one consumer; see Feed.queue."""

    def __init__(self, kinds: frozenset[str] | None, maxsize: int, on_close: Callable[[ChangeQueue], None]):
        self.kinds = kinds
        self._items: deque[Change] = deque()
        self._maxsize = maxsize
        self._overflowed = False
        self._ready = asyncio.Event()
        self._closed = False
        self._on_close = on_close

    def _put(self, change: Change) -> None:
        if len(self._items) >= self._maxsize:
            self._overflowed = True
        else:
            self._items.append(change)
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    def take(self) -> ChangeBatch:
        """Everything queued so far, without waiting."""
        batch = ChangeBatch(list(self._items), self._overflowed)
        self._items.clear()
        self._overflowed = False
        self._ready.clear()
        return batch

    async def get_batch(self) -> ChangeBatch:
        """Wait until at least one change (or an overflow) is queued, then take them all.

        Raises CancelledError once the queue is closed, ending a consumer loop the way a
        cancelled task would.
        """
        while not self._items and not self._overflowed:
            if self._closed:
                raise asyncio.CancelledError("change queue closed")
            self._ready.clear()
            await self._ready.wait()
        return self.take()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._ready.set()
            self._on_close(self)


class Feed:
    """Tells subscribers and queues about the store's changes, in order."""

    def __init__(self) -> None:
        self._callbacks: list[tuple[Callback, frozenset[str] | None]] = []
        self._queues: list[ChangeQueue] = []

    def subscribe(self, callback: Callback, kinds: Iterable[str] | None = None) -> Callable[[], None]:
        """Call ``callback(kind, type, old, new)`` synchronously after each change is applied.

        Returns a function that unsubscribes. Callbacks must not block: they run on the loop
        that feeds the store.
        """
        entry = (callback, frozenset(kinds) if kinds is not None else None)
        self._callbacks.append(entry)

        def unsubscribe() -> None:
            if entry in self._callbacks:
                self._callbacks.remove(entry)

        return unsubscribe

    def queue(self, kinds: Iterable[str] | None = None, maxsize: int = 100_000) -> ChangeQueue:
        q = ChangeQueue(frozenset(kinds) if kinds is not None else None, maxsize, self._queues.remove)
        self._queues.append(q)
        return q

    def publish(self, changes: list[Change]) -> None:
        if not changes:
            return
        for callback, kinds in tuple(self._callbacks):
            for change in changes:
                if kinds is None or change.kind in kinds:
                    try:
                        callback(change.kind, change.type, change.old, change.new)
                    except Exception:
                        # A consumer's bug must not stop the store or the other consumers.
                        log.exception("kubewatch change callback %r failed", callback)
        for q in tuple(self._queues):
            for change in changes:
                if q.kinds is None or change.kind in q.kinds:
                    q._put(change)
