"""Per listener: from a packet's bytes to the reply's bytes. Zone selection, the chain, the scrub, metrics.

No exception leaves `handle`: a packet that cannot be read is dropped or answered FORMERR, a chain
that raises gives SERVFAIL, and even a bug in the core is caught and logged.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

from dnslib import EDNS0, DNSRecord

from dnsserver import wire
from dnsserver.config import Block
from dnsserver.metrics import Metrics, Slot
from dnsserver.plugin import FastStore, PluginError, Relay, RelayStart
from dnsserver.request import Request
from dnsserver.respond import finalize_all
from dnsserver.wire.consts import CLASS_IN, TYPE_DS
from dnsserver.wire.names import name_text
from dnsserver.wire.query import FastQuery, parse_query, quick_queries, quick_query, size_limit
from dnsserver.wire.reply import scrub
from dnsserver.wire.views import WireQuery, WireReply

log = logging.getLogger("portolan")

MAX_ROUTES = 200_000
D = TypeVar("D")  # where relay_now's caller sends a reply: opaque to the dispatcher


class _Unlearnt(enum.Enum):
    UNLEARNT = 0


_UNLEARNT: Final = _Unlearnt.UNLEARNT  # relays' "not asked yet", as None there means "no relay takes it"

# Which relay starts a question: (zone, block, starter), or None when none does.
RelayRoute = tuple[str, Block, RelayStart]
# What relay_now carries to the reply: the query, its client, where it is served, when, and `send(reply, dest)`.
# The send and dest of one query agree, but a tuple cannot carry relay_now's type variable, hence Any.
RelayState = tuple[bytes, FastQuery, tuple[str, int], str, str, str, Block, float, Callable[[bytes, Any], None], Any]


def _notify(block: Block, data: bytes, q: FastQuery, client: tuple[str, int], proto: str, local_ip: str,
            out: bytes, start: float) -> None:
    """Tell the block's observers (log) about an answer sent without a Request, through views of the bytes."""
    view, reply = WireQuery(data, q, client, proto, local_ip), WireReply(out)
    for obs in block.fast_observers:
        obs.fast_observe(view, reply, len(out), time.perf_counter() - start)


class Route:
    """Where the hot path finds the answer to one question: the block's store, and the key it stores it under."""

    __slots__ = ("answer", "block", "plain", "shuffle", "slots", "store_key", "store_name", "zone")

    def __init__(self, block: Block, store: FastStore, zone: str, store_key: bytes) -> None:
        self.block = block
        self.zone = zone
        self.store_key = store_key  # the case-folded key the answer store uses
        self.slots: dict[tuple[str, int, int], Slot] = {}  # (proto, family, rcode) -> bound metrics
        # Read once here rather than on every hot-path answer:
        self.answer = store.fast_answer
        self.store_name = store.name
        self.shuffle = block.fast_shuffle
        self.plain = not block.metrics and not block.fast_observers  # nothing to count, time or log


