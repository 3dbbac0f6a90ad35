"""DNS messages into the Dispatcher, as a listener hands them over (``submit`` with a fake transport).

The configuration has stored answers (cache in front of hosts, a kubernetes block over
tests/data/k8s/cluster.yaml), so a question the chain answered once is answered from wire bytes
the next time: every input is sent twice over UDP (chain, then hot path when a route was learnt)
and once over TCP. Names under relay.example. are forwarded (the relay path) to an upstream in the
same event loop on 127.0.0.1, which answers every question with one A record.

Invariant, for every input and send:
* nothing escapes ``submit``, nothing is logged with a traceback (the core's catch-alls log what
  they swallow) and the panic counter stays where it was;
* ``send`` is called within 5 s when ``submit`` returned nothing;
* a reply parses with dnslib and has QR set and the query's ID;
* a query dnslib reads with one question and opcode 0 is answered, with that question echoed
  byte for byte (names as the client spelled them, type, class);
* what dnslib cannot read, or that has no single question or a name over RFC 1035's limits, gets FORMERR or no reply;
  a response (QR set) or less than a header gets no reply.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, cast

from dnslib import QTYPE, RR, A, DNSRecord

from corefile import parse
from dnsserver.config import Config, build
from dnsserver.dispatch import Dispatcher
from dnsserver.metrics import process_metrics
from fuzz import Failure

CLUSTER = Path(__file__).resolve().parents[1] / "tests" / "data" / "k8s" / "cluster.yaml"

COREFILE = """\
relay.example {{
    forward . 127.0.0.1:{port}
}}
cluster.local in-addr.arpa ip6.arpa {{
    cache 30
    kubernetes {{
        manifests {cluster}
        pods insecure
    }}
}}
. {{
    cache 30
    hosts {{
        10.0.0.1 app.example.org
        fd00::1 app.example.org
        10.0.0.2 db.example.org other.example.org
        fallthrough
    }}
    chaos v1 a b
    whoami
}}
"""

CLIENT = ("10.240.0.1", 40212)
FORMERR, NOTIMP = 1, 4


class _Tracebacks(logging.Handler):
    """Remembers records logged with a traceback: a catch-all in the core swallowed a bug."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.seen.append(record)


class _Upstream(asyncio.DatagramProtocol):
    """The forward plugin's upstream: any question it can read gets one A record back."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (asyncio's selector transport for datagrams is not a DatagramTransport subclass.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = DNSRecord.parse(data)
            reply = query.reply()
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("192.0.2.1"), ttl=30))
            self.transport.sendto(reply.pack(), addr)
        except Exception:
            return  # what the upstream cannot read it drops, as a real one may


class _World:
    """The configuration, its started plugins and one Dispatcher, built once per process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        transport, _ = self.loop.run_until_complete(
            self.loop.create_datagram_endpoint(_Upstream, local_addr=("127.0.0.1", 0)))
        port = transport.get_extra_info("sockname")[1]
        self.config: Config = build(parse(COREFILE.format(port=port, cluster=CLUSTER), "Corefile"), 53)
        for p in self.config.plugins:
            self.loop.run_until_complete(p.start())
        key = next(iter(self.config.listeners))
        self.metrics = process_metrics()
        self.dispatcher = Dispatcher(f"{key[0]}://{key[1]}:{key[2]}", self.config.listeners[key], self.metrics,
                                     "127.0.0.1")
        self.tracebacks = _Tracebacks()
        logging.getLogger().addHandler(self.tracebacks)
        # Plugins log their own refusals at ERROR without a traceback (the `errors` plugin's job);
        # keep the run quiet while still seeing every record with exc_info: the root logger at ERROR
        # (at CRITICAL, no ERROR record reached this handler) and this handler the only one it has.
        logging.getLogger().setLevel(logging.ERROR)
        self.tracebacks.setLevel(logging.ERROR)


_world: _World | None = None


def world() -> _World:
    global _world
    if _world is None:
        _world = _World()
    return _world


async def _send(w: _World, data: bytes, proto: str) -> bytes | None:
    fut: asyncio.Future[bytes | None] = w.loop.create_future()

    def settle(out: bytes | None, dest: asyncio.Future[bytes | None]) -> None:
        if dest.done():
            raise Failure("send called twice")
        dest.set_result(out)

    out = w.dispatcher.submit(data, CLIENT, proto, settle, fut)
    if out is not None:
        return out
    try:
        async with asyncio.timeout(5):
            return await fut
    except TimeoutError:
        raise Failure("no send within 5 s") from None


def _readable(data: bytes) -> Any:
    """The query as dnslib reads it, or None; a question name that breaks RFC 1035's limits (a label
    over 63 bytes, which dnslib reads from a reserved length byte, or a name of 255 bytes or more) is
    not read either: it cannot be echoed."""
    try:
        msg = DNSRecord.parse(data)
    except Exception:
        return None
    for q in msg.questions:
        labels = q.qname.label
        if any(len(label) > 63 for label in labels) or sum(len(label) + 1 for label in labels) >= 255:
            return None
    return msg


def _question_bytes(q: Any) -> tuple[tuple[bytes, ...], int, int]:
    return tuple(bytes(label) for label in q.qname.label), int(q.qtype), int(q.qclass)


def _check_reply(data: bytes, out: bytes | None, proto: str) -> None:
    if len(data) < 12 or data[2] & 0x80:
        if out is not None:
            raise Failure(f"{proto}: a reply to a response or a runt: {out.hex()}")
        return
    query = _readable(data)
    if out is None:
        if query is not None and len(query.questions) == 1 and query.header.opcode == 0:
            raise Failure(f"{proto}: no reply to a readable query")
        return
    reply = _readable(out)
    if reply is None:
        raise Failure(f"{proto}: the reply does not parse: {out.hex()}")
    if out[:2] != data[:2] or not out[2] & 0x80:
        raise Failure(f"{proto}: reply ID/QR {out[:3].hex()} for query {data[:3].hex()}")
    if query is None or len(query.questions) != 1:
        if reply.header.rcode != FORMERR:
            raise Failure(f"{proto}: rcode {reply.header.rcode} (not FORMERR) for an unreadable query")
        return
    if query.header.opcode != 0:
        if reply.header.rcode != NOTIMP:
            raise Failure(f"{proto}: rcode {reply.header.rcode} for opcode {query.header.opcode}")
        return
    if len(reply.questions) != 1 or _question_bytes(reply.questions[0]) != _question_bytes(query.questions[0]):
        raise Failure(f"{proto}: question {reply.questions} for {query.questions}")


async def _all(w: _World, data: bytes) -> None:
    for proto in ("udp", "udp", "tcp"):
        out = await _send(w, data, proto)
        _check_reply(data, out, proto)


def check(data: bytes) -> None:
    w = world()
    root = logging.getLogger()
    if root.level != logging.ERROR:  # another target in this process (the suite's replay) quieted it more
        root.setLevel(logging.ERROR)
    panics = w.metrics.panics
    w.loop.run_until_complete(_all(w, data))
    if w.tracebacks.seen:
        record = w.tracebacks.seen[0]
        w.tracebacks.seen.clear()
        raise Failure(f"logged with a traceback: {record.getMessage()}") from (
            record.exc_info[1] if record.exc_info else None)
    if w.metrics.panics != panics:
        raise Failure("the panic counter moved")
