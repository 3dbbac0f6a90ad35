"""One upstream server: how queries reach it (UDP, TCP, DNS over TLS) and its health state.

UDP goes through ONE connected socket per upstream. Replies are matched to waiting queries by
message ID (a dict of futures): no socket per query, no task per query, the kernel filters out
datagrams from anyone else. IDs are random and unique among the queries in flight on that socket.

TCP and TLS connections are pooled, one query at a time each, as CoreDNS does: a connection goes
back to the pool after its reply and is reused if asked for again within `expire` (and, with
`max_age`, while younger than that). A pooled connection the upstream has meanwhile closed is
thrown away and the query retried on another, without counting as an upstream failure.
"""

from __future__ import annotations

import asyncio
import collections
import os
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypedDict, TypeVar

from dnslib import DNSRecord

from dnsplugins.forward.config import UpstreamSpec
from dnsplugins.forward.metrics import METRICS, ForwardMetrics
from dnsserver.logs import plugin_log
from dnsserver.mmsg import Outbox

if TYPE_CHECKING:
    from dnsplugins.forward.health import HealthCheck
    from dnsserver.plugin import ServerInstance


log = plugin_log("forward")
OUTBOX_SLOTS, OUTBOX_SIZE = 64, 4096  # queries queued per sendmmsg to one upstream, and their largest size
SWEEP_INTERVAL = 0.05  # seconds between checks for timed-out callback waiters (their timeouts' granularity)


A = TypeVar("A")  # the state a caller of `Upstream.ask` gets back with the reply