class Dispatcher:
    """Routes queries arriving on one listener to the server block of the longest matching zone."""

    def __init__(self, label: str, zones: dict[str, Block], metrics: Metrics, local_ip: str = "") -> None:
        self.label = label  # CoreDNS's `server` metric label, e.g. "dns://:53"
        self.local_ip = local_ip  # the listener's address: what the slow path gives plugins as the server IP
        self.zones = zones
        self.metrics = metrics
        self.count_dropped = any(b.metrics for b in zones.values())
        # Hot path routing, learnt on the slow path: the exact question bytes (+ DO/CD) -> where the answer
        # is stored. Per listener, because zone selection is; rebuilt with the Dispatcher on reload.
        self.routes: dict[bytes, Route] = {}
        self.fast_enabled = any(b.fast_store is not None for b in zones.values())
        self.relay_enabled = any(b.relay is not None for b in zones.values())
        self._tasks: set[asyncio.Task[None]] = set()  # chain fallbacks of relay_now
        # Question bytes -> relay_now's target (None: no relay takes it).
        self.relays: dict[bytes, RelayRoute | None] = {}
        self._on_relayed = self._relay_done  # bound once: relay_now passes it with every query

    def fast(self, data: bytes, client: tuple[str, int], proto: str) -> bytes | None:
        """Answer from stored wire bytes, or None for the slow path. Must never raise."""
        try:
            # quick_query's own first step, inlined as most queries repeat: one call less per answer.
            q = quick_queries.get(data[2:]) or quick_query(data)
            if q is None:
                return None
            route = self.routes.get(q.key)
            if route is None:
                return None
            if not route.plain:
                return self._fast_counted(data, q, route, client, proto)
            # None too for a reply larger than the client takes: the slow path truncates properly.
            # (size_limit, inlined: one call less per answer.)
            return route.answer(data, q, route.store_key, client, proto, route.shuffle,
                                q.udp_size if proto == "udp" else 65535)
        except Exception:
            log.exception("[ERROR] hot path failed; falling back")
            return None

    def _fast_counted(self, data: bytes, q: FastQuery, route: Route, client: tuple[str, int],
                      proto: str) -> bytes | None:
        """The hot path for a block with metrics or log: the same answer, timed, counted and logged."""
        block = route.block
        start = time.perf_counter()
        limit = size_limit(q, proto)
        out = route.answer(data, q, route.store_key, client, proto, route.shuffle, limit)
        if out is None:
            return None
        if block.metrics:
            family = 2 if ":" in client[0] else 1
            rcode = out[3] & 0xF
            slot = route.slots.get((proto, family, rcode))
            if slot is None:
                slot = route.slots[(proto, family, rcode)] = self.metrics.slot(
                    self.label, route.zone, proto, family, q.qtype, wire.rcode_name(rcode), route.store_name)
            slot.record(q.do, limit, len(out), time.perf_counter() - start)
        if block.fast_observers:
            _notify(block, data, q, client, proto, self.local_ip, out, start)
        return out

    async def answer(self, data: bytes, client: tuple[str, int], proto: str, local_ip: str) -> bytes | None:
        """What a listener does with a query the hot path declined: the relay path if a block has one, else
        (or when the relay declines it too) the whole chain."""
        out = await self.relay(data, client, proto) if self.relay_enabled else None
        return out if out is not None else await self.handle(data, client, proto, local_ip)

    async def relay(self, data: bytes, client: tuple[str, int], proto: str) -> bytes | None:
        """The relay path: a query for a block that only forwards, answered without parsing anything.

        None means "not for this path" (the caller runs the whole chain). Errors of the upstreams are
        answered SERVFAIL here, as the chain would, rather than trying everything a second time.
        """
        try:
            return await self._relay(data, client, proto)
        except Exception:  # a bug here must not lose the query: the chain still answers it
            log.exception("[ERROR] relay path failed; falling back")
            return None

    def _relay_target(self, data: bytes) -> tuple[FastQuery, str, Block, Relay] | None:
        """The query read, and the block and relay that take it, or None for the chain."""
        q = parse_query(data)
        if q is None:
            return None
        found = self.select((name_text(data) or ".").lower(), q.qtype)
        if found is None:
            return None
        zone, block = found
        relay = block.relay
        if relay is None or q.qtype in block.chain_qtypes:
            return None
        return q, zone, block, relay

    async def _relay(self, data: bytes, client: tuple[str, int], proto: str) -> bytes | None:
        target = self._relay_target(data)
        if target is None:
            return None
        q, zone, block, relay = target
        start = time.perf_counter()
        try:
            reply: bytes | Exception | None = await relay.relay(data, proto)
        except Exception as e:
            reply = e
        if reply is None:
            return None
        return self._relayed(data, q, client, proto, zone, block, start, reply)

    def relay_now(self, data: bytes, client: tuple[str, int], proto: str, local_ip: str,
                  send: Callable[[bytes, D], None], dest: D) -> bool:
        """The relay path without a task: start forwarding now, `send(reply, dest)` when it comes.

        False: not started (not for this path, or the relay wants a task for it): call `relay`/`handle`.
        A reply that cannot be relayed as bytes after all is answered by the chain, in a task then.
        Which relay takes a question is worked out once and remembered by its exact bytes, as hot-path
        routes are: queries repeat, and their names need not be walked and checked again each time.
        """
        try:
            q = quick_query(data)
            if q is None:
                return False
            if q.edns and ((data[q.qend + 3] << 8) | data[q.qend + 4]) < 512:
                return False  # forwarded as it is, a size below the minimum would be too
            found = self.relays.get(q.key, _UNLEARNT)
            if found is _UNLEARNT:
                found = self._learn_relay(data, q)
            if found is None:
                return False
            zone, block, start_relay = found
            # One tuple carries what the reply needs: no closure (and its cells) per query.
            state: RelayState = (data, q, client, proto, local_ip, zone, block, time.perf_counter(), send, dest)
            return bool(start_relay(data, proto, self._on_relayed, state))
        except Exception:
            log.exception("[ERROR] relay path failed; falling back")
            return False

    def _relay_done(self, state: RelayState, reply: bytes | Exception) -> None:
        """relay_now's reply (or the relay's error) has come: send it, or let the chain answer."""
        data, q, client, proto, local_ip, zone, block, start, send, dest = state
        try:
            out = self._relayed(data, q, client, proto, zone, block, start, reply)
        except Exception:
            log.exception("[ERROR] relay path failed; falling back")
            out = None
        if out is not None:
            send(out, dest)
            return
        task = asyncio.get_running_loop().create_task(self._chain(data, client, proto, local_ip, send, dest))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _learn_relay(self, data: bytes, q: FastQuery) -> RelayRoute | None:
        """Work out (once per question bytes: the answer depends on nothing else) which relay starts it;
        None, remembered too, when none does, so such queries are not walked twice each time."""
        found: RelayRoute | None = None
        target = self._relay_target(data)
        if target is not None and target[0].qend == q.qend:
            _, zone, block, relay = target
            start_relay = relay.relay_starter(data)
            if start_relay is not None:
                found = (zone, block, start_relay)
        if len(self.relays) >= MAX_ROUTES:
            self.relays.clear()  # a cheap bound, as for routes
        self.relays[q.key] = found
        return found

    async def _chain(self, data: bytes, client: tuple[str, int], proto: str, local_ip: str,
                     send: Callable[[bytes, D], None], dest: D) -> None:
        out = await self.handle(data, client, proto, local_ip)
        if out is not None:
            send(out, dest)

    def _relayed(self, data: bytes, q: FastQuery, client: tuple[str, int], proto: str, zone: str, block: Block,
                 start: float, reply: bytes | Exception) -> bytes | None:
        """The client's reply from what the relay gave: its OPT, truncation, metrics, log. None: the chain."""
        if isinstance(reply, Exception):
            # What the chain would do: errors (if loaded) logs it, the client gets SERVFAIL.
            errors = block.errors
            if errors is not None:
                errors.report(WireQuery(data, q, client, proto, self.local_ip), PluginError(block.relay_name, reply))
            else:
                log.debug("relay: %s", reply)
            reply = wire.error_reply(data, wire.SERVFAIL)
        limit = q.udp_size if proto == "udp" else 65535  # size_limit, inlined
        out = scrub(reply, q.edns, q.udp_size, q.do, limit)
        if block.metrics:
            self.metrics.record(self.label, zone, proto, 2 if ":" in client[0] else 1, q.qtype, q.do,
                                limit, len(out), wire.rcode_name(out[3] & 0xF), block.relay_name,
                                time.perf_counter() - start)
        if block.fast_observers:
            _notify(block, data, q, client, proto, self.local_ip, out, start)
        return out

    def learn_route(self, data: bytes, block: Block, zone: str) -> None:
        """After the slow path: remember where a query like this one is answered from wire bytes."""
        full = parse_query(data)
        quick = quick_query(data)
        if full is None or quick is None or quick.qend != full.qend:
            return  # e.g. a zero byte inside a label: such queries always take the slow path
        store = block.fast_store
        if store is None:
            return
        if len(self.routes) >= MAX_ROUTES:
            self.routes.clear()  # a cheap bound; busy names come back on their next slow-path answer
        self.routes[quick.key] = Route(block, store, zone, full.key)

    def select(self, name: str, qtype: int) -> tuple[str, Block] | None:
        """Walk `name` (lower-case FQDN) from itself towards the root; the first zone found is the longest.

        A DS query belongs to the parent side of a zone cut, so an exact apex match is passed over when
        a parent zone is also served here.
        """
        zones = self.zones
        i = 0
        first: tuple[str, Block] | None = None
        while True:
            suffix = name[i:] if name[i:] else "."
            block = zones.get(suffix)
            if block is not None:
                if qtype != TYPE_DS or i > 0 or suffix == ".":
                    return suffix, block
                first = first or (suffix, block)
            if suffix == ".":
                break
            i = name.find(".", i) + 1
            if i == 0 or i >= len(name):
                i = len(name)
        return first

    async def handle(self, data: bytes, client: tuple[str, int], proto: str, local_ip: str) -> bytes | None:
        try:
            return await self._handle(data, client, proto, local_ip)
        except Exception:  # a bug in the core must not take the listener down
            log.exception("[ERROR] internal error handling a query from %s", client[0])
            self.metrics.panics += 1
            if len(data) >= 12:
                return wire.header_only_reply(data, wire.SERVFAIL)
            return None

    async def _handle(self, data: bytes, client: tuple[str, int], proto: str, local_ip: str) -> bytes | None:
        start = time.perf_counter()
        # Not even a header (nobody to answer), or a response, not a query: never answer it (reflection, loops).
        if len(data) < 12 or data[2] & 0x80:
            return None
        try:
            msg = DNSRecord.parse(data)
        except Exception:
            return wire.header_only_reply(data, wire.FORMERR)
        if len(msg.questions) != 1:
            return wire.header_only_reply(data, wire.FORMERR)
        if msg.header.opcode != 0:
            return wire.header_only_reply(data, wire.NOTIMP)
        req = Request(msg, data, client, proto, local_ip, self.label)

        block: Block | None = None
        if req.edns and req.edns_version != 0:
            reply = req.reply()
            out = self._badvers(req, reply)
            zone = "dropped"
        else:
            found = self.select(req.name, req.qtype)
            if found is None:
                reply = req.reply(wire.REFUSED)
                zone = "dropped"
            else:
                zone, block = found
                req.zone = zone
                if req.qclass != CLASS_IN and not block.any_class:
                    reply = req.reply(wire.REFUSED)
                else:
                    reply = await self._run_chain(block, req)
                    if block.fast_store is not None:
                        self.learn_route(data, block, zone)
            out = finalize_all(req, reply)

        if (block is not None and block.metrics) or (block is None and self.count_dropped):
            rcode = reply.header.rcode if reply is not None else wire.SERVFAIL
            self.metrics.record(self.label, zone, proto, req.family, req.qtype, req.do, req.max_size,
                                len(out), wire.rcode_name(rcode), req.answered_by or "",
                                time.perf_counter() - start)
        for obs in req.observers:
            try:
                obs(req, reply, len(out))
            except Exception:
                log.exception("[ERROR] observer failed")
        return out

    async def _run_chain(self, block: Block, req: Request) -> DNSRecord:
        try:
            reply = await block.chain(req)
        except PluginError as e:
            if not block.logs_errors:
                log.debug("%s %s %s: %s", wire.rcode_name(wire.SERVFAIL), req.qname, req.type_name, e)
            reply = None
        if reply is None:
            reply = req.reply(wire.SERVFAIL)
        return reply

    @staticmethod
    def _badvers(req: Request, reply: DNSRecord) -> bytes:
        # BADVERS (16) does not fit the header's 4 bits: the high bits travel in the OPT record.
        reply.header.id = req.msg.header.id
        reply.add_ar(EDNS0(udp_len=req.udp_size, ext_rcode=wire.BADVERS >> 4))
        packed: bytes = reply.pack()
        return packed
