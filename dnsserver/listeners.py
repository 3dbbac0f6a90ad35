"""UDP and TCP listeners. They only move bytes; the Dispatcher they point at does the DNS.

On reload a listener whose address is unchanged keeps its socket and just gets a new Dispatcher,
so no query is lost while the configuration changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import ssl
from typing import Protocol

from dnsserver.dispatch import Dispatcher
from dnsserver.logs import core_log
from dnsserver.mmsg import Batch, SockAddr
from dnsserver.plugin import StreamTimeouts

log = core_log

TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP connection may sit with no query in flight (CoreDNS: 10s)
TCP_READ_TIMEOUT = 3.0  # seconds for a new connection's first query, or for the rest of a query begun (CoreDNS: 3s)
TCP_WRITE_TIMEOUT = 5.0  # seconds for a reply's bytes to leave once written (CoreDNS: 5s)
TCP_MAX_INFLIGHT = 128  # pipelined queries served at once on one connection; reading pauses beyond this
# Descriptors kept free of stream connections: for forward's upstream sockets, API-server watches, files
# and reloads. Without a cap, clients that hold connections open can take every descriptor the process
# may have, and then it is not only new TCP clients that fail (accept gets EMFILE) but everything else
# that needs a descriptor.
FD_RESERVE = 1024
UDP_RCVBUF = 4 << 20  # absorb bursts (dnsperf, pod start storms) instead of dropping in the kernel
UDP_BATCH = 64  # datagrams per recvmmsg (or recvfrom loop)
UDP_ROUNDS = 4  # batches read per wake-up before yielding to the event loop
UDP_MAX = 8192  # larger than any query a client may send over UDP (EDNS0 sizes stop at 4096 in practice)


def client_address(addr: SockAddr) -> tuple[str, int]:
    """A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d; the client is a.b.c.d."""
    host = addr[0]
    if host.startswith("::ffff:") and "." in host:
        return host[7:], addr[1]
    # An IPv6 address's (host, port, flow, scope) passes as the client as it is: only [0] and [1] are
    # ever read, and no tuple is made per query.
    return addr  # type: ignore[return-value]


def make_socket(host: str, port: int, kind: socket.SocketKind) -> socket.socket:
    """A socket bound to host:port. Host "" is every address: IPv6 dual-stack where available."""
    if host == "":
        try:
            sock = socket.socket(socket.AF_INET6, kind)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            bind_host = "::"
        except OSError:
            sock = socket.socket(socket.AF_INET, kind)
            bind_host = "0.0.0.0"
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, kind)
        bind_host = host
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if kind == socket.SOCK_DGRAM:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        sock.bind((bind_host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class UdpReader:
    """Reads a UDP socket from one readiness callback, many datagrams per wake-up.

    A protocol callback per datagram costs ~0.6 µs more per query than draining the socket in a loop
    (measured with uvloop under dnsperf), and recvmmsg/sendmmsg batches save another 0.45-0.85 µs over a
    recvfrom/sendto pair per query (see mmsg.py); the plain loop remains where those are unavailable.
    Hot-path answers are sent inline; anything else becomes a task. Each wake-up reads a bounded number
    of datagrams so other callbacks (TCP, timers) are not starved.
    """

    def __init__(self, listener: Listener, sock: socket.socket) -> None:
        self.listener = listener
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.batch = Batch(sock, UDP_BATCH, UDP_MAX, client_address) if Batch.available() else None
        # Bound once, not per query: where replies that are not there at once go (see Dispatcher.submit).
        self._send_raw, self._send_addr = self._later_raw, self._later_addr
        self.loop.add_reader(sock.fileno(), self._readable if self.batch is None else self._readable_batched)

    def _readable_batched(self) -> None:
        # The dispatcher is read per wake-up: a reload swaps it. Only ever the reader when there is a batch
        # (see __init__): no None check per wake-up.
        serve, submit, send = self.batch.serve, self.listener.dispatcher.submit, self._send_raw  # type: ignore[union-attr]
        for _ in range(UDP_ROUNDS):
            try:
                if serve(submit, send) < UDP_BATCH:
                    return
            except OSError as e:  # ICMP errors for earlier replies (client went away): nothing to do
                log.debug("udp error: %s", e)

    def _later_raw(self, out: bytes | None, raw: bytes) -> None:
        """Send a later reply (relayed, or from the chain) to the sender whose raw sockaddr is `raw`. Such
        replies complete one by one: they are queued so that one sendmmsg carries all those of a burst."""
        batch = self.batch
        if out is None or batch is None or self.closed:
            return
        if not batch.outbox.put(out, raw, self.loop):
            self.send(out, batch.address(raw))

    def _later_addr(self, out: bytes | None, addr: SockAddr) -> None:
        if out is not None:
            self.send(out, addr)

    def _readable(self) -> None:
        # The dispatcher is read per wake-up: a reload swaps it.
        recv, submit, send = self.sock.recvfrom, self.listener.dispatcher.submit, self._send_addr
        for _ in range(UDP_BATCH * UDP_ROUNDS):
            try:
                data, addr = recv(UDP_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # ICMP errors for earlier replies (client went away): nothing to do
                log.debug("udp error: %s", e)
                continue
            # Replies go to `addr` as the socket gave it; plugins and logs see the client as it is.
            out = submit(data, client_address(addr), "udp", send, addr)
            if out is not None:
                self.send(out, addr)

    def send(self, out: bytes, addr: SockAddr) -> None:
        if self.closed:
            return
        try:
            self.sock.sendto(out, addr)
        except (BlockingIOError, InterruptedError):
            pass  # the send buffer is full: UDP may drop, and the client asks again
        except OSError as e:
            log.debug("udp send to %s: %s", addr[0], e)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.batch is not None:
                self.batch.outbox.queued = 0  # a flush still scheduled must not write to a reused fd
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


def max_stream_connections() -> int:
    """The stream connections (TCP and DNS over TLS, all listeners together) the process keeps open at
    once: its descriptor limit less FD_RESERVE, at least 64."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(soft - FD_RESERVE, 64)


