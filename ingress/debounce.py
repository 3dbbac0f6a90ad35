"""Coalescing store changes: wait for a quiet period after the last change, but never longer
than a bound after the first, so a steady trickle of changes (endpoints churning) cannot
postpone a rebuild forever. One rebuild then covers the whole burst; the model is rebuilt
from the store, so which changes were in the burst does not matter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from ingress.clock import Clock
from kubewatch import ChangeQueue


class Debouncer:
    """Turns a stream of store changes into rebuilds: one per burst, at most ``max_delay`` after its first change."""

    def __init__(self, queue: ChangeQueue, clock: Clock, *, quiet: float = 0.1, max_delay: float = 1.0) -> None:
        self.queue = queue
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
            return len(get.result().changes)
        return None

    async def _first(self) -> int:
        if self._poke.is_set() or len(self.queue):
            self._poke.clear()
            return len(self.queue.take().changes)
        count = await self._batch_before(self._poke.wait())
        self._poke.clear()
        return count or 0

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
            if more is not None:
                count += more
                last = self.clock.now()
