"""cache at run time: the stores of wire answers, the hot path's `fast_answer`, the chain's `serve`, the
metrics."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator

from dnslib import RR, DNSRecord
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dnsplugins.cache.config import MIN_TTL, CacheConfig
from dnsserver.dnslib_ext import pack_caseless
from dnsserver.metrics import REGISTRY
from dnsserver.plugin import Next, Plugin, match_zone
from dnsserver.request import Request
from dnsserver.wire.answer import WireAnswer, assemble
from dnsserver.wire.consts import (
    AA,
    AD,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    SERVFAIL,
    TYPE_AXFR,
    TYPE_CNAME,
    TYPE_IXFR,
    TYPE_NS,
    TYPE_OPT,
    TYPE_SOA,
)
from dnsserver.wire.query import FastQuery, parse_query


class Entry:
    """One stored answer: its wire form, TTL and kind, and its records as last rendered for a hit."""

    __slots__ = (
        "ad",
        "expires",
        "flags",
        "hits",
        "kind",
        "last_hit",
        "orig_ttl",
        "refreshing",
        "since",
        "tail",
        "until",
        "wire",
    )

    def __init__(self, wire: WireAnswer, ttl: int, now: float, kind: str) -> None:
        self.wire = wire
        self.orig_ttl = ttl
        self.expires = now + ttl
        self.kind = kind
        self.ad = bool(wire.flags & AD)
        self.flags = wire.flags & ~AD  # what a query asking for neither DO nor AD gets
        self.hits = 0
        self.last_hit = now
        self.refreshing = False
        # The records as last rendered, and the open interval of clock readings in which their TTL is
        # still the one to serve: a hit inside it sends them as they are. Empty until first rendered.
        self.tail = wire.tail
        self.since = self.until = 0.0

    def render(self, ttl: int, now: float, keepttl: bool) -> bytes:
        """The records with `ttl` (served at `now`), kept for the rest of the second in which it holds."""
        self.tail = self.wire.with_ttl(ttl)
        if keepttl:
            self.since, self.until = -math.inf, self.expires
        else:  # int(expires - now) == ttl while expires - ttl - 1 < now <= expires - ttl
            self.since, self.until = self.expires - ttl - 1, self.expires - ttl
        return self.tail


class Store:
    """One of the two caches: bounded, oldest-first eviction (dicts keep insertion order)."""

    def __init__(self, kind: str, capacity: int) -> None:
        self.kind = kind
        self.capacity = capacity
        self.entries: dict[bytes, Entry] = {}
        self.evictions = 0

    def put(self, key: bytes, entry: Entry) -> None:
        entries = self.entries
        if key in entries:
            del entries[key]  # re-insert so it counts as the newest
        elif len(entries) >= self.capacity:
            del entries[next(iter(entries))]
            self.evictions += 1
        entries[key] = entry


def classify(reply: DNSRecord, qtype: int) -> str | None:
    """"success", "denial" or "servfail" for a cacheable reply, None for one never kept."""
    h = reply.header
    if h.tc or h.opcode != 0 or qtype in (TYPE_AXFR, TYPE_IXFR):
        return None
    rcode = h.rcode
    has_soa = any(r.rtype == TYPE_SOA for r in reply.auth)
    if rcode == NOERROR:
        if reply.rr:
            if qtype in (TYPE_CNAME, 255) or any(r.rtype == qtype for r in reply.rr):
                return "success"
            # Only a CNAME chain that does not reach the type asked: a NODATA if an SOA says so.
            return "denial" if has_soa else None
        if has_soa:
            return "denial"
        if any(r.rtype == TYPE_NS for r in reply.auth):
            return "success"  # a referral
        return None
    if rcode == NXDOMAIN:
        return "denial" if has_soa and not reply.rr else None
    if rcode in (SERVFAIL, NOTIMP):
        return "servfail"
    return None


def minimal_ttl(reply: DNSRecord, kind: str) -> int:
    ttls = [r.ttl for r in reply.rr] + [r.ttl for r in reply.auth] + [r.ttl for r in reply.ar if r.rtype != TYPE_OPT]
    if kind == "denial":
        ttls += [r.rdata.times[4] for r in reply.auth if r.rtype == TYPE_SOA]  # RFC 2308: the SOA MINIMUM
    return min(ttls) if ttls else MIN_TTL


def _with_ttl(records: list[RR], ttl: int) -> list[RR]:
    # Records may be shared with other replies (hosts, kubernetes): copy, never change in place.
    return [RR(r.rname, r.rtype, r.rclass, ttl, r.rdata) for r in records if r.rtype != TYPE_OPT]


class CacheStats(Collector):
    """Counters for every cache plugin instance, exported under CoreDNS's names."""

    def __init__(self) -> None:
        self.caches: list[Cache] = []

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        labels = ["server", "type", "zones", "view"]
        entries = GaugeMetricFamily("coredns_cache_entries", "The number of elements in the cache.", labels=labels)
        hits = CounterMetricFamily("coredns_cache_hits", "The count of cache hits.", labels=labels)
        evictions = CounterMetricFamily("coredns_cache_evictions", "The count of cache evictions.", labels=labels)
        base = ["server", "zones", "view"]
        requests = CounterMetricFamily("coredns_cache_requests", "The count of cache requests.", labels=base)
        misses = CounterMetricFamily("coredns_cache_misses", "The count of cache misses. Deprecated, derive "
                                     "misses from cache hits/requests counters.", labels=base)
        prefetch = CounterMetricFamily("coredns_cache_prefetch", "The number of times the cache has prefetched "
                                       "a cached item.", labels=base)
        stale = CounterMetricFamily("coredns_cache_served_stale", "The number of requests served from stale "
                                    "cache entries.", labels=base)
        drops = CounterMetricFamily("coredns_cache_drops", "The number responses that are not cached, because "
                                    "the reply is malformed.", labels=base)
        for c in self.caches:
            for store in (c.success, c.denial):
                lv = [c.server, store.kind, c.zone_label, ""]
                entries.add_metric(lv, len(store.entries))
                hits.add_metric(lv, c.hits[store.kind])
                evictions.add_metric(lv, store.evictions)
            lv = [c.server, c.zone_label, ""]
            requests.add_metric(lv, c.requests)
            misses.add_metric(lv, c.requests - c.hits["success"] - c.hits["denial"])
            prefetch.add_metric(lv, c.prefetches)
            stale.add_metric(lv, c.served_stale)
            drops.add_metric(lv, c.drops)
        yield from (entries, hits, evictions, requests, misses, prefetch, stale, drops)


