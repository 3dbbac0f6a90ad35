"""The store: slim records by kind, namespace and name, secondary indexes, sync state, changes.

All reads are plain dictionary look-ups and never await, so a DNS handler can call them on
the hot path. Writes come from sources (API reflectors, the manifest directory) running on
the same event loop; each write updates the data and the indexes before any subscriber hears
of it, and a relist (``replace``) is applied whole before its diff is published.
"""

from __future__ import annotations

import asyncio
import builtins
import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from kubewatch.feed import ADDED, DELETED, MODIFIED, Callback, Change, ChangeQueue, Feed
from kubewatch.indexes import Indexes, SliceIndex
from kubewatch.kinds import KINDS, Kind, get_kind
from kubewatch.records import Endpoint, EndpointSlice, Namespace, Pod, Record, Service, ServiceImport


class StalenessSource(Protocol):
    """What a source exposes so the store can say how current it is."""

    kinds: frozenset[str]

    def staleness(self, kind: str) -> float: ...


class Store:
    """Records by kind, namespace and name, with indexes, sync state and change notification.

    (Within this class `list` is the method below: annotations name the built-in as `builtins.list`.)
    """

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock
        # kind -> namespace ("" for cluster-scoped) -> name -> record. Nesting by namespace
        # instead of keying by (namespace, name) saves a 56-byte tuple per object.
        self._objects: dict[str, dict[str, dict[str, Record]]] = {name: {} for name in KINDS}
        self._counts: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.indexes = Indexes()
        self._feed = Feed()
        self._expected: set[str] = set()
        self._synced: dict[str, asyncio.Event] = {name: asyncio.Event() for name in KINDS}
        self._all_synced = asyncio.Event()
        self._sources: list[StalenessSource] = []
        # Bumped on every change that can alter a DNS answer (see Kind.dns_view).
        self.version = 0
        # Wall-clock time of the last such change: the SOA serial CoreDNS publishes.
        self.last_change = wall_clock()
        # Bumped on every change of that kind, DNS-relevant or not.
        self.generations: dict[str, int] = dict.fromkeys(KINDS, 0)

    # ------------------------------------------------------------------ reads

    def get(self, kind: str | Kind, namespace: str, name: str) -> Record | None:
        by_ns = self._objects[get_kind(kind).name].get(namespace)
        return by_ns.get(name) if by_ns is not None else None

    def iter(self, kind: str | Kind, namespace: str | None = None) -> Iterator[Record]:
        data = self._objects[get_kind(kind).name]
        if namespace is not None:
            yield from tuple(data.get(namespace, {}).values())
            return
        for by_name in tuple(data.values()):
            yield from tuple(by_name.values())

    def list(self, kind: str | Kind, namespace: str | None = None) -> list[Record]:
        return list(self.iter(kind, namespace))

    def count(self, kind: str | Kind) -> int:
        return self._counts[get_kind(kind).name]

    def namespaces_with(self, kind: str | Kind) -> builtins.list[str]:
        """Namespaces holding at least one object of the kind."""
        return list(self._objects[get_kind(kind).name])

    # The typed getters below: each kind's table holds records of that kind only (files by kind), an
    # invariant of the store that its one dict-of-Record type cannot state, hence their ignores.

    def service(self, namespace: str, name: str) -> Service | None:
        by_ns = self._objects["services"].get(namespace)
        return by_ns.get(name) if by_ns is not None else None  # type: ignore[return-value]

    def namespace(self, name: str) -> Namespace | None:
        by_ns = self._objects["namespaces"].get("")
        return by_ns.get(name) if by_ns is not None else None  # type: ignore[return-value]

    def service_import(self, namespace: str, name: str) -> ServiceImport | None:
        by_ns = self._objects["serviceimports"].get(namespace)
        return by_ns.get(name) if by_ns is not None else None  # type: ignore[return-value]

    def pod(self, namespace: str, name: str) -> Pod | None:
        by_ns = self._objects["pods"].get(namespace)
        return by_ns.get(name) if by_ns is not None else None  # type: ignore[return-value]

    def slices_for_service(self, namespace: str, service: str) -> tuple[EndpointSlice, ...]:
        """EndpointSlices labelled kubernetes.io/service-name=<service>, by slice name."""
        return _by_name(self.indexes.slices_by_service, namespace, service)

    def mc_slices_for_service(self, namespace: str, service: str) -> tuple[EndpointSlice, ...]:
        """EndpointSlices labelled multicluster.kubernetes.io/service-name=<service> (the endpoints of a
        ServiceImport, from every cluster of the set), by slice name."""
        return _by_name(self.indexes.mc_slices_by_service, namespace, service)

    def services_by_ip(self, ip: str) -> tuple[Service, ...]:
        """Services with this ClusterIP (any family), oldest indexed first."""
        return self.indexes.services_by_ip.get(ip)

    def endpoints_by_ip(self, ip: str) -> builtins.list[tuple[EndpointSlice, Endpoint]]:
        """Every (slice, endpoint) pair whose endpoint holds this address, ready or not."""
        found: builtins.list[tuple[EndpointSlice, Endpoint]] = []
        seen: set[int] = set()
        for sl in self.indexes.slices_by_ip.get(ip):
            if id(sl) in seen:
                continue
            seen.add(id(sl))
            for ep in sl.endpoints:
                if ip in ep.addresses:
                    found.append((sl, ep))
        return found

    def pods_by_ip(self, ip: str) -> tuple[Pod, ...]:
        """Pods (not being deleted) whose status.podIPs hold this IP."""
        return self.indexes.pods_by_ip.get(ip)

    # ------------------------------------------------------------------ sync state

    def expect(self, kinds: Iterable[str | Kind]) -> None:
        """Sources announce the kinds they will feed; `synced` waits for all of them."""
        for kind in kinds:
            self._expected.add(get_kind(kind).name)
        self._update_all_synced()

    @property
    def expected_kinds(self) -> frozenset[str]:
        return frozenset(self._expected)

    def mark_synced(self, kind: str | Kind) -> None:
        self._synced[get_kind(kind).name].set()
        self._update_all_synced()

    def synced_event(self, kind: str | Kind | None = None) -> asyncio.Event:
        """The event set once ``kind`` (or, with None, every expected kind) has synced."""
        return self._all_synced if kind is None else self._synced[get_kind(kind).name]

    def is_synced(self, kind: str | Kind) -> bool:
        return self._synced[get_kind(kind).name].is_set()

    @property
    def synced(self) -> bool:
        """True once every expected kind has completed its first list."""
        return self._all_synced.is_set()

    def _update_all_synced(self) -> None:
        if self._expected and all(self._synced[k].is_set() for k in self._expected):
            self._all_synced.set()
        else:
            self._all_synced.clear()

    async def wait_synced(self, kinds: Iterable[str | Kind] | None = None, timeout: float | None = None) -> bool:
        """Wait until synced (all expected kinds, or those given); False on timeout."""

        async def wait() -> None:
            if kinds is None:
                await self._all_synced.wait()
            else:
                for kind in kinds:
                    await self._synced[get_kind(kind).name].wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ staleness

    def add_source(self, source: StalenessSource) -> None:
        self._sources.append(source)
        self.expect(source.kinds)

    def remove_source(self, source: StalenessSource) -> None:
        if source in self._sources:
            self._sources.remove(source)

    def staleness(self, kind: str | Kind | None = None) -> float:
        """Seconds since the sources last confirmed the state of this kind (or of any kind).

        0 while connected and watching; inf if never contacted.
        """
        name = get_kind(kind).name if kind is not None else None
        worst = 0.0
        found = False
        for src in self._sources:
            for k in src.kinds:
                if name is None or k == name:
                    found = True
                    worst = max(worst, src.staleness(k))
        return worst if found else math.inf

    # ------------------------------------------------------------------ change feed

    def subscribe(self, callback: Callback, kinds: Iterable[str | Kind] | None = None) -> Callable[[], None]:
        """Call ``callback(kind, type, old, new)`` after each change; returns an unsubscriber."""
        return self._feed.subscribe(callback, self._kind_names(kinds))

    def subscribe_queue(self, kinds: Iterable[str | Kind] | None = None, maxsize: int = 100_000) -> ChangeQueue:
        """A queue of changes for consumers that debounce (``await q.get_batch()``)."""
        return self._feed.queue(self._kind_names(kinds), maxsize)

    @staticmethod
    def _kind_names(kinds: Iterable[str | Kind] | None) -> builtins.list[str] | None:
        return None if kinds is None else [get_kind(k).name for k in kinds]

    # ------------------------------------------------------------------ writes

    def upsert(self, kind: str | Kind, rec: Record) -> Change | None:
        """Add or replace one record; returns the change, or None if nothing changed."""
        k = get_kind(kind)
        change = self._set(k, rec)
        if change is not None:
            self._feed.publish([change])
        return change

    def delete(self, kind: str | Kind, namespace: str, name: str) -> Change | None:
        k = get_kind(kind)
        change = self._remove(k, namespace, name)
        if change is not None:
            self._feed.publish([change])
        return change

    def replace(
        self,
        kind: str | Kind,
        records: Iterable[Record],
        *,
        namespace: str | None = None,
        name: str | None = None,
    ) -> builtins.list[Change]:
        """Make the records of ``kind`` (within the scope) exactly ``records``.

        The scope is everything, or one namespace, or one object name (for a source that
        watches a single cluster-scoped object). All changes are applied before any
        subscriber hears of them.
        """
        k = get_kind(kind)
        data = self._objects[k.name]
        # Nested like _objects, so a relist of 100,000 pods builds no key tuples.
        wanted: dict[str, dict[str, Record]] = {}
        for rec in records:
            wanted.setdefault(rec.namespace, {})[rec.name] = rec
        if name is not None:
            ns = namespace or ""
            scope: list[tuple[str, list[str]]] = [(ns, [name] if self.get(k, ns, name) is not None else [])]
        elif namespace is not None:
            scope = [(namespace, list(data.get(namespace, {})))]
        else:
            scope = [(ns, list(by_name)) for ns, by_name in data.items()]
        changes = []
        for ns, names in scope:
            keep = wanted.get(ns, {})
            for n in names:
                if n not in keep:
                    change = self._remove(k, ns, n)
                    if change is not None:
                        changes.append(change)
        for by_name in wanted.values():
            for rec in by_name.values():
                change = self._set(k, rec)
                if change is not None:
                    changes.append(change)
        self._feed.publish(changes)
        return changes

    def _set(self, k: Kind, rec: Record) -> Change | None:
        by_name = self._objects[k.name].setdefault(rec.namespace, {})
        old = by_name.get(rec.name)
        if old is not None and old == rec:
            return None
        by_name[rec.name] = rec
        if old is not None:
            self.indexes.remove(old)
        else:
            self._counts[k.name] += 1
        self.indexes.add(rec)
        self._bump(k, old, rec)
        return Change(k.name, MODIFIED if old is not None else ADDED, old, rec)

    def _remove(self, k: Kind, namespace: str, name: str) -> Change | None:
        data = self._objects[k.name]
        by_name = data.get(namespace)
        if by_name is None or name not in by_name:
            return None
        old = by_name.pop(name)
        if not by_name:
            del data[namespace]
        self._counts[k.name] -= 1
        self.indexes.remove(old)
        self._bump(k, old, None)
        return Change(k.name, DELETED, old, None)

    def _bump(self, k: Kind, old: Record | None, new: Record | None) -> None:
        self.generations[k.name] += 1
        if not k.dns_relevant:
            return
        if old is not None and new is not None and k.dns_view is not None and k.dns_view(old) == k.dns_view(new):
            return
        self.version += 1
        self.last_change = self._wall_clock()


def _by_name(index: SliceIndex, namespace: str, service: str) -> tuple[EndpointSlice, ...]:
    by_svc = index.get(namespace)
    if by_svc is None:
        return ()
    slices = by_svc.get(service)
    if not slices:
        return ()
    return tuple(slices[name] for name in sorted(slices))
