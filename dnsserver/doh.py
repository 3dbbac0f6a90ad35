"""DNS over HTTPS (RFC 8484): the listener of an `https://` server block and its connections.

A connection speaks HTTP/2 when TLS's ALPN picked `h2` and HTTP/1.1 otherwise (a client without ALPN,
or a block without the tls plugin, whose listener speaks plain HTTP for a proxy that ends TLS, as
CoreDNS's does). Both are sans-I/O state machines from python-hyper (`h2`, `h11`) fed by one asyncio
Protocol, which only moves bytes between them and the Dispatcher.

`POST /dns-query` carries the query as its body (`Content-Type: application/dns-message`), `GET
/dns-query?dns=` as base64url without padding. The query enters by `Dispatcher.submit` like one over
TCP, and the reply comes back as a 200 with `Content-Type: application/dns-message` and `Cache-Control:
max-age=` its smallest TTL (`wire.reply.max_age`). Queries are submitted with proto "tcp", because that
is what CoreDNS reports for DoH (its `proto` metric label, log's `{proto}`, whoami's `_tcp` record):
the query came over a TCP connection. What tells DoH apart in the metrics is the `server` label,
`https://:PORT`, and coredns_dns_https_responses_total counts each HTTP status.

A request that carries no query is refused, never passed on (`query_from`): 404 for another path, 405
for another method, 415 for a POST of another content type, 413 for a body over 65,535 bytes, 414 for
a request target over 8 KiB, 400 for a missing, repeated or undecodable `dns` parameter and for bytes
that are not a DNS query. CoreDNS answers these 400 but the path (and does not check a POST's content
type); RFC 8484 names the other statuses. A query the server does not answer gives 500, as in CoreDNS.

Every load is bounded: connections per listener (CoreDNS's default of 200), HTTP/2 streams and queries
in flight per connection (more queries than streams means streams reset unanswered: the connection
ends), HTTP/2 frame, header and body sizes, one HTTP/1.1 request at a time, no reading while the client
leaves our replies unread, 5 s for a request to arrive once it has begun, 120 s of idleness (CoreDNS's
ReadTimeout and IdleTimeout).
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h11
from dnslib import DNSRecord

from dnsserver.dispatch import Dispatcher
from dnsserver.listeners import Listener, client_address, make_socket
from dnsserver.logs import core_log
from dnsserver.wire.query import parse_query
from dnsserver.wire.reply import max_age

log = core_log

DOH_PATH = "/dns-query"
DNS_MESSAGE = "application/dns-message"
MAX_MESSAGE = 65535  # the largest DNS message (the TCP length prefix's limit)
MAX_TARGET = 8192  # a GET's target; a query that needs more belongs in a POST
MAX_HEADERS = 16384  # bytes of request line and headers (HTTP/1.1), of the header list (HTTP/2)
MAX_CONNECTIONS = 200  # per listener, as CoreDNS's https block defaults to; more are closed at once
H2_MAX_STREAMS = 100  # concurrent requests on one HTTP/2 connection
HANDSHAKE_TIMEOUT = 10.0
REQUEST_TIMEOUT = 5.0  # seconds a request may take to arrive once its first bytes have
IDLE_TIMEOUT = 120.0  # seconds a connection may sit with no request

_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def query_from(method: str, target: str, content_type: str, body: bytes) -> bytes | int:
    """The DNS query an HTTP request carries, or the HTTP status that refuses it."""
    path, _, params = target.partition("?")
    if path != DOH_PATH:
        return HTTPStatus.NOT_FOUND
    if method == "GET":
        if len(target) > MAX_TARGET:
            return HTTPStatus.REQUEST_URI_TOO_LONG
        values = [v for k, v in parse_qsl(params, keep_blank_values=True) if k == "dns"]
        data = _base64url(values[0]) if len(values) == 1 else None
    elif method == "POST":
        if content_type.partition(";")[0].strip().lower() != DNS_MESSAGE:
            return HTTPStatus.UNSUPPORTED_MEDIA_TYPE
        if len(body) > MAX_MESSAGE:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        data = body
    else:
        return HTTPStatus.METHOD_NOT_ALLOWED
    return data if data is not None and _is_query(data) else HTTPStatus.BAD_REQUEST


def _base64url(text: str) -> bytes | None:
    """RFC 4648's URL alphabet without padding, as RFC 8484 asks; None for anything else."""
    if not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _is_query(data: bytes) -> bool:
    """Whether `data` is a DNS query a DNS client could have sent: a header with QR clear and records that
    parse. (Such a query may still be odd, e.g. two questions: the chain answers those as over TCP.)"""
    if len(data) < 12 or data[2] & 0x80:
        return False
    if parse_query(data) is not None:  # the common, plain query: read without building objects
        return True
    try:
        DNSRecord.parse(data)
    except Exception:  # dnslib raises more than its DNSError on bytes that are not DNS
        return False
    return True


