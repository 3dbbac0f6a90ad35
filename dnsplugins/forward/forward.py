"""forward at run time: the stanzas of a block, each with its upstreams and policy, answering the chain
(`serve`) and relaying bytes (the relay path's starter)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any, TypeVar

from dnslib import DNSRecord

from dnsplugins.forward.config import ForwardConfig
from dnsplugins.forward.health import HealthCheck
from dnsplugins.forward.metrics import METRICS
from dnsplugins.forward.policy import make_policy
from dnsplugins.forward.upstream import Upstream, UpstreamError
from dnsserver.logs import plugin_log
from dnsserver.plugin import Next, Plugin, RelayDone, RelayStart, match_zone
from dnsserver.request import Request
from dnsserver.wire import FORMERR, REFUSED
from dnsserver.wire.consts import TYPE_OPT
from dnsserver.wire.reply import MALFORMED, error_reply, foreign_or_malformed, relayable, same_question, upstream_reply

log = plugin_log("forward")

T = TypeVar("T")
A = TypeVar("A")  # the state a relay_start caller gets back with its reply
DEADLINE = 5.0  # seconds one query may spend on its upstreams, all tries together


class NoHealthyUpstream(Exception):
    """No upstream was asked: all down under `failfast_all_unhealthy`, or the deadline came first."""

    def __init__(self) -> None:
        super().__init__("no healthy proxies")


def upstream_query(req: Request) -> bytes:
    """The bytes to send upstream: the client's own query, unless its EDNS size is below 512.

    The upstream's EDNS size is max(client's, 512); only that rare case needs re-packing.
    """
    if req.edns:
        for rr in req.msg.ar:
            if rr.rtype == TYPE_OPT:
                if rr.rclass < 512:
                    msg = DNSRecord.parse(req.wire)
                    for opt in msg.ar:
                        if opt.rtype == TYPE_OPT:
                            opt.rclass = 512
                    packed: bytes = msg.pack()
                    return packed
                break
    return req.wire


def _relayed_reply(query: bytes, data: bytes) -> bytes:
    """`run`'s conversion for the relay: the reply checked and without its OPT (see `upstream_reply`).
    Relayed unparsed, but walked: a reply that is not a DNS message counts as an upstream failure, as
    it does when `serve` fails to parse it."""
    out = upstream_reply(query, data)
    if isinstance(out, int):
        raise ValueError("malformed reply from upstream")
    return out


def _answers(up: Upstream, query: bytes, data: bytes) -> bool:
    """Does `data` answer `query`'s question? False for a readable reply to another (the client gets
    FORMERR); UpstreamError for one too garbled to read, which is this upstream failing (as a failed
    unpack is in CoreDNS): the next try, or SERVFAIL."""
    if same_question(query, data):
        return True
    if foreign_or_malformed(data) == MALFORMED:
        raise UpstreamError(f"dns: bad reply from {up.addr}: malformed reply from upstream")
    return False


def _parse_reply(data: bytes) -> DNSRecord:
    try:
        return DNSRecord.parse(data)
    except Exception as e:  # dnslib raises its own error types for malformed messages
        raise ValueError(str(e) or type(e).__name__) from None


class Resume:
    """Where `run` picks up after `relay_start`: the policy order it drew, how many upstreams of it were
    tried (0 or 1: the next is the one after), the deadline, and the error of the try made."""

    __slots__ = ("deadline", "error", "tried", "ups")

    def __init__(self, ups: Sequence[Upstream], deadline: float, error: Exception | None, tried: int) -> None:
        self.ups = ups
        self.deadline = deadline
        self.error = error
        self.tried = tried


# What relay_start's first attempt carries to its reply: the query, the client's transport, the policy
# order, the upstream asked, when, and the caller's `done(arg, outcome)`. The done and arg of one query
# agree, but a tuple cannot carry relay_start's type variable, hence Any.
FirstTry = tuple[bytes, str, Sequence[Upstream], Upstream, float, RelayDone[Any], Any]


def _settle(fut: asyncio.Future[bytes | None], outcome: bytes | Exception | None) -> None:
    """A relay's outcome as the result of a future (the task form of the relay)."""
    if fut.done():
        return
    if isinstance(outcome, Exception):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)


