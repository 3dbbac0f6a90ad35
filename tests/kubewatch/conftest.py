from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

import pytest

from kubewatch import ApiSource, ClusterConfig, Store, WatchSpec, WatchTuning
from tests.apiemu import Emulator

# Short backoff so reconnects in tests take milliseconds; long watches so that a watch
# ending is always something the test caused.
FAST = WatchTuning(watch_timeout=(60, 60), backoff_initial=0.02, backoff_cap=0.2, min_watch_duration=0.0)

StartWatch = Callable[..., Awaitable[tuple[Store, ApiSource]]]


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    async with Emulator(tmp_path / "apiemu") as emu:
        yield emu


@pytest.fixture
async def start_watch(emulator: Emulator) -> AsyncIterator[StartWatch]:
    """start_watch(specs, store=None, config=None, tuning=FAST) -> (store, source), synced."""
    sources: list[ApiSource] = []

    async def start(
        specs: Iterable[WatchSpec | str],
        store: Store | None = None,
        config: ClusterConfig | None = None,
        tuning: WatchTuning = FAST,
        wait: bool = True,
    ) -> tuple[Store, ApiSource]:
        store = store or Store()
        source = ApiSource(
            store, config or ClusterConfig.from_kubeconfig(emulator.kubeconfig_path), specs, tuning=tuning
        )
        sources.append(source)
        await source.start()
        if wait:
            assert await store.wait_synced(timeout=10), "store did not sync"
        return store, source

    yield start
    for source in sources:
        await source.stop()
