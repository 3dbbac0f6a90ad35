"""Virtual time for the controller's tests (ingress.clock.Clock): nothing sleeps for real."""

from __future__ import annotations

import asyncio


class FakeClock:
    """Virtual time for tests: ``sleep`` returns once ``advance`` moves past its deadline."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + seconds, fut))
        try:
            await fut
        finally:
            self._sleepers = [(d, f) for d, f in self._sleepers if f is not fut]

    async def advance(self, seconds: float, settle: int = 30) -> None:
        """Let runnable tasks reach their sleeps, move time forward, and let every task
        whose sleep ended run up to its next await (``settle`` loop turns each way)."""
        for _ in range(settle):
            await asyncio.sleep(0)
        self._now += seconds
        for deadline, fut in list(self._sleepers):
            if deadline <= self._now and not fut.done():
                fut.set_result(None)
        for _ in range(settle):
            await asyncio.sleep(0)