class Stanza:
    """One `forward` line at run time: its upstreams, policy and options."""

    def __init__(self, cfg: ForwardConfig) -> None:
        self.cfg = cfg
        self.from_zone = cfg.from_zone
        self.ignored = cfg.ignored
        self.upstreams: list[Upstream] = []
        for spec in cfg.upstreams:
            up = Upstream(spec, expire=cfg.expire, max_idle_conns=cfg.max_idle_conns, max_age=cfg.max_age,
                          tls_context=cfg.tls_context, server_name=cfg.tls_servername,
                          source_address=cfg.source_address)
            up.health = HealthCheck(up, cfg.hc_interval, recursion_desired=cfg.hc_recursion_desired,
                                    domain=cfg.hc_domain, tcp=cfg.force_tcp and spec.transport != "tls")
            self.upstreams.append(up)
        self.policy = make_policy(cfg.policy)
        self.max_fails = cfg.max_fails
        self.max_attempts = cfg.connect_attempts
        self.read_timeout = cfg.read_timeout
        self.deadline = DEADLINE  # tests shorten it
        self.failover = frozenset(cfg.failover_rcodes)
        self.next_rcodes = frozenset(cfg.next_rcodes)
        # Whether a UDP query's first attempt may go without a task (no TCP and no failover to arrange).
        self.quick = not (cfg.force_tcp or cfg.prefer_udp or self.failover)
        self.concurrent = 0
        self._tasks: set[asyncio.Task[None]] = set()  # relays that wait in a task: retries, TCP, ...
        self._on_first_reply = self._first_reply  # bound once: relay_start passes it with every query

    def matches(self, name: str) -> bool:
        """FROM covers `name` and no `except` zone does (FROM itself is always forwarded)."""
        z = self.from_zone
        if name == z:
            return True
        return match_zone([z], name) is not None and match_zone(self.ignored, name) is None

    def passes_on(self, rcode: int, answers: int) -> bool:
        """Does `next` / `next_on_nodata` hand an upstream reply with this rcode and this many answer
        records to the following stanza? (Read from a parsed reply by `serve`, from bytes by `relay`.)"""
        return rcode in self.next_rcodes or (self.cfg.next_on_nodata and rcode == 0 and not answers)

    def _try_timeout(self, left: float) -> float:
        """How long one try waits: `read_timeout`, but never past what is `left` of the deadline."""
        return min(self.read_timeout, left) if self.read_timeout > 0 else left

    def _admit(self) -> bool:
        """Take a max_concurrent slot; False (and counted) when they are all in use."""
        cfg = self.cfg
        if cfg.max_concurrent and self.concurrent >= cfg.max_concurrent:
            METRICS.max_concurrent_rejects += 1
            log.debug("concurrent queries exceeded maximum %d", cfg.max_concurrent)
            return False
        self.concurrent += 1
        return True

    async def resolve(self, req: Request) -> tuple[DNSRecord, bool]:
        """The reply for `req`, and whether it came from an upstream (False: our REFUSED or FORMERR).

        Raises UpstreamError or NoHealthyUpstream when no upstream answered within the deadline.
        """
        if not self._admit():
            return req.reply(REFUSED), False
        try:
            reply = await self.run(upstream_query(req), req.proto, _parse_reply)
        finally:
            self.concurrent -= 1
        if reply is None:
            log.debug("wrong reply for %s %s", req.qname, req.type_name)
            return req.reply(FORMERR), False
        reply.header.id = req.msg.header.id
        return reply, True

    async def relay(self, query: bytes, proto: str, resume: Resume | None = None) -> tuple[bytes, bool]:
        """`resolve` for a query that is only bytes, in a task: the reply's bytes with the query's ID and
        without its OPT, unparsed, and whether it came from an upstream.

        `query` must be relayable as it is (see `relayable`). With `resume`, the query already holds its
        max_concurrent slot (taken by `relay_start`) and carries on after its first attempt.
        """
        if resume is None and not self._admit():
            return error_reply(query, REFUSED), False
        try:
            data = await self.run(query, proto, partial(_relayed_reply, query), resume)
        finally:
            self.concurrent -= 1
        if data is None:
            return error_reply(query, FORMERR), False
        return data, True

    def relay_start(self, query: bytes, proto: str, done: RelayDone[A], arg: A) -> None:
        """The relay: `done(arg, outcome)` is called exactly once, with the reply bytes (see `relay`) or the
        exception that left none.

        The common case goes without a task or a future: a UDP query, no TCP or failover options, and
        the first upstream in policy order up with its UDP channel open. A failed first attempt carries
        on as `run` does, in a task then, since retries and timeouts are the rare case; so does any query
        the common case does not cover.
        """
        if proto != "udp" or not self.quick:
            self._spawn(self._relay_task(query, proto, None, done, arg))
            return
        if not self._admit():
            done(arg, error_reply(query, REFUSED))
            return
        ups = self.policy(self.upstreams)
        up = ups[0]
        loop = asyncio.get_running_loop()
        now = loop.time()
        try:
            # The query's state rides in one tuple to the reply callback (bound once, in __init__).
            if not up.down(self.max_fails) and up.ask(query, self._try_timeout(self.deadline), self._on_first_reply,
                                                      (query, proto, ups, up, now, done, arg), loop):
                return
        except BaseException:
            self.concurrent -= 1  # sending raised: the slot is not held
            raise
        # Not sent (the first upstream is down, or its channel is not open yet): a task carries on in the
        # same policy order (a second draw would move round_robin on twice), holding the slot taken here.
        self._spawn(self._relay_task(query, proto, Resume(ups, now + self.deadline, None, 0), done, arg))

    def _first_reply(self, state: FirstTry, data: bytes | None, error: Exception | None) -> None:
        """The first attempt of `relay_start` is over: what `run` does with its outcome."""
        query, proto, ups, up, start, done, arg = state
        loop = asyncio.get_running_loop()
        if data is not None:
            METRICS.observe(up.addr, data[3] & 0x0F, loop.time() - start)
            out = upstream_reply(query, data)  # the reply checked, without its OPT (the server adds ours)
            if out != MALFORMED:
                self.concurrent -= 1
                done(arg, out if isinstance(out, bytes) else error_reply(query, FORMERR))  # FOREIGN: FORMERR
                return
            error = UpstreamError(f"dns: bad reply from {up.addr}: malformed reply from upstream")
        if self.max_fails:
            up.healthcheck()
        self._spawn(self._relay_task(query, proto, Resume(ups, start + self.deadline, error, 1), done, arg))

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay_task(self, query: bytes, proto: str, resume: Resume | None, done: RelayDone[A],
                          arg: A) -> None:
        outcome: bytes | Exception
        try:
            outcome, _ = await self.relay(query, proto, resume)
        except Exception as e:  # UpstreamError, NoHealthyUpstream: the caller answers SERVFAIL
            outcome = e
        done(arg, outcome)

    async def run(self, query: bytes, proto: str, convert: Callable[[bytes], T],
                  resume: Resume | None = None) -> T | None:
        """Ask the upstreams in policy order until one gives a usable reply, converted by `convert`.

        None means the reply did not match the query (the client gets FORMERR). `convert` raising
        ValueError makes the reply count as an upstream failure. Raises UpstreamError or
        NoHealthyUpstream when no upstream answered within the deadline. `resume` carries on after
        a first attempt made without a task (see `relay_start`).
        """
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        # The client's transport by default; prefer_udp starts on UDP whatever the client used.
        tcp = cfg.force_tcp or (not cfg.prefer_udp and proto != "udp")
        retry_tc = cfg.prefer_udp and not cfg.force_tcp
        error: Exception | None = None
        if resume is None:
            deadline = loop.time() + self.deadline
            ups = self.policy(self.upstreams)
            i = attempts = 0
        else:
            ups, i, attempts, error, deadline = resume.ups, resume.tried, resume.tried, resume.error, resume.deadline
        n = len(ups)
        max_fails, max_attempts = self.max_fails, self.max_attempts
        down = failovers = 0
        while loop.time() < deadline and (max_attempts == 0 or attempts < max_attempts):
            if i >= n:
                i = down = 0  # every upstream had its turn: start again from the first
            up = ups[i]
            i += 1
            if up.down(max_fails):
                down += 1
                if down < n:
                    continue
                anyone = self._all_down()
                if anyone is None:
                    break
                up = anyone
            try:
                data = await self._exchange(up, query, tcp, retry_tc, deadline, loop)
                if not _answers(up, query, data):
                    return None
                if data[3] & 0x0F in self.failover and failovers + 1 < n:
                    failovers += 1  # try the next upstream; the last one's reply is returned as it is
                    continue
                try:
                    return convert(data)
                except ValueError as e:
                    raise UpstreamError(f"dns: bad reply from {up.addr}: {e}") from None
            except UpstreamError as e:
                error = e
                self._failed(up)
                attempts += 1
                if down < n:
                    continue
                break
        raise error if error is not None else NoHealthyUpstream()

    def _all_down(self) -> Upstream | None:
        """Every upstream is down: the health checks are what is broken, most likely. The upstream to try
        anyway, or None under `failfast_all_unhealthy`."""
        METRICS.hc_broken += 1
        if self.cfg.failfast_all_unhealthy:
            return None
        return random.choice(self.upstreams)

    def _failed(self, up: Upstream) -> None:
        """An attempt at `up` failed: with max_fails set, that starts its health checks."""
        if self.max_fails:
            up.healthcheck()

    async def _exchange(self, up: Upstream, query: bytes, tcp: bool, retry_tc: bool, deadline: float,
                        loop: asyncio.AbstractEventLoop) -> bytes:
        start = loop.time()
        data = await up.exchange(query, tcp, self._try_timeout(deadline - start))
        if retry_tc and not tcp and data[2] & 0x02:
            data = await up.exchange(query, True, self._try_timeout(deadline - loop.time()))
        METRICS.observe(up.addr, data[3] & 0x0F, loop.time() - start)
        return data

    async def close(self) -> None:
        for up in self.upstreams:
            await up.close(grace=self.deadline)