class _Pending(Protocol):
    """A query waiting on a UDP channel for its reply: an asyncio future, or a callback `_Waiter`."""

    def done(self) -> bool: ...

    def set_result(self, result: bytes, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


class _Watched(_Pending, Protocol):
    """A callback waiter as the channel's sweep sees it: timed out once past its deadline unless finished."""

    @property
    def finished(self) -> bool: ...

    @property
    def deadline(self) -> float: ...


class _DialOptions(TypedDict, total=False):
    """What `_dial` passes on to asyncio.open_connection."""

    local_addr: tuple[str, int]
    ssl: ssl.SSLContext
    server_hostname: str
    ssl_handshake_timeout: float


class UpstreamError(Exception):
    """The upstream did not give a usable reply (timeout, refused, reset, TLS failure, garbage)."""


class _StaleConnection(Exception):
    """A pooled connection turned out to be closed by the peer: retry on another, not a failure."""


class _Ids:
    """Random 16-bit message IDs, drawn from the OS in batches (one getrandom call per 1024 IDs)."""

    __slots__ = ("buf", "pos")

    def __init__(self) -> None:
        self.buf = b""
        self.pos = 0

    def next(self) -> int:
        pos = self.pos
        if pos >= len(self.buf):
            self.buf, pos = os.urandom(2048), 0
        self.pos = pos + 2
        return (self.buf[pos] << 8) | self.buf[pos + 1]


IDS = _Ids()


def _strerror(e: OSError) -> str:
    return (e.strerror or str(e)).lower()


def _sockname(transport: asyncio.BaseTransport | None) -> str:
    try:
        name = transport.get_extra_info("sockname") if transport is not None else None
    except Exception:
        name = None
    if not name:
        return "?"
    host = f"[{name[0]}]" if ":" in name[0] else name[0]
    return f"{host}:{name[1]}"


class _UdpChannel(asyncio.DatagramProtocol):
    """The connected UDP socket of one upstream and the queries waiting on it, by ID."""

    def __init__(self, loop: asyncio.AbstractEventLoop, remote: str) -> None:
        self.remote = remote
        self.pending: dict[int, _Pending] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.ready: asyncio.Future[None] = loop.create_future()
        self.closed = False
        self.local = "?"
        self.watch: collections.deque[_Watched] = collections.deque()  # callback waiters, oldest first
        self.outbox: Outbox | None = None
        self.sweeper: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram transport, though typed as the base class; uvloop's does not even subclass
        # asyncio.DatagramTransport, so no isinstance can narrow it.
        self.transport = transport  # type: ignore[assignment]
        self.local = _sockname(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and Outbox.available():
            # Queries started without a task leave in bursts through one sendmmsg (see Upstream.ask).
            self.outbox = Outbox(sock.fileno(), OUTBOX_SLOTS, OUTBOX_SIZE, self.error_received)
        if not self.ready.done():
            self.ready.set_result(None)

    def free_id(self) -> int:
        """A random message ID that no query in flight on this socket uses (replies are matched by it)."""
        pending = self.pending
        qid = IDS.next()
        while qid in pending:
            qid = IDS.next()
        return qid

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) < 12:
            return
        fut = self.pending.get((data[0] << 8) | data[1])
        # An ID nobody waits for is a late or forged reply: dropped, as CoreDNS drops out-of-order ones.
        if fut is not None and not fut.done():
            fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error (port unreachable...) cannot be tied to one query: every query waiting on this
        # upstream fails now instead of at its timeout; the upstream is unreachable for all of them.
        err = UpstreamError(f"read udp {self.local}->{self.remote}: read: "
                            f"{_strerror(exc) if isinstance(exc, OSError) else exc}")
        self._fail_all(err)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.outbox is not None:
            self.outbox.queued = 0  # a flush still scheduled must not write to a reused fd
        self._fail_all(UpstreamError(f"read udp {self.local}->{self.remote}: use of closed network connection"))

    def fail(self, err: UpstreamError) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(err)
            self.ready.exception()  # retrieved: nobody may be waiting, and that is fine
        self._fail_all(err)

    def _fail_all(self, err: UpstreamError) -> None:
        for fut in list(self.pending.values()):  # a callback waiter removes itself as it finishes
            if not fut.done():
                fut.set_exception(err)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time out the callback waiters (queued in `watch` by `Upstream.ask`) whose deadline has passed.

        One sweep timer per channel instead of a timer per query (a uvloop call_later and cancel cost
        ~1.4 µs, a large part of a relayed query): waiters are queued in the order they were sent,
        which is deadline order since a stanza's first attempts all have the same timeout; finished
        ones are dropped as the sweep reaches them.
        """
        watch, now = self.watch, loop.time()
        while watch:
            w = watch[0]
            if not w.finished and w.deadline > now:
                break
            watch.popleft()
            if not w.finished:
                self.time_out(w)
        self.sweeper = loop.call_later(SWEEP_INTERVAL, self.sweep, loop) if watch else None

    def time_out(self, fut: _Pending) -> None:
        if not fut.done():
            fut.set_exception(UpstreamError(f"read udp {self.local}->{self.remote}: i/o timeout"))


class _Waiter(Generic[A]):
    """A query waiting on a UDP channel that is told its outcome by a callback instead of a future.

    It answers to the calls the channel makes of a future (done, set_result, set_exception), so both
    kinds wait in the same table; what it saves is the task a future needs someone to await in.
    `callback(arg, reply, error)` is called once; `arg` is the caller's state for this query, so
    callers need not make a closure per query.
    """

    __slots__ = ("arg", "callback", "deadline", "finished", "pending", "qid")

    def __init__(self, callback: Callable[[A, bytes | None, UpstreamError | None], None], arg: A,
                 qid: int, pending: dict[int, _Pending], deadline: float) -> None:
        self.callback: Callable[[A, bytes | None, UpstreamError | None], None] | None = callback
        self.arg: A = arg
        self.finished = False
        self.deadline = deadline
        self.qid = qid
        self.pending = pending

    def done(self) -> bool:
        return self.finished

    def set_result(self, data: bytes | None, err: UpstreamError | None = None) -> None:
        callback, arg = self.callback, self.arg
        if callback is None:
            return  # told already (the channel asks `done` first; this is the guard behind that)
        self.finished = True
        pending = self.pending
        if pending.get(self.qid) is self:
            del pending[self.qid]
        # Finished waiters may sit in the sweep queue a while: they let go of the query's state now.
        # (arg is never read again: callback, cleared with it, is what says the waiter is told already.)
        self.callback = self.arg = None  # type: ignore[assignment]
        try:
            callback(arg, data, err)
        except Exception:
            # Raised into the channel's datagram_received it would close the channel for every query.
            log.exception("reply callback failed")

    def set_exception(self, err: BaseException) -> None:
        self.set_result(None, err if isinstance(err, UpstreamError) else UpstreamError(str(err)))


class _StreamConn:
    """One TCP or TLS connection to an upstream (2-byte length framing)."""

    __slots__ = ("created", "local", "proto", "reader", "remote", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, now: float, remote: str,
                 proto: str) -> None:
        self.reader = reader
        self.writer = writer
        self.created = now
        self.used = now
        self.local = _sockname(writer.transport)
        self.remote = remote
        self.proto = proto

    def alive(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, query: bytes, timeout: float) -> bytes:
        qid = IDS.next()
        msg = qid.to_bytes(2, "big") + query[2:]
        net = "tcp" if self.proto == "tcp" else "tcp-tls"
        try:
            self.writer.write(len(msg).to_bytes(2, "big") + msg)
            return await asyncio.wait_for(self._read(qid), max(timeout, 0.0))
        except TimeoutError:
            raise UpstreamError(f"read {net} {self.local}->{self.remote}: i/o timeout") from None
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as e:
            raise _StaleConnection(f"read {net} {self.local}->{self.remote}: {str(e) or 'EOF'}") from None
        except OSError as e:
            raise _StaleConnection(f"read {net} {self.local}->{self.remote}: {_strerror(e)}") from None

    async def _read(self, qid: int) -> bytes:
        while True:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
            body = await self.reader.readexactly(n)
            if n >= 12 and (body[0] << 8) | body[1] == qid:
                return body
            # A reply to an earlier query that timed out on this connection: skip it.


class Upstream:
    """One TO of a forward stanza."""

    def __init__(
        self,
        spec: UpstreamSpec,
        *,
        expire: float = 10.0,
        max_idle_conns: int = 0,
        max_age: float = 0.0,
        tls_context: ssl.SSLContext | None = None,
        server_name: str = "",
        source_address: str | None = None,
        metrics: ForwardMetrics = METRICS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = spec.host
        self.port = spec.port
        self.addr = spec.addr  # the `to` label
        self.tls = spec.transport == "tls"
        self.tls_context = tls_context
        self.server_name = server_name or spec.server_name or spec.host
        self.stream_proto = "tcp-tls" if self.tls else "tcp"
        self.expire = expire
        self.max_idle_conns = max_idle_conns
        self.max_age = max_age
        self.source_address = source_address
        self.metrics = metrics
        self.clock = clock  # tests replace it to age pooled connections without sleeping
        self.fails = 0  # consecutive failed health checks; reset by one that succeeds
        self.health: HealthCheck | None = None
        self.closed = False
        self._retire_at = 0.0  # after close(): until when queries already in flight may still use us
        self._udp: _UdpChannel | None = None
        self._idle: list[_StreamConn] = []  # oldest first; reuse takes the most recently used
        self._sweep_handle: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"Upstream({'tls://' if self.tls else ''}{self.addr})"

    def down(self, max_fails: int) -> bool:
        return max_fails != 0 and self.fails > max_fails

    def healthcheck(self) -> None:
        """Start probing this upstream (unless a probe loop already runs) after a failed exchange."""
        if self.health is not None:
            self.health.trigger()

    async def exchange(self, query: bytes, tcp: bool, timeout: float, pooled: bool = True) -> bytes:
        """Send `query` (its ID is replaced by one of ours) and return the raw reply with our ID.

        Raises UpstreamError on timeout or any network failure; never returns a reply to another query.
        """
        if self.tls or tcp:
            return await self._stream_exchange(query, timeout, pooled)
        return await self._udp_exchange(query, timeout)

    # -- UDP -----------------------------------------------------------------------------------

    def _channel(self, loop: asyncio.AbstractEventLoop) -> _UdpChannel:
        ch = self._udp
        if ch is not None and not ch.closed:
            self.metrics.conn(self.addr, "udp", True)
            return ch
        if self.closed and loop.time() >= self._retire_at:
            raise UpstreamError(f"upstream {self.addr} is shut down")
        self.metrics.conn(self.addr, "udp", False)
        ch = _UdpChannel(loop, self.addr)
        self._udp = ch
        if self.closed:
            loop.call_at(self._retire_at, self._close_udp)  # a retry of an old query: a socket on loan
        loop.create_task(self._open_udp(loop, ch))
        return ch

    async def _open_udp(self, loop: asyncio.AbstractEventLoop, ch: _UdpChannel) -> None:
        local = (self.source_address, 0) if self.source_address else None
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: ch, remote_addr=(self.host, self.port),
                                                               local_addr=local)
        except OSError as e:
            ch.fail(UpstreamError(f"dial udp {self.addr}: {_strerror(e)}"))
            return
        if ch.closed:
            transport.close()  # shut down while the socket was opening: nobody else holds it to close it

    async def _udp_exchange(self, query: bytes, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        ch = self._channel(loop)
        if ch.transport is None:
            # Shielded: a query cancelled while the socket opens must not cancel the opening for others.
            await asyncio.shield(ch.ready)
        transport = ch.transport
        assert transport is not None
        pending = ch.pending
        qid = ch.free_id()
        fut: asyncio.Future[bytes] = loop.create_future()
        pending[qid] = fut
        handle = loop.call_later(timeout, ch.time_out, fut)
        try:
            transport.sendto(qid.to_bytes(2, "big") + query[2:])
            return await fut
        finally:
            handle.cancel()
            if pending.get(qid) is fut:
                del pending[qid]

    def ask(self, query: bytes, timeout: float, callback: Callable[[A, bytes | None, UpstreamError | None], None],
            arg: A, loop: asyncio.AbstractEventLoop) -> bool:
        """Send `query` over UDP now and call `callback(arg, reply, None)` or `callback(arg, None, error)`
        later.

        Only on an open channel (False otherwise: use `exchange`, which opens it). The reply carries
        our ID, as with `exchange`; the callback runs exactly once, from the event loop.
        """
        ch = self._udp
        if ch is None or ch.closed or ch.transport is None or self.tls:
            return False
        self.metrics.conn(self.addr, "udp", True)
        pending = ch.pending
        qid = IDS.next()  # free_id, inlined: this runs for every relayed query
        while qid in pending:
            qid = IDS.next()
        w = _Waiter(callback, arg, qid, pending, loop.time() + timeout)
        pending[qid] = w
        ch.watch.append(w)  # timed out by the channel's sweep
        if ch.sweeper is None:
            ch.sweeper = loop.call_later(SWEEP_INTERVAL, ch.sweep, loop)
        out = qid.to_bytes(2, "big") + query[2:]
        if ch.outbox is None or not ch.outbox.put(out, None, loop):
            ch.transport.sendto(out)
        return True

    # -- TCP and TLS ---------------------------------------------------------------------------

    async def _stream_exchange(self, query: bytes, timeout: float, pooled: bool) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            conn = self._take() if pooled else None
            cached = conn is not None
            if pooled:
                self.metrics.conn(self.addr, self.stream_proto, cached)
            if conn is None:
                conn = await self._dial(deadline - loop.time())
            try:
                reply = await conn.exchange(query, deadline - loop.time())
            except _StaleConnection as e:
                conn.close()
                if cached:
                    continue  # the upstream closed it while idle: take another or dial a new one
                raise UpstreamError(str(e)) from None
            except BaseException:
                conn.close()  # a late reply must not be read by the next query on this connection
                raise
            if pooled:
                self._put(conn)
            else:
                conn.close()
            return reply

    async def _dial(self, timeout: float) -> _StreamConn:
        if self.closed and asyncio.get_running_loop().time() >= self._retire_at:
            raise UpstreamError(f"upstream {self.addr} is shut down")
        kwargs: _DialOptions = {}
        if self.source_address:
            kwargs["local_addr"] = (self.source_address, 0)
        if self.tls:
            kwargs["ssl"] = self.tls_context or ssl.create_default_context()
            kwargs["server_hostname"] = self.server_name
            kwargs["ssl_handshake_timeout"] = max(timeout, 0.001)
        net = self.stream_proto
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, **kwargs), max(timeout, 0.0))
        except TimeoutError:
            raise UpstreamError(f"dial {net} {self.addr}: i/o timeout") from None
        except ssl.SSLError as e:
            raise UpstreamError(f"dial {net} {self.addr}: tls: {e.reason or e}") from None
        except OSError as e:
            raise UpstreamError(f"dial {net} {self.addr}: connect: {_strerror(e)}") from None
        return _StreamConn(reader, writer, self.clock(), self.addr, self.stream_proto)

    def _usable(self, conn: _StreamConn, now: float) -> bool:
        if now - conn.used >= self.expire:
            return False
        if self.max_age and now - conn.created >= self.max_age:
            return False
        return conn.alive()

    def _take(self) -> _StreamConn | None:
        now = self.clock()
        idle = self._idle
        while idle:
            conn = idle.pop()
            if self._usable(conn, now):
                return conn
            conn.close()
        return None

    def _put(self, conn: _StreamConn) -> None:
        now = self.clock()
        if self.closed or self.expire <= 0 or not conn.alive() \
                or (self.max_age and now - conn.created >= self.max_age) \
                or (self.max_idle_conns and len(self._idle) >= self.max_idle_conns):
            conn.close()
            return
        conn.used = now
        self._idle.append(conn)
        if self._sweep_handle is None:
            self._sweep_handle = asyncio.get_running_loop().call_later(self.expire, self._sweep)

    def _sweep(self) -> None:
        """Close idle connections past `expire` (the oldest are first), then look again later."""
        self._sweep_handle = None
        now = self.clock()
        keep: list[_StreamConn] = []
        for c in self._idle:
            if self._usable(c, now):
                keep.append(c)
            else:
                c.close()
        self._idle = keep
        if keep and not self.closed:
            self._sweep_handle = asyncio.get_running_loop().call_later(self.expire, self._sweep)

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def close(self, grace: float = 0.0) -> None:
        """Stop probing and pooling. Queries still in flight (a reload replaced this configuration
        while they waited) get up to `grace` seconds to finish before the UDP socket goes."""
        self.closed = True
        self._retire_at = asyncio.get_running_loop().time() + grace
        if self.health is not None:
            await self.health.stop()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        for c in self._idle:
            c.close()
        self._idle = []
        ch = self._udp
        if ch is not None and ch.pending and grace > 0:
            asyncio.get_running_loop().call_later(grace, self._close_udp)
        else:
            self._close_udp()

    def _close_udp(self) -> None:
        ch, self._udp = self._udp, None
        if ch is not None:
            if ch.transport is not None:
                ch.transport.close()
            ch.fail(UpstreamError(f"upstream {self.addr} is shut down"))


def probe_query(domain: str, recursion_desired: bool, qtype: int = 2) -> bytes:
    """`DOMAIN IN QTYPE` (NS by default) as wire bytes, ID 0 since `exchange` replaces it: the health
    check's question, and loop's."""
    labels = [lb for lb in domain.rstrip(".").split(".") if lb]
    name = b"".join(bytes([len(lb.encode())]) + lb.encode() for lb in labels) + b"\x00"
    flags = 0x0100 if recursion_desired else 0
    return bytes([0, 0, flags >> 8, flags & 0xFF, 0, 1, 0, 0, 0, 0, 0, 0]) + name + qtype.to_bytes(2, "big") \
        + b"\x00\x01"


async def ask_once(host: str, port: int, query: bytes, timeout: float) -> bytes:
    """One UDP exchange with host:port outside any forward stanza (loop's probe, `ask_self`): our own
    random ID and only a reply carrying it counts, an ICMP error fails at once. The
    reply comes back with our ID. Raises UpstreamError or OSError.

    Its metrics are its own: such queries are not forwarded traffic and must not show in forward's
    coredns_proxy_* series.
    """
    up = Upstream(UpstreamSpec(host, port), metrics=ForwardMetrics())
    try:
        return await up.exchange(query, False, timeout)
    finally:
        await up.close()


SELF_TIMEOUT = 2.0


async def ask_self(instance: ServerInstance | None, name: str, qtype: int) -> DNSRecord | None:
    """`name` (lower case) of type `qtype` asked of this very server, as CoreDNS's upstream lookups do
    (kubernetes' ExternalName targets, template's CNAME targets): at the listener of the longest zone
    it serves that holds the name. None without a running server, such a listener or a reply."""
    if instance is None:
        return None
    labels = [label for label in name.split(".") if label]
    for i in range(len(labels) + 1):
        where = instance.address_for(".".join(labels[i:]) + "." if i < len(labels) else ".")
        if where is None:
            continue
        try:
            return DNSRecord.parse(await ask_once(where[0], where[1], probe_query(name, True, qtype), SELF_TIMEOUT))
        except (UpstreamError, OSError, ValueError):
            return None
    return None


async def follow_self(instance: ServerInstance | None, target: str, qtype: int, reply: DNSRecord) -> DNSRecord | None:
    """A CNAME-like target asked of this very server (`ask_self`, lower-cased here): its answer records
    and its TC join `reply`. The answer, for callers that read more of it; None adds nothing."""
    answer = await ask_self(instance, target.lower(), qtype)
    if answer is None:
        return None
    for r in answer.rr:
        reply.add_answer(r)
    reply.header.tc = answer.header.tc
    return answer