class DohListener(Listener):
    """An https:// listener: one TCP server answering DNS over HTTPS (plain HTTP without a certificate)."""

    def __init__(self, host: str, port: int, dispatcher: Dispatcher, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(host, port, dispatcher, tls)
        self.idle_timeout = IDLE_TIMEOUT

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        sock = make_socket(self.host, self.port, socket.SOCK_STREAM)
        self.port = sock.getsockname()[1]
        self.tcp = await loop.create_server(
            lambda: DohProtocol(self),
            sock=sock,
            backlog=1024,
            ssl=self.tls,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if self.tls else None,
        )


class DohProtocol(asyncio.Protocol):
    """One connection: bytes to its HTTP state machine, requests to the Dispatcher, replies back.

    Each request has a `dest`, where its reply goes: the stream ID on HTTP/2, 0 on HTTP/1.1 (one request
    at a time)."""

    def __init__(self, listener: DohListener) -> None:
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.http: Http1 | Http2 | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.inflight = 0
        self.timer: asyncio.TimerHandle | None = None
        self.partial_since: float | None = None  # when the request now arriving began to
        self.reading = True
        self.write_blocked = False  # the client reads our replies slower than we write them
        self._send = self._reply  # bound once: every query that is not answered at once passes it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though typed as the base class (see TcpProtocol).
        self.transport = transport  # type: ignore[assignment]
        if len(self.listener.conns) >= MAX_CONNECTIONS:
            transport.abort()  # type: ignore[attr-defined]
            return
        self.peer = client_address(transport.get_extra_info("peername") or ("", 0))
        tls = transport.get_extra_info("ssl_object")
        alpn = tls.selected_alpn_protocol() if tls is not None else None
        self.listener.conns.add(self)
        self.http = Http2(self) if alpn == "h2" else Http1(self)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.conns.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None
        self.http = None

    def data_received(self, data: bytes) -> None:
        if self.http is not None:
            self.http.feed(data)
            self._arm()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        self.write_blocked = True
        self.update_reading()

    def resume_writing(self) -> None:
        self.write_blocked = False
        self.update_reading()

    def update_reading(self) -> None:
        """Read while the client takes our replies and, on HTTP/1.1, no request is being served: a client
        that sends faster than it reads is held back by TCP rather than by buffers of ours."""
        want = not self.write_blocked and not (isinstance(self.http, Http1) and self.http.serving)
        if self.transport is not None and want != self.reading:
            self.reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _arm(self) -> None:
        """(Re)set the one timer that closes the connection: a request that takes too long to arrive, or
        idleness. None runs while queries are in flight; their replies set it again."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is None or self.http is None or self.inflight:
            return
        now = self.loop.time()
        if self.http.partial():
            if self.partial_since is None:
                self.partial_since = now
            delay = self.partial_since + REQUEST_TIMEOUT - now
        else:
            self.partial_since = None
            delay = self.listener.idle_timeout
        self.timer = self.loop.call_later(max(delay, 0.0), self.close)

    # -- requests and replies ----------------------------------------------------------------------

    def request(self, method: str, target: str, content_type: str, body: bytes, dest: int) -> None:
        """A request has arrived in full: refuse it, or submit its query."""
        found = query_from(method, target, content_type, body)
        if isinstance(found, int):
            self.refuse(dest, found)
            return
        self.inflight += 1  # before submit: a reply may come back before it returns
        out = self.listener.dispatcher.submit(found, self.peer, "tcp", self._send, dest)
        if out is not None:
            self._reply(out, dest)

    def _reply(self, out: bytes | None, dest: int) -> None:
        """The reply to the query of `dest` (None: the server has nothing to send for it)."""
        self.inflight -= 1
        if self.http is None:
            return  # the connection is gone
        if out is None:
            self.refuse(dest, HTTPStatus.INTERNAL_SERVER_ERROR)
        else:
            self._count(HTTPStatus.OK)
            # bytes(): a reply in several messages (AXFR) sends its first; RFC 8484 has one per response.
            self.http.respond(
                dest,
                HTTPStatus.OK,
                [("content-type", DNS_MESSAGE), ("cache-control", f"max-age={max_age(out)}")],
                bytes(out),
            )
        self._arm()

    def refuse(self, dest: int, status: int, close: bool = False) -> None:
        """An HTTP error for the request of `dest`; `close`: the connection cannot carry another request."""
        self._count(status)
        if self.http is None:
            return
        headers = [("content-type", "text/plain; charset=utf-8")]
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            headers.append(("allow", "GET, POST"))
        self.http.respond(dest, status, headers, f"{HTTPStatus(status).phrase}\n".encode(), close)

    def _count(self, status: int) -> None:
        d = self.listener.dispatcher
        d.metrics.https_response(d.label, status)


class Http1:
    """HTTP/1.1 on one connection (h11): one request at a time; reading pauses while it is served, so a
    client that pipelines requests is held back by TCP rather than by our buffers."""

    def __init__(self, conn: DohProtocol) -> None:
        self.conn = conn
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.serving = False  # a request is with the Dispatcher: its reply comes before the next is read
        self.draining = False

    def partial(self) -> bool:
        return self.h11.their_state is h11.SEND_BODY or (
            self.h11.their_state is h11.IDLE and bool(self.h11.trailing_data[0])
        )

    def feed(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._drain()

    def _drain(self) -> None:
        """Handle every event the bytes so far make, up to a request that must be answered first."""
        self.draining = True
        try:
            while not self.serving and self.conn.http is self:
                try:
                    event = self.h11.next_event()
                except h11.RemoteProtocolError as e:
                    self.conn.refuse(0, e.error_status_hint, close=True)
                    return
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                self._event(event)
        finally:
            self.draining = False

    def _event(self, event: object) -> None:
        if isinstance(event, h11.Request):
            self.request, self.body = event, bytearray()
            if self.h11.they_are_waiting_for_100_continue:
                self.conn.write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        elif isinstance(event, h11.Data) and self.request is not None:
            self.body += event.data
            if len(self.body) > MAX_MESSAGE:
                self.request = None  # the rest of the body is not read: the connection closes
                self.conn.refuse(0, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, close=True)
        elif isinstance(event, h11.EndOfMessage) and self.request is not None:
            req, self.request = self.request, None
            self.serving = True
            self.conn.update_reading()
            content_type = next((v for k, v in req.headers if k == b"content-type"), b"")
            self.conn.request(
                req.method.decode("latin-1"),
                req.target.decode("latin-1"),
                content_type.decode("latin-1"),
                bytes(self.body),
                0,
            )
        elif isinstance(event, h11.ConnectionClosed):
            self.conn.close()

    def respond(
        self, _dest: int, status: int, headers: list[tuple[str, str]], body: bytes, close: bool = False
    ) -> None:
        fields = [*headers, ("content-length", str(len(body)))]
        if close:
            fields.append(("connection", "close"))
        events = (
            h11.Response(status_code=status, headers=fields, reason=HTTPStatus(status).phrase),
            h11.Data(data=body),
            h11.EndOfMessage(),
        )
        try:
            parts = [self.h11.send(e) for e in events]
        except h11.LocalProtocolError:  # no response can be sent now (the request was broken mid-response)
            self.conn.close()
            return
        self.conn.write(b"".join(p for p in parts if p))
        self._next(close)

    def _next(self, close: bool) -> None:
        """After a response: the next request on this connection, or its end."""
        self.serving = False
        if close or self.h11.our_state is h11.MUST_CLOSE:
            self.conn.close()
            return
        try:
            self.h11.start_next_cycle()
        except h11.LocalProtocolError:  # the client has not finished its request: no next one can follow
            self.conn.close()
            return
        self.conn.update_reading()
        if not self.draining:
            self._drain()  # requests that came in while this one was served


@dataclass
class _Stream:
    """An HTTP/2 request being received."""

    method: str
    target: str
    content_type: str
    body: bytearray = field(default_factory=bytearray)


class Http2:
    """HTTP/2 on one connection (h2): concurrent streams, each a request answered when its query is."""

    def __init__(self, conn: DohProtocol) -> None:
        self.conn = conn
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: H2_MAX_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADERS,
            },
        )
        self.h2.initiate_connection()
        self.frames = FrameSizes(self.h2.max_inbound_frame_size)
        self.streams: dict[int, _Stream] = {}  # requests being received
        self.outbox: dict[int, bytes] = {}  # the rest of replies the client's flow control holds back
        self.conn.write(self.h2.data_to_send())

    def partial(self) -> bool:
        return bool(self.streams)

    def feed(self, data: bytes) -> None:
        if not self.frames.fits(data):
            self.h2.close_connection(h2.errors.ErrorCodes.FRAME_SIZE_ERROR)
            self.conn.write(self.h2.data_to_send())
            self.conn.close()
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            log.debug("http/2 from %s: %s", self.conn.peer[0], e)
            self.conn.write(self.h2.data_to_send())  # the GOAWAY h2 has prepared
            self.conn.close()
            return
        for event in events:
            if self.conn.closing():
                return  # closed by an event (a GOAWAY is sent): what followed it is not served
            self._event(event)
        self.conn.write(self.h2.data_to_send())

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived) and event.stream_id:
            headers = {bytes(k): bytes(v).decode("latin-1") for k, v in event.headers or []}
            self.streams[event.stream_id] = _Stream(
                headers.get(b":method", ""), headers.get(b":path", ""), headers.get(b"content-type", "")
            )
        elif isinstance(event, h2.events.DataReceived) and event.stream_id:
            self.h2.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data or b""
                if len(stream.body) > MAX_MESSAGE:
                    del self.streams[event.stream_id]  # what more comes for it is acknowledged and dropped
                    self.conn.refuse(event.stream_id, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id:
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None and self.conn.inflight >= H2_MAX_STREAMS:
                # More queries in flight than streams may be open: the client resets streams and opens new
                # ones without waiting for their answers ("rapid reset"). Every one would cost a query.
                self.h2.close_connection(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                self.conn.write(self.h2.data_to_send())
                self.conn.close()
            elif stream is not None:
                self.conn.request(
                    stream.method, stream.target, stream.content_type, bytes(stream.body), event.stream_id
                )
        elif isinstance(event, h2.events.StreamReset) and event.stream_id:
            self.streams.pop(event.stream_id, None)
            self.outbox.pop(event.stream_id, None)
        elif isinstance(event, h2.events.WindowUpdated):
            for stream_id in [event.stream_id] if event.stream_id else list(self.outbox):
                self._flush(stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.conn.close()

    def respond(self, dest: int, status: int, headers: list[tuple[str, str]], body: bytes, close: bool = False) -> None:
        fields = [
            (b":status", str(status).encode()),
            *((k.encode(), v.encode()) for k, v in headers),
            (b"content-length", str(len(body)).encode()),
        ]
        try:
            self.h2.send_headers(dest, fields, end_stream=not body)
            if body:
                self.outbox[dest] = body
                self._flush(dest)
        except h2.exceptions.ProtocolError:  # the client reset the stream, or ended the connection
            self.outbox.pop(dest, None)
        self.conn.write(self.h2.data_to_send())
        if close:
            self.conn.close()

    def _flush(self, stream_id: int) -> None:
        """Send as much of the stream's reply as flow control lets through; the rest waits for a window."""
        body = self.outbox.pop(stream_id, None)
        if body is None:
            return
        try:
            while body:
                size = min(len(body), self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
                if size <= 0:
                    self.outbox[stream_id] = body
                    return
                self.h2.send_data(stream_id, body[:size], end_stream=size == len(body))
                body = body[size:]
        except h2.exceptions.ProtocolError:
            pass  # the stream is gone


class FrameSizes:
    """Checks the length of each HTTP/2 frame as soon as its header arrives.

    h2 keeps a frame's bytes until all of it is there and only then checks its declared length against
    the limit, so a client that declares 16 MiB frames would make us buffer that much per connection.
    """

    PREFACE = 24  # the client's connection preface, before any frame

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.preface = self.PREFACE
        self.head = b""  # the part of a frame header read so far
        self.skip = 0  # bytes of the current frame's payload still to come

    def fits(self, data: bytes) -> bool:
        """Follow `data`; False as soon as a frame header declares more than the limit."""
        i, n = min(self.preface, len(data)), len(data)
        self.preface -= i
        while i < n:
            if self.skip:
                step = min(self.skip, n - i)
                self.skip -= step
                i += step
                continue
            step = min(9 - len(self.head), n - i)
            self.head += data[i : i + step]
            i += step
            if len(self.head) == 9:
                self.skip = int.from_bytes(self.head[:3], "big")
                self.head = b""
                if self.skip > self.limit:
                    return False
        return True
