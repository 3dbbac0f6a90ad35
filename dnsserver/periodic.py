"""A background job repeated every interval until stopped: what hosts, loadbalance and reload share.

A failing run is logged and the next one still happens; stopping cancels the job cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable

from dnsserver.logs import core_log

log = core_log


async def cancel_task(task: asyncio.Task[object] | None) -> None:
    """Cancel a background task and wait until it has really stopped (a no-op for None or a done task)."""
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Periodic:
    """Runs a job in its own task, waiting `interval()` seconds before each run."""

    def __init__(self, interval: Callable[[], float], job: Callable[[], Awaitable[object] | object],
                 what: str) -> None:
        self.interval = interval  # called before each wait, so jitter can differ every time
        self.job = job
        self.what = what
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self.task = self.task, None
        await cancel_task(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval())
            try:
                result = self.job()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s: periodic job failed", self.what)
