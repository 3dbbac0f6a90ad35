"""Coalescing store changes: wait for a quiet period after the last change, but never longer
than a bound after the first, so a steady trickle of changes (endpoints churning) cannot
postpone a rebuild forever. One rebuild then covers the whole burst; the model is rebuilt
from the store, so which changes were in the burst does not matter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ingress.clock import Clock
from kubewatch import Change, ChangeQueue


class Debouncer:
    """Turns a stream of store changes into rebuilds: one per burst, at most ``max_delay`` after its first change."""

    def __init__(self, queue: ChangeQueue, clock: Clock, *, quiet: float = 0.1, max_delay: float = 1.0,
                 relevant: Callable[[Change], bool] | None = None) -> None:  # fmt: skip
        """``relevant``: the changes that call for a rebuild (the others neither start a burst nor
        prolong one: the controller's own status writes, thousands after a bulk load)."""
        self.queue = queue
        self.relevant = relevant
        self.clock = clock
        self.quiet = quiet
        self.max_delay = max(max_delay, quiet)
        self._poke = asyncio.Event()

    def poke(self) -> None:
        """Ask for a rebuild without a store change (a retry, a new default certificate)."""
        self._poke.set()

    async def _batch_before(self, other: Awaitable[object]) -> int | None:
        """How many changes the next batch holds, or None if ``other`` finishes first."""
        get = asyncio.ensure_future(self.queue.get_batch())
        rival = asyncio.ensure_future(other)
        try:
            await asyncio.wait({get, rival}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also on cancellation: neither waiter may outlive this call.
            for task in (get, rival):
                if not task.done():
                    task.cancel()
            await asyncio.gather(get, rival, return_exceptions=True)
        if get.done() and not get.cancelled() and get.exception() is None:
            return self._count(get.result().changes)
        return None

    def _count(self, changes: list[Change]) -> int:
        relevant = self.relevant
        return len(changes) if relevant is None else sum(1 for c in changes if relevant(c))

    async def _first(self) -> int:
        while True:
            if self._poke.is_set():
                self._poke.clear()
                return self._count(self.queue.take().changes)
            if len(self.queue) and (count := self._count(self.queue.take().changes)):
                return count
            got = await self._batch_before(self._poke.wait())
            if self._poke.is_set() or got:
                self._poke.clear()
                return got or 0

    async def wait(self) -> int:
        """Block until a burst of changes has settled; returns how many changes it held."""
        count = await self._first()
        start = last = self.clock.now()
        while True:
            deadline = min(last + self.quiet, start + self.max_delay)
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                return count
            more = await self._batch_before(self.clock.sleep(remaining))
            if more:
                count += more
                last = self.clock.now()