STATS = CacheStats()
REGISTRY.register(STATS)


class Cache(Plugin):
    """`cache`: keeps replies as wire bytes for their TTL and answers repeats from them (the hot path)."""

    name = "cache"

    def __init__(self, config: CacheConfig, server: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.server = server
        self.zone_label = " ".join(config.zones)
        self.clock = clock
        self.success = Store("success", config.success.capacity)
        self.denial = Store("denial", config.denial.capacity)
        self._requests = 0  # counted on the slow path and on hits that take _fast_answer
        self._hits = {"success": 0, "denial": 0}
        # Hits on the shortest path count here once, as both a request and a success hit.
        self.fast_hits = 0
        # Whether a hit needs no bookkeeping beyond counting (prefetch tracks every hit of an entry).
        self._plain_hits = not config.prefetch
        self.prefetches = 0
        self.served_stale = 0
        self.drops = 0
        self._next: Next | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def requests(self) -> int:
        return self._requests + self.fast_hits

    @property
    def hits(self) -> dict[str, int]:
        return {"success": self._hits["success"] + self.fast_hits, "denial": self._hits["denial"]}

    async def start(self) -> None:
        STATS.caches.append(self)

    async def stop(self) -> None:
        if self in STATS.caches:
            STATS.caches.remove(self)
        for t in list(self._tasks):
            t.cancel()

    # -- lookup, shared by the hot path and the chain ------------------------------------------------

    def _find(self, key: bytes, now: float) -> tuple[Entry, int, bool] | None:
        """(entry, TTL to serve, stale?) or None. A SERVFAIL never shadows a good answer."""
        for store in (self.success, self.denial):
            e = store.entries.get(key)
            if e is None:
                continue
            left = e.expires - now
            if left > 0:
                return e, (e.orig_ttl if self.config.keepttl else int(left)), False
            if self.config.stale and -left <= self.config.stale and e.kind != "servfail":
                return e, self.config.stale_ttl, True
        return None

    def _note_hit(self, e: Entry, key: bytes, now: float, stale: bool, req_factory: Callable[[], Request]) -> None:
        self._hits["denial" if e.kind != "success" else "success"] += 1
        if stale:
            self.served_stale += 1
            if not e.refreshing:
                self._refresh(e, key, req_factory)
            return
        cfg = self.config
        if cfg.prefetch:
            if now - e.last_hit >= cfg.prefetch_window:
                e.hits = 0
            e.hits += 1
            e.last_hit = now
            threshold = math.ceil(e.orig_ttl * cfg.prefetch_pct / 100)
            if e.hits >= cfg.prefetch and e.expires - now <= threshold and not e.refreshing:
                self.prefetches += 1
                self._refresh(e, key, req_factory)

    def _refresh(self, e: Entry, key: bytes, req_factory: Callable[[], Request]) -> None:
        nxt = self._next
        if nxt is None:
            return
        e.refreshing = True

        async def run() -> None:
            try:
                req = req_factory()
                reply = await nxt(req)
                if reply is not None:
                    self._store(key, req.qtype, req.name, reply)
            except Exception:  # a failed refresh leaves the entry as it was; the next hit tries again
                pass
            finally:
                e.refreshing = False

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def fast_answer(self, data: bytes, q: FastQuery, key: bytes, client: tuple[str, int], proto: str,
                    shuffle: bool, max_size: int) -> bytes | None:
        """The server's hot path: the reply bytes for `data` (stored under `key`), or None for the slow path,
        which also takes a reply larger than `max_size` (it truncates it, and counts it then, once)."""
        e = self.success.entries.get(key)
        if e is not None and self._plain_hits:
            now = self.clock()
            if e.since < now < e.until:
                # The common case, kept short: a live answer whose TTL is still the one last rendered.
                tail = e.tail if not shuffle or not e.wire.rotations else e.wire.shuffled(e.tail)
                flags = e.wire.flags if e.ad and (q.do or q.flags & AD) else e.flags
                last = q.last  # assemble's own reuse of its last reply, tried here first: one call less
                if last is not None and last[0] is tail and last[1] == flags:
                    out = data[0:2] + last[2]
                else:
                    out = assemble(data, q, flags, e.wire.an, e.wire.ns, e.wire.ar, tail)
                if len(out) > max_size:
                    return None
                self.fast_hits += 1
                return out
        return self._fast_answer(data, q, key, client, proto, shuffle, max_size)

    def _fast_answer(self, data: bytes, q: FastQuery, key: bytes, client: tuple[str, int], proto: str,
                     shuffle: bool, max_size: int) -> bytes | None:
        now = self.clock()
        found = self._find(key, now)
        if found is None or (found[2] and self.config.stale_verify):
            return None  # the slow path will count this request
        e, ttl, stale = found
        w = e.wire
        tail = w.with_ttl(ttl) if stale else e.render(ttl, now, self.config.keepttl)
        if shuffle and w.rotations:
            tail = w.shuffled(tail)
        flags = w.flags if (e.ad and (q.do or q.flags & AD)) else e.flags
        out = assemble(data, q, flags, w.an, w.ns, w.ar, tail)
        if len(out) > max_size:
            return None
        self._requests += 1
        self._note_hit(e, key, now, stale, lambda: _request_from(data, client, proto))
        return out

    # -- the chain ----------------------------------------------------------------------------------

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        self._next = next
        if match_zone(self.config.zones, req.name) is None:
            return await next(req)
        q = parse_query(req.wire)
        if q is None:
            return await next(req)
        now = self.clock()
        self._requests += 1
        found = self._find(q.key, now)
        if found is not None:
            e, ttl, stale = found
            if stale and self.config.stale_verify:
                try:
                    timeout = self.config.verify_timeout or None
                    reply = await asyncio.wait_for(next(req), timeout)
                    if reply is not None and reply.header.rcode != SERVFAIL:
                        return self._store(q.key, req.qtype, req.name, reply)
                except Exception:  # a timeout included
                    pass  # fall back to the stale answer, which is what verify promises
            w = e.wire
            tail = w.with_ttl(ttl)
            flags = w.flags if (e.ad and (req.do or req.msg.header.ad)) else w.flags & ~AD
            wire = assemble(req.wire, q, flags, w.an, w.ns, w.ar, tail)
            self._note_hit(e, q.key, now, stale, lambda: req)
            return DNSRecord.parse(wire)
        reply = await next(req)
        if reply is None:
            return None
        return self._store(q.key, req.qtype, req.name, reply)

    def _store(self, key: bytes, qtype: int, name: str, reply: DNSRecord) -> DNSRecord:
        """Keep `reply` if it may be kept; return it with every TTL set to the cache TTL."""
        kind = classify(reply, qtype)
        if kind is None:
            return reply
        cfg = self.config
        if kind == "servfail":
            if cfg.servfail <= 0:
                return reply
            ttl, store = int(cfg.servfail), self.denial
        else:
            settings = cfg.success if kind == "success" else cfg.denial
            if settings.disabled and match_zone(settings.disabled, name) is not None:
                return reply
            ttl = max(settings.min_ttl, min(settings.max_ttl, minimal_ttl(reply, kind)))
            store = self.success if kind == "success" else self.denial
        out = DNSRecord(reply.header, questions=reply.questions, rr=_with_ttl(reply.rr, ttl),
                        auth=_with_ttl(reply.auth, ttl), ar=_with_ttl(reply.ar, ttl))
        try:
            packed = pack_caseless(out)  # names compressed whatever the case: the hot path's bytes are the chain's
        except Exception:
            self.drops += 1
            return reply
        wire = WireAnswer.from_reply(packed)
        wire.flags |= AA  # some stub resolvers drop non-authoritative answers; CoreDNS sets AA too
        store.put(key, Entry(wire, ttl, self.clock(), kind))
        return out


def _request_from(data: bytes, client: tuple[str, int], proto: str) -> Request:
    return Request(DNSRecord.parse(data), data, client, proto, "", "")