class Forward(Plugin):
    """All `forward` stanzas of a server block, tried in Corefile order (CoreDNS chains them)."""

    name = "forward"
    any_class = True  # every class is forwarded

    def __init__(self, configs: list[ForwardConfig]) -> None:
        self.configs = configs
        self.stanzas = [Stanza(c) for c in configs]
        self._tasks: set[asyncio.Task[None]] = set()  # relays trying the stanzas in turn

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        name = req.name
        stanzas = self.stanzas
        last = len(stanzas) - 1
        for i, st in enumerate(stanzas):
            if not st.matches(name):
                continue
            reply, from_upstream = await st.resolve(req)
            # `next` only ever hands over to another forward stanza, never to the plugins after us.
            if i < last and from_upstream and st.passes_on(reply.header.rcode, len(reply.rr)):
                continue
            return reply
        return await next(req)

    def relay_starter(self, query: bytes) -> RelayStart | None:
        """What relays `query` as bytes, never parsing it or its reply (the server's relay path), or None:
        not for that path (see `relayable`), or no stanza takes the name; the chain answers then.

        The answer holds for any query with the same question bytes, so the server may remember it. It is
        the first stanza that takes the name, unless that one could hand its reply on to a following
        stanza (`next`, `next_on_nodata`): then the stanzas are tried in turn, as `serve` does, in a task.
        The outcome is the reply's bytes (the query's ID, the upstream's message without its OPT, or our
        REFUSED / FORMERR), an exception where `serve` raises, or None when `next` handed the query on
        past the last stanza that takes it.
        """
        found = relayable(query)
        if found is None:
            return None
        stanzas = self.stanzas
        for i, st in enumerate(stanzas):
            if st.matches(found[0]):
                hands_on = i < len(stanzas) - 1 and (st.next_rcodes or st.cfg.next_on_nodata)
                return self._relay_on if hands_on else st.relay_start
        return None

    def _relay_on(self, query: bytes, proto: str, done: RelayDone[A], arg: A) -> None:
        task = asyncio.get_running_loop().create_task(self._relay_stanzas(query, proto, done, arg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay_stanzas(self, query: bytes, proto: str, done: RelayDone[A], arg: A) -> None:
        """The stanzas that take the query's name, in turn, while `next` hands their replies on."""
        outcome: bytes | Exception | None = None
        try:
            name = (relayable(query) or ("", False))[0]
            stanzas = self.stanzas
            last = len(stanzas) - 1
            for i, st in enumerate(stanzas):
                if not st.matches(name):
                    continue
                data, from_upstream = await st.relay(query, proto)
                if i < last and from_upstream and st.passes_on(data[3] & 0x0F, (data[6] << 8) | data[7]):
                    continue
                outcome = data
                break
        except Exception as e:
            outcome = e
        done(arg, outcome)

    async def relay(self, query: bytes, proto: str) -> bytes | None:
        """The relay in a task, for callers that await (`relay_starter`'s relay, settled in a future):
        the reply's bytes, or None if the query is not for the relay path. Raises like `serve`."""
        start = self.relay_starter(query)
        if start is None:
            return None
        fut: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        start(query, proto, _settle, fut)
        return await fut

    async def stop(self) -> None:
        for st in self.stanzas:
            await st.close()
