"""Stores shared by every reader of the same cluster in one process: one watch per kind, one client.

Several DNS plugins read the cluster (kubernetes, k8s_gateway, in several server blocks). Each asks
`SharedStores.join(key, specs, ...)` for the kinds it needs; readers of the same source (`key`: a
kubeconfig and context, a URL, the service account, or a manifests path) get the same Store, and a
kind that two readers ask for with the same WatchSpec is watched once. A reader that asks for a kind
with a different spec (another label selector or namespace list) gets a Store of its own: one watch
cannot serve two selections.

A membership is taken at configuration time and started with the plugin: the first `start` of a
store's members starts one source for every kind its members asked for so far, and a kind first asked
for later (a reload that adds a block) gets a source of its own in the same store. The last `stop`
stops the sources and forgets the store, so a reload that keeps the same kinds (the new configuration
starts before the old one stops) keeps the store and its watches: nothing is listed again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable
from typing import Protocol

from kubewatch.api_source import ApiSource, WatchSpec
from kubewatch.client import ApiClient
from kubewatch.connection import ClusterConfig
from kubewatch.manifests import ManifestSource
from kubewatch.store import Store

log = logging.getLogger(__name__)

# Connections of the one client per shared API store: each watch holds one for minutes.
MAX_CONNECTIONS = 64


class Source(Protocol):
    """What feeds a store (ApiSource, ManifestSource)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Origin(Protocol):
    """Where a shared store's objects come from; makes the source of a set of kinds."""

    def source(self, store: Store, specs: list[WatchSpec]) -> Source: ...

    async def close(self) -> None: ...


class ApiOrigin:
    """An API server, reached through one client that every source of the store shares."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.client: ApiClient | None = None

    def source(self, store: Store, specs: list[WatchSpec]) -> Source:
        if self.client is None:
            self.client = ApiClient(self.config, max_connections=MAX_CONNECTIONS)
        return ApiSource(store, self.client, specs)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None


class ManifestOrigin:
    """A file or directory of manifests (each set of kinds reads the files on its own schedule)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def source(self, store: Store, specs: list[WatchSpec]) -> Source:
        return ManifestSource(store, self.path, specs=specs)

    async def close(self) -> None:
        pass


class Shared:
    """One store, the specs of its kinds, the sources feeding them and how many members run."""

    def __init__(self, key: Hashable, origin: Origin) -> None:
        self.key = key
        self.origin = origin
        self.store = Store()
        self.specs: dict[str, WatchSpec] = {}
        self.fed: set[str] = set()  # kinds a running source feeds
        self.sources: list[Source] = []
        self.running = 0

    def fits(self, specs: Iterable[WatchSpec]) -> bool:
        return all(self.specs.get(s.kind, s) == s for s in specs)

    async def feed(self, kinds: Iterable[str]) -> None:
        """Start one source for the kinds asked for that no source feeds yet."""
        new = [self.specs[k] for k in kinds if k not in self.fed]
        if new:
            # Namespaces first: a manifest source synthesises namespaces only if it reads them too.
            new.sort(key=lambda s: s.kind != "namespaces")
            source = self.origin.source(self.store, new)
            self.fed.update(s.kind for s in new)
            self.sources.append(source)
            await source.start()

    async def close(self) -> None:
        for source in reversed(self.sources):
            await source.stop()
        self.sources.clear()
        self.fed.clear()
        await self.origin.close()


class Membership:
    """One reader's share of a store: the kinds it reads, started and stopped with the reader."""

    def __init__(self, registry: SharedStores, shared: Shared, kinds: list[str]) -> None:
        self.registry = registry
        self.shared = shared
        self.kinds = kinds
        self.started = False

    @property
    def store(self) -> Store:
        return self.shared.store

    @property
    def synced(self) -> bool:
        """Every kind this member reads has completed its first list (other members' kinds do not count)."""
        return all(self.store.is_synced(k) for k in self.kinds)

    async def wait_synced(self, timeout: float | None) -> bool:
        return await self.store.wait_synced(self.kinds, timeout=timeout)

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        self.shared.running += 1
        # Every kind asked for so far: members that start later find their kinds watched already.
        await self.shared.feed(self.shared.specs)

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        self.shared.running -= 1
        if self.shared.running == 0:
            self.registry.forget(self.shared)
            await self.shared.close()


class SharedStores:
    """The process's shared stores, by source key."""

    def __init__(self) -> None:
        self.by_key: dict[Hashable, list[Shared]] = {}

    def join(self, key: Hashable, specs: Iterable[WatchSpec], origin: Callable[[], Origin]) -> Membership:
        """A membership in the store of `key` whose specs agree with `specs` (a new store if none does)."""
        wanted = list(specs)
        for s in wanted:
            s.validate()
        candidates = self.by_key.setdefault(key, [])
        shared = next((sh for sh in candidates if sh.fits(wanted)), None)
        if shared is None:
            shared = Shared(key, origin())
            candidates.append(shared)
            if len(candidates) > 1:
                log.info("kubewatch: %s is watched with other selections too: a store of its own", key)
        for s in wanted:
            shared.specs.setdefault(s.kind, s)
        return Membership(self, shared, [s.kind for s in wanted])

    def forget(self, shared: Shared) -> None:
        candidates = self.by_key.get(shared.key, [])
        if shared in candidates:
            candidates.remove(shared)
        if not candidates:
            self.by_key.pop(shared.key, None)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_key.values())


# The one registry of a process (the DNS server's plugins share it across blocks and reloads).
SHARED = SharedStores()