class TcpProtocol(asyncio.Protocol):
    """One TCP connection: 2-byte length framing; pipelined queries are answered as they complete."""

    open_total = 0  # connections open now, every listener's together (they share the descriptor table)
    limit = max_stream_connections()  # read at import; tests lower it
    refused = 0  # connections closed at once because `limit` were open

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.buf = bytearray()
        self.inflight = 0
        self.paused = False
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.idle: asyncio.TimerHandle | None = None
        self.writing: asyncio.TimerHandle | None = None  # the write timeout, while replies wait to leave
        self.queries = 0  # queries read on this connection (the timeouts plugin's maxtcpqueries)
        self.last = False  # the last query the connection may ask has been read: close once answered
        self._send = self._later  # bound once: every query that is not answered at once passes it
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if TcpProtocol.open_total >= TcpProtocol.limit:
            # Full: this one goes at once, so the descriptors held back stay free (see FD_RESERVE).
            TcpProtocol.refused += 1
            transport.abort()  # type: ignore[attr-defined]  # a stream transport (see below)
            return
        TcpProtocol.open_total += 1
        self.counted = True
        # A stream transport, though typed as the base class; uvloop's does not even subclass
        # asyncio.Transport, so no isinstance can narrow it.
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer = client_address(peer)
        self.listener.conns.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.counted = False
            TcpProtocol.open_total -= 1
        self.listener.conns.discard(self)
        for timer in (self.idle, self.writing):
            if timer is not None:
                timer.cancel()
        self.transport = None

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        # A query must arrive, or finish arriving, within the read timeout: the first on a new connection
        # and the rest of one begun. Between queries the connection may sit for the idle timeout.
        reading = bool(self.buf) or self.queries == 0
        timeout = self.listener.read_timeout if reading else self.listener.idle_timeout
        self.idle = asyncio.get_running_loop().call_later(timeout, self._on_idle)

    def _write(self, data: bytes) -> None:
        """Send `data`. Replies that wait to leave (the client does not read) are watched: see _on_write_timeout."""
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        if self.writing is None:
            pending = self.transport.get_write_buffer_size()
            if pending:
                self._arm_write(pending)

    def _arm_write(self, pending: int) -> None:
        self.writing = asyncio.get_running_loop().call_later(self.listener.write_timeout, self._on_write_timeout,
                                                             pending)

    def _on_write_timeout(self, pending_before: int) -> None:
        """The write timeout: drop the connection if the bytes waiting to leave did not shrink since the timer
        was armed, else watch what is left (a slow reader is not a stuck one)."""
        self.writing = None
        if self.transport is None:
            return
        pending = self.transport.get_write_buffer_size()
        if pending and pending >= pending_before:
            self.transport.abort()
        elif pending:
            self._arm_write(pending)

    def _close_if_done(self) -> None:
        """After the connection's last query (maxtcpqueries) is answered: close (what is buffered still goes)."""
        if self.last and self.inflight == 0 and self.transport is not None:
            self.transport.close()

    def _on_idle(self) -> None:
        if self.inflight == 0 and self.transport is not None:
            self.transport.close()
        else:
            self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self.last or not self.counted:
            # Bytes already on their way when reading paused (the connection asks nothing more), or on a
            # connection refused at connection_made.
            return
        self.buf += data
        submit = self.listener.dispatcher.submit  # read per segment: a reload swaps the dispatcher
        while len(self.buf) >= 2:
            n = (self.buf[0] << 8) | self.buf[1]
            if n == 0:  # a zero-length message is not DNS; nothing sensible to answer
                if self.transport is not None:
                    self.transport.close()
                return
            if len(self.buf) < 2 + n:
                break
            msg = bytes(self.buf[2:2 + n])
            del self.buf[:2 + n]
            self.queries += 1
            if self.queries == self.listener.max_queries:
                # The connection's last query: nothing more is read, it closes once this is answered.
                self.last = True
                self.buf.clear()
                if self.transport is not None:
                    self.transport.pause_reading()
            self.inflight += 1  # before submit: a reply may come back before it returns
            out = submit(msg, self.peer, "tcp", self._send, None)
            if out is not None:
                self.inflight -= 1
                self._write(len(out).to_bytes(2, "big") + out)
            if self.last:
                self._close_if_done()
                return
        self._arm_idle()
        if self.inflight >= TCP_MAX_INFLIGHT and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _later(self, out: bytes | None, _dest: None) -> None:
        """A reply that was not there at once (relayed, or from the chain); None: nothing to send."""
        try:
            if out is not None:
                # A reply may go on over several messages (AXFR): frame each, in order.
                frames = [out, *getattr(out, "more", ())]
                self._write(b"".join(len(m).to_bytes(2, "big") + m for m in frames))
        finally:
            self.inflight -= 1
            self._close_if_done()
            if self.paused and self.inflight < TCP_MAX_INFLIGHT // 2 and self.transport is not None:
                self.paused = False
                self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Connection(Protocol):
    """An open stream connection of a listener (TCP, DNS over TLS or HTTPS): closed when the listener is."""

    def close(self) -> None: ...


