"""Waiting for conditions in tests without sleeping a fixed time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kubewatch import Store


async def until(predicate: Callable[[], bool], *, store: Store | None = None, timeout: float = 5.0) -> None:
    """Return once ``predicate()`` holds: re-checked on every store change when a store is
    given (event-driven), else polled every 10 ms. Fails the test after ``timeout``."""
    if predicate():
        return
    changed = asyncio.Event()
    unsubscribe = store.subscribe(lambda *_: changed.set()) if store is not None else None
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                if store is not None:
                    changed.clear()
                    # A condition may also depend on things that are not store changes.
                    try:
                        async with asyncio.timeout(0.05):
                            await changed.wait()
                    except TimeoutError:
                        pass
                else:
                    await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout}s") from None
    finally:
        if unsubscribe is not None:
            unsubscribe()
