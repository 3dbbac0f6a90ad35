"""Per listener: from a query's bytes to the reply's bytes, by one entry (`Dispatcher.submit`) and one
finish (`Dispatcher.finish`). The paths a query may take between them are tabled in `dnsserver`'s
docstring.

No exception leaves `submit` or `handle`: a packet that cannot be read is dropped or answered FORMERR,
a chain that raises gives SERVFAIL, and even a bug in the core is caught and logged.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Final, TypeVar

from dnslib import EDNS0, DNSRecord

from dnsserver import wire
from dnsserver.config import Block
from dnsserver.logs import core_log
from dnsserver.metrics import Metrics, Slot
from dnsserver.plugin import FastStore, Observer, PluginError, RelayStart
from dnsserver.request import Request
from dnsserver.respond import Continued, edns_options, finalize, packed, unsent
from dnsserver.wire.consts import CLASS_IN, TYPE_DS
from dnsserver.wire.names import name_text
from dnsserver.wire.query import FastQuery, parse_query, quick_queries, quick_query
from dnsserver.wire.reply import scrub
from dnsserver.wire.views import WireQuery, WireReply

log = core_log

MAX_ROUTES = 200_000
D = TypeVar("D")  # where a reply goes, for the listener that submitted the query: opaque to the dispatcher
# How a listener is given a reply that was not there at once: send(reply or None when nothing is sent, dest).
Send = Callable[[bytes | None, D], None]


class _Unlearnt(enum.Enum):
    UNLEARNT = 0


_UNLEARNT: Final = _Unlearnt.UNLEARNT  # relays' "not asked yet", as None there means "no relay takes it"

# Which relay starts a question: (zone, block, starter), or None when none does.
RelayRoute = tuple[str, Block, RelayStart]
# What a relayed query carries to its reply: the query, its client, where it is served, when, and where the
# reply goes (`send(reply, dest)`). The send and dest of one query agree, but a tuple cannot carry
# submit's type variable, hence Any.
RelayState = tuple[bytes, FastQuery, tuple[str, int], str, str, Block, float, Send[Any], Any]


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
        self.plain = not block.metrics and not block.observers  # nothing to count, time or log


class Dispatcher:
    """Routes queries arriving on one listener to the server block of the longest matching zone."""

    def __init__(self, label: str, zones: dict[str, list[Block]], metrics: Metrics, local_ip: str = "",
                 tasks: set[asyncio.Task[None]] | None = None) -> None:
        self.label = label  # CoreDNS's `server` metric label, e.g. "dns://:53"
        self.local_ip = local_ip  # the listener's address: what the chain gives plugins as the server IP
        # Each zone's blocks in Corefile order (several only when views filter them).
        self.zones = zones
        self.metrics = metrics
        self.count_dropped = any(b.metrics for bs in zones.values() for b in bs)
        # Hot path routing, learnt on the chain: the exact question bytes (+ DO/CD) -> where the answer
        # is stored. Per listener, because zone selection is; rebuilt with the Dispatcher on reload.
        self.routes: dict[bytes, Route] = {}
        self.relay_enabled = any(b.relay is not None for bs in zones.values() for b in bs)
        # Question bytes -> the relay that starts it (None: no relay takes it), learnt as routes are.
        self.relays: dict[bytes, RelayRoute | None] = {}
        # The chain's tasks in flight; the listener's set, so that closing it waits for them across reloads.
        self.tasks: set[asyncio.Task[None]] = set() if tasks is None else tasks
        self._on_relayed = self._relayed  # bound once: the relay path passes it with every query
        self.views = any(b.view is not None for bs in zones.values() for b in bs)

    def submit(self, data: bytes, client: tuple[str, int], proto: str, send: Send[D], dest: D) -> bytes | None:
        """The one entry for a query, from any listener (UDP, TCP, DNS over TLS or HTTPS) and the test harness.

        The paths, in order: the hot path (a block's stored wire answer, returned at once); the relay path
        (the block's relay forwards the bytes; the reply comes later); the chain (in a task). Returns the
        reply when it is there at once; otherwise None, and `send(reply, dest)` is called exactly once
        later, from the event loop, with None when nothing is to be sent back. Never raises.
        """
        try:
            # quick_query's own first step, inlined as most queries repeat: one call less per answer.
            q = quick_queries.get(data[2:]) or quick_query(data)
            if q is not None:
                route = self.routes.get(q.key)
                if route is None:
                    if self.relay_enabled and self._relay(data, q, client, proto, send, dest):
                        return None
                elif route.plain:
                    # (size_limit, inlined: one call less per answer.) A reply larger than the client takes
                    # is None too: the chain truncates it properly.
                    out = route.answer(data, q, route.store_key, client, proto, route.shuffle,
                                       q.udp_size if proto == "udp" else 65535)
                    if out is not None:
                        return out
                else:  # a block with metrics or log: the same answer, then the finish
                    start = time.perf_counter()
                    out = route.answer(data, q, route.store_key, client, proto, route.shuffle,
                                       q.udp_size if proto == "udp" else 65535)
                    if out is not None:
                        return self.finish(route.block, route.zone, q, client, proto, out, route.store_name, start,
                                           data, True, route.slots)
        except Exception:
            log.exception("hot path failed; falling back")
        self._spawn(self._chain(data, client, proto, send, dest))
        return None

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _chain(self, data: bytes, client: tuple[str, int], proto: str, send: Send[D], dest: D) -> None:
        send(await self.handle(data, client, proto, self.local_ip), dest)

    # -- the hot path ------------------------------------------------------------------------------

    def learn_route(self, data: bytes, block: Block, zone: str) -> None:
        """After the chain: remember where a query like this one is answered from wire bytes (once: a
        store that missed, an expired answer, keeps the route and its metric slots)."""
        quick = quick_query(data)
        store = block.fast_store
        if quick is None or store is None:
            return
        known = self.routes.get(quick.key)
        if known is not None and known.block is block:
            return
        full = parse_query(data)
        if full is None or quick.qend != full.qend:
            return  # e.g. a zero byte inside a label: such queries always take the chain
        if len(self.routes) >= MAX_ROUTES:
            self.routes.clear()  # a cheap bound; busy names come back on their next chain answer
        self.routes[quick.key] = Route(block, store, zone, full.key)

    # -- the relay path ----------------------------------------------------------------------------

    def _relay(self, data: bytes, q: FastQuery, client: tuple[str, int], proto: str, send: Send[D],
               dest: D) -> bool:
        """Hand the query to its block's relay, which calls `_relayed` with the outcome. False: not for the
        relay path. Which relay takes a question is worked out once and remembered by its exact bytes, as
        hot-path routes are: queries repeat, and their names need not be walked and checked again."""
        if q.edns and ((data[q.qend + 3] << 8) | data[q.qend + 4]) < 512:
            return False  # forwarded as it is, a size below the minimum would be too
        found = self.relays.get(q.key, _UNLEARNT)
        if found is _UNLEARNT:
            found = self._learn_relay(data, q)
        if found is None:
            return False
        zone, block, start_relay = found
        # One tuple carries what the reply needs: no closure (and its cells) per query.
        state: RelayState = (data, q, client, proto, zone, block, time.perf_counter(), send, dest)
        start_relay(data, proto, self._on_relayed, state)
        return True

    def _relay_target(self, data: bytes) -> tuple[FastQuery, str, Block] | None:
        """The query read, and the block whose relay takes it, or None for the chain."""
        q = parse_query(data)
        if q is None:
            return None
        found = self.select((name_text(data) or ".").lower(), q.qtype)
        if found is None:
            return None
        zone, block = found
        if block.relay is None or q.qtype in block.chain_qtypes:
            return None
        return q, zone, block

    def _learn_relay(self, data: bytes, q: FastQuery) -> RelayRoute | None:
        """Work out (once per question bytes: the answer depends on nothing else) which relay starts it;
        None, remembered too, when none does, so such queries are not walked twice each time."""
        found: RelayRoute | None = None
        target = self._relay_target(data)
        if target is not None and target[0].qend == q.qend:
            _, zone, block = target
            start_relay = block.relay.relay_starter(data) if block.relay is not None else None
            if start_relay is not None:
                found = (zone, block, start_relay)
        if len(self.relays) >= MAX_ROUTES:
            self.relays.clear()  # a cheap bound, as for routes
        self.relays[q.key] = found
        return found

    def _relayed(self, state: RelayState, reply: bytes | Exception | None) -> None:
        """A relayed query's outcome: the reply is finished and sent; None (the relay handed the query on),
        or a bug here, lets the chain answer it."""
        data, q, client, proto, zone, block, start, send, dest = state
        out = None
        if reply is not None:
            try:
                if isinstance(reply, Exception):
                    reply = self._relay_failed(data, q, client, proto, block, reply)
                out = self.finish(block, zone, q, client, proto, reply, block.relay_name, start, data)
            except Exception:
                log.exception("relay path failed; falling back")
        if out is None:
            self._spawn(self._chain(data, client, proto, send, dest))
            return
        send(out, dest)

    def _relay_failed(self, data: bytes, q: FastQuery, client: tuple[str, int], proto: str, block: Block,
                      error: Exception) -> bytes:
        """What the chain does when its relay raises: the error reporter (errors), if loaded, logs it; the
        client gets SERVFAIL."""
        errors = block.errors
        view, failure = WireQuery(data, q, client, proto, self.local_ip), PluginError(block.relay_name, error)
        if block.debug:
            _log_traceback(view.qname, view.type_name, failure)
        if errors is not None:
            errors.report(view, failure)
        elif not block.debug:
            log.debug("relay: %s", error)
        return wire.error_reply(data, wire.SERVFAIL)

    # -- the chain ---------------------------------------------------------------------------------

    def select(self, name: str, qtype: int, req: Request | None = None) -> tuple[str, Block] | None:
        """Walk `name` (lower-case FQDN) from itself towards the root; the first zone found is the longest.

        A DS query belongs to the parent side of a zone cut, so an exact apex match is passed over when
        a parent zone is also served here. Of a zone's blocks, the first whose view admits `req` serves
        it; a zone none admits is passed over, as CoreDNS does. Without `req` (the relay path, which has
        no parsed query) a zone with a filtered block ends the walk with None: the chain decides.
        """
        zones = self.zones
        first: tuple[str, Block] | None = None
        for suffix in _suffixes(name):
            blocks = zones.get(suffix)
            if blocks is None:
                continue
            block: Block | None = blocks[0]
            if len(blocks) > 1 or blocks[0].view is not None:
                if req is None:
                    return None
                block = next((b for b in blocks if b.admits(req)), None)
            if block is not None:
                if qtype != TYPE_DS or suffix != name or suffix == ".":
                    return suffix, block
                first = first or (suffix, block)
        return first

    def _view_dependent(self, name: str, zone: str) -> bool:
        """Whether `select` chose `zone`'s block for `name` by more than the name: a view in the way."""
        for suffix in _suffixes(name):
            blocks = self.zones.get(suffix)
            if blocks is not None and (len(blocks) > 1 or blocks[0].view is not None):
                return True
            if suffix == zone:
                break
        return False

    async def handle(self, data: bytes, client: tuple[str, int], proto: str, local_ip: str) -> bytes | None:
        """The whole chain for a query, whatever the other paths could do: what every path must equal."""
        try:
            return await self._handle(data, client, proto, local_ip)
        except Exception:  # a bug in the core must not take the listener down
            log.exception("internal error handling a query from %s", client[0])
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
        if len(msg.questions) != 1 or not _packable(msg.questions[0].qname.label):
            return wire.header_only_reply(data, wire.FORMERR)
        if msg.header.opcode != 0:
            return wire.header_only_reply(data, wire.NOTIMP)
        req = Request(msg, data, client, proto, local_ip, self.label)
        if req.edns and req.edns_version != 0:
            return self.finish(None, "dropped", req, client, proto, self._badvers(req), "", start, b"", True)
        found = self.select(req.name, req.qtype, req)
        if found is None:
            return self.finish(None, "dropped", req, client, proto, packed(req, req.reply(wire.REFUSED)), "", start)
        zone, block = found
        req.zone = zone
        if req.qclass != CLASS_IN and not block.any_class:
            return self.finish(block, zone, req, client, proto, packed(req, req.reply(wire.REFUSED)), "", start,
                               observers=())  # the chain did not run: nobody in it saw the query
        reply = await self._run_chain(block, req)
        if unsent(reply):
            return None  # a plugin chose to send nothing (acl's drop)
        if block.fast_store is not None and not (self.views and self._view_dependent(req.name, zone)):
            self.learn_route(data, block, zone)
        # The chain's EDNS options (an extended error) before `packed`, which drops the OPT holding
        # them, and those a plugin set on the request (nsid): both go into the client's OPT.
        options = edns_options(reply) + req.opt_options
        out = self.finish(block, zone, req, client, proto, packed(req, reply), req.answered_by or "", start,
                          options=options)
        more = getattr(reply, "more", None)  # further messages on a stream (transfer's AXFR)
        if more and proto != "udp":
            return Continued(out, [finalize(req, m) for m in more])
        return out

    async def _run_chain(self, block: Block, req: Request) -> DNSRecord:
        try:
            reply = await block.chain(req)
        except PluginError as e:
            if block.debug:
                _log_traceback(req.qname, req.type_name, e)
            elif not block.logs_errors:
                log.debug("%s %s %s: %s", wire.rcode_name(wire.SERVFAIL), req.qname, req.type_name, e)
            reply = None
        if reply is None:
            reply = req.reply(wire.SERVFAIL)
        return reply

    @staticmethod
    def _badvers(req: Request) -> bytes:
        # BADVERS (16) does not fit the header's 4 bits: the high bits travel in the OPT record.
        reply = req.reply()
        reply.header.id = req.msg.header.id
        reply.add_ar(EDNS0(udp_len=req.udp_size, ext_rcode=wire.BADVERS >> 4))
        out: bytes = reply.pack()
        return out

    # -- the finish ----------------------------------------------------------------------------------

    def finish(self, block: Block | None, zone: str, q: FastQuery | Request, client: tuple[str, int], proto: str,
               msg: bytes, plugin: str, start: float, data: bytes = b"", scrubbed: bool = False,
               slots: dict[tuple[str, int, int], Slot] | None = None,
               observers: list[Observer] | tuple[()] | None = None, options: bytes = b"") -> bytes:
        """Every path's last step: the scrub (the client's OPT, truncation to its size), the metrics, the
        block's observers (log). Returns the bytes to send.

        `msg` is the reply without an OPT record (the chain's, packed; a relay's), or with `scrubbed` the
        reply as it is to be sent (the hot path's, assembled for the client; BADVERS). `q` is the query as
        read: a FastQuery (with its `data`) or the chain's Request. The hot path passes its route's
        `slots` (metrics bound per proto, family and rcode); `observers` replaces the block's. (Arguments
        are passed by position on the paths that run per query: keywords cost more.) `options` are the
        chain's EDNS options for the client's OPT (an extended DNS error).
        """
        limit = q.udp_size if proto == "udp" else 65535
        out = msg if scrubbed else scrub(msg, q.edns, q.udp_size, q.do, limit, options)
        if block is None:
            if not self.count_dropped:
                return out
        elif not block.metrics:
            if block.observers or observers:
                self._tell(block, q, data, client, proto, out, start, observers)
            return out
        family, rcode = 2 if ":" in client[0] else 1, out[3] & 0xF
        slot = slots.get((proto, family, rcode)) if slots is not None else None
        if slot is None:
            slot = self.metrics.slot(self.label, zone, proto, family, q.qtype, wire.rcode_name(rcode), plugin)
            if slots is not None:
                slots[(proto, family, rcode)] = slot
        slot.record(q.do, limit, len(out), time.perf_counter() - start)
        if block is not None and (block.observers or observers):
            self._tell(block, q, data, client, proto, out, start, observers)
        return out

    def _tell(self, block: Block, q: FastQuery | Request, data: bytes, client: tuple[str, int], proto: str,
              out: bytes, start: float, observers: list[Observer] | tuple[()] | None) -> None:
        """The block's observers (or `observers`), told of the answer through views of the query and of `out`."""
        told = block.observers if observers is None else observers
        view = q if isinstance(q, Request) else WireQuery(data, q, client, proto, self.local_ip)
        reply, duration = WireReply(out), time.perf_counter() - start
        for obs in told:
            try:
                obs.observe(view, reply, len(out), duration)
            except Exception:
                log.exception("observer failed")


def _log_traceback(qname: str, type_name: str, e: PluginError) -> None:
    """A chain's or relay's exception with where it came from, for whoever debugs the plugin (debug)."""
    log.error("%s %s %s: %s", wire.rcode_name(wire.SERVFAIL), qname, type_name, e,
              exc_info=(type(e.cause), e.cause, e.cause.__traceback__))


def _suffixes(name: str) -> Iterator[str]:
    """`name` (lower-case FQDN) and each shorter suffix of whole labels, down to the root, "."."""
    i = 0
    while True:
        suffix = name[i:] if name[i:] else "."
        yield suffix
        if suffix == ".":
            return
        i = name.find(".", i) + 1
        if i == 0 or i >= len(name):
            i = len(name)


__all__ = ["Dispatcher", "Route", "Send"]


def _packable(labels: tuple[bytes, ...]) -> bool:
    """Whether a question name dnslib read can be packed again: dnslib takes a length byte of 64 to 191
    (the reserved label types) as a label's length, then refuses to pack such a label in the reply
    (fuzz/corpus/dns/crash-label-64: a panic and a header-only SERVFAIL instead of FORMERR)."""
    return all(len(label) <= 63 for label in labels) and sum(len(label) + 1 for label in labels) < 255