class Listener:
    """One address and port: a UDP endpoint and a TCP server sharing a Dispatcher (see doh.DohListener for
    https://)."""

    def __init__(self, host: str, port: int, dispatcher: Dispatcher, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls  # DNS over TLS: TCP only, no UDP endpoint
        self.host = host
        self.port = port
        self.dispatcher = dispatcher
        # The queries in flight in tasks, whichever dispatcher started them: a dispatcher that replaces this
        # one on reload is given the same set (see Dispatcher's `tasks`), so `close` waits for them all.
        self.tasks = dispatcher.tasks
        self.conns: set[Connection] = set()
        self.udp: UdpReader | None = None
        self.tcp: asyncio.Server | None = None
        self.idle_timeout = TCP_IDLE_TIMEOUT
        self.read_timeout = TCP_READ_TIMEOUT
        self.write_timeout = TCP_WRITE_TIMEOUT
        self.max_queries = -1  # queries one connection may ask before it is closed; -1: no limit

    def set_timeouts(self, t: StreamTimeouts | None) -> None:
        """The timeouts plugin's settings (None: CoreDNS's defaults); each connection reads them when it next
        arms a timer."""
        t = t or StreamTimeouts()
        self.idle_timeout = TCP_IDLE_TIMEOUT if t.idle is None else t.idle
        self.read_timeout = TCP_READ_TIMEOUT if t.read is None else t.read
        self.write_timeout = TCP_WRITE_TIMEOUT if t.write is None else t.write
        self.max_queries = -1 if t.max_queries is None else t.max_queries

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self.tls is not None:
            tsock = make_socket(self.host, self.port, socket.SOCK_STREAM)
            self.port = tsock.getsockname()[1]
            self.tcp = await loop.create_server(lambda: TcpProtocol(self), sock=tsock, backlog=1024, ssl=self.tls,
                                                ssl_handshake_timeout=10.0)
            return
        # Port 0 (tests) must give UDP and TCP the same port: take UDP's, retry if TCP's is taken.
        for _ in range(20):
            usock = make_socket(self.host, self.port, socket.SOCK_DGRAM)
            port = usock.getsockname()[1]
            try:
                tsock = make_socket(self.host, port, socket.SOCK_STREAM)
            except OSError:
                usock.close()
                if self.port != 0:
                    raise
                continue
            break
        else:
            raise OSError(f"no free port for UDP and TCP on {self.host or '*'}")
        self.port = port
        self.udp = UdpReader(self, usock)
        self.tcp = await loop.create_server(lambda: TcpProtocol(self), sock=tsock, backlog=1024)

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting, let queries in flight finish (up to `grace` seconds), then close connections."""
        if self.tcp is not None:
            self.tcp.close()
        pending = set(self.tasks)
        if pending:
            await asyncio.wait(pending, timeout=grace)
        if self.udp is not None:
            self.udp.close()
        for c in list(self.conns):
            c.close()
        if self.tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.tcp.wait_closed(), 1.0)
