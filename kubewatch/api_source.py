"""The API-server source: one reflector per watched kind (per namespace, if restricted)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from kubewatch.client import ApiClient
from kubewatch.connection import ClusterConfig
from kubewatch.kinds import Kind, get_kind
from kubewatch.reflector import Reflector, WatchTuning
from kubewatch.selectors import FieldSelector, LabelSelector
from kubewatch.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchSpec:
    """What to watch of one kind. Selectors are sent to the server, not applied locally.

    ``namespaces`` limits namespaced kinds to those namespaces (one watch each) and the
    Namespace kind to those names; empty means all.
    """

    kind: str
    namespaces: tuple[str, ...] = ()
    label_selector: str = ""
    field_selector: str = ""

    def validate(self) -> Kind:
        kind = get_kind(self.kind)
        LabelSelector.parse(self.label_selector)
        FieldSelector.parse(self.field_selector)
        return kind


class ApiSource:
    """Feeds a Store from the API server. ``async with ApiSource(...)`` starts and stops it."""

    def __init__(
        self,
        store: Store,
        connection: ClusterConfig | ApiClient,
        specs: Iterable[WatchSpec | str],
        *,
        tuning: WatchTuning = WatchTuning(),
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.specs = [WatchSpec(s) if isinstance(s, str) else s for s in specs]
        seen: set[str] = set()
        self.reflectors: list[Reflector] = []
        rng = rng or random.Random()
        self._owns_client = isinstance(connection, ClusterConfig)
        if isinstance(connection, ClusterConfig):
            # One long-lived connection per watch, plus room for the lists and writes.
            watches = sum(max(1, len(s.namespaces)) for s in self.specs)
            self.client = ApiClient(connection, max_connections=watches + 8)
        else:
            self.client = connection
        for spec in self.specs:
            kind = spec.validate()
            if kind.name in seen:
                raise ValueError(f"kind {kind.name} is listed twice")
            seen.add(kind.name)
            scopes: list[tuple[str | None, str | None]] = [(None, None)]
            if spec.namespaces:
                if kind.namespaced:
                    scopes = [(ns, None) for ns in spec.namespaces]
                elif kind.name == "namespaces":
                    scopes = [(None, ns) for ns in spec.namespaces]
            for namespace, only_name in scopes:
                self.reflectors.append(
                    Reflector(
                        self.client,
                        store,
                        kind,
                        namespace=namespace,
                        only_name=only_name,
                        label_selector=spec.label_selector,
                        field_selector=spec.field_selector,
                        tuning=tuning,
                        rng=rng,
                        sleep=sleep,
                        clock=clock,
                        on_synced=self._reflector_synced,
                    )
                )
        self.kinds = frozenset(seen)
        self._tasks: list[asyncio.Task[None]] = []

    def _reflector_synced(self, reflector: Reflector) -> None:
        name = reflector.kind.name
        if all(r.synced for r in self.reflectors if r.kind.name == name):
            self.store.mark_synced(name)

    def staleness(self, kind: str) -> float:
        """Seconds since the API server last confirmed this kind's state (0 while watching)."""
        return max((r.staleness() for r in self.reflectors if r.kind.name == kind), default=float("inf"))

    @property
    def connected(self) -> bool:
        return bool(self.reflectors) and all(r.connected for r in self.reflectors)

    async def start(self) -> None:
        if self._tasks:
            return
        self.store.add_source(self)
        for r in self.reflectors:
            self._tasks.append(asyncio.create_task(r.run(), name=f"kubewatch {r!r}"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.store.remove_source(self)
        if self._owns_client:
            await self.client.close()

    async def __aenter__(self) -> ApiSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
