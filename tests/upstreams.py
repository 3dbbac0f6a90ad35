"""Upstreams for forward and loop tests, all on loopback.

* `Dnsmasq`: a real dnsmasq process serving a small test zone (or forwarding somewhere), started
  and stopped by PID, ready once it answers a query (never a sleep).
* `FakeUpstream`: a tiny in-test DNS server on UDP and TCP (and TLS, if given a context) whose
  behaviour is chosen per query: by the query name's first label (`tc.example.`, `slow.example.`,
  ...) or for every query at once (`server.mode = "drop"`). It records every query it saw.
  `ThreadedUpstream` runs one in a background thread for tests that drive a subprocess.
* `dead_address()`: a closed port on 127.0.0.1 (UDP gets ICMP port unreachable, TCP a reset).
* `server_tls_context()`: the server side of DNS over TLS tests, for a certificate from `tests.certs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dnslib import EDNS0, QTYPE, RR, A, DNSRecord

from tests.server import free_port

DNSMASQ = "/usr/sbin/dnsmasq"
READY_NAME = "ready.probe"

# The test zone dnsmasq serves: names under example.test it does not know are NXDOMAIN (--local).
BIG_TXT = ",".join(c * 200 for c in "abc")  # 600+ bytes: truncated over plain UDP
ZONE_ARGS = (
    "--local=/example.test/",
    "--host-record=www.example.test,192.0.2.10,2001:db8::10",
    "--host-record=other.example.test,192.0.2.11",
    "--address=/wild.example.test/192.0.2.20",
    "--txt-record=txt.example.test,hello world",
    f"--txt-record=big.example.test,{BIG_TXT}",
    f"--txt-record=big.prefer.example.test,{BIG_TXT}",
    "--host-record=www.seq.example.test,192.0.2.30",
    "--cname=alias.example.test,www.example.test",
)


def query_bytes(name: str, qtype: str = "A", qid: int = 1, rd: bool = True) -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    q.header.rd = int(rd)
    return q.pack()


def udp_query(
    port: int,
    name: str,
    qtype: str = "A",
    timeout: float = 1.0,
    host: str = "127.0.0.1",
) -> DNSRecord | None:
    """One blocking UDP exchange; None on timeout or ICMP error."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(query_bytes(name, qtype, qid=4242), (host, port))
            data, _ = s.recvfrom(65535)
        except OSError:
            return None
    return DNSRecord.parse(data)


class Dnsmasq:
    """dnsmasq on 127.0.0.1:PORT. Extra arguments say what it serves (default: the test zone)."""

    def __init__(self, *args: str, port: int | None = None, zone: bool = True, timeout: float = 10.0) -> None:
        self.port = port or free_port()
        self.argv = [
            DNSMASQ,
            "--keep-in-foreground",
            "--user=root",
            f"--port={self.port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--log-facility=-",
            "--conf-file=/dev/null",
            "--pid-file",
            "--cache-size=0",
            f"--address=/{READY_NAME}/192.0.2.254",
            *(ZONE_ARGS if zone else ()),
            *args,
        ]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.pid = self.proc.pid
        self._wait_ready(timeout)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                raise RuntimeError(f"dnsmasq exited ({self.proc.returncode}): {out}\n{' '.join(self.argv)}")
            # Answered locally whatever else dnsmasq is told to do (even forwarding everything elsewhere).
            if udp_query(self.port, READY_NAME, timeout=0.2) is not None:
                return
        self.stop()
        raise RuntimeError(f"dnsmasq on port {self.port} did not answer within {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, 15)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, 9)
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Dnsmasq:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def dead_address() -> str:
    """host:port where nothing listens (a closed port: refused at once, no timeout)."""
    return f"127.0.0.1:{free_port()}"


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


# -- the misbehaving server ----------------------------------------------------------------------

MODES = (
    "ok",
    "tc",
    "mismatch",
    "slow",
    "drop",
    "servfail",
    "refused",
    "nxdomain",
    "nodata",
    "noqr",
    "garbage",
    "wrongid",
)


@dataclass
class Seen:
    """One query as the fake upstream received it."""

    name: str
    qtype: str
    proto: str  # "udp", "tcp" or "tls"
    rd: bool
    edns_size: int | None  # None: no OPT record
    client: tuple[str, int]
    qid: int


class FakeUpstream:
    """A DNS server that answers well or badly on purpose; see the module docstring.

    Behaviours (the first label of the query name, or `mode` for everything):
    ok (A 192.0.2.1 for A queries, NODATA otherwise), tc (UDP: empty reply with TC; TCP: the full
    answer), mismatch (a reply for another name), slow (answers after `delay` seconds), drop (never
    answers), servfail / refused / nxdomain / nodata (that rcode, empty), noqr (QR bit missing),
    garbage (a reply cut short), wrongid (first a reply with another ID, then the right one).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        mode: str | None = None,
        delay: float = 0.5,
        answer: str = "192.0.2.1",
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.tls_port = 0
        self.mode = mode
        self.delay = delay
        self.answer = answer
        # Additional records every reply carries, in this order: "opt" (our own EDNS, size 4096) or
        # "glue" (an A record for ns.glue.test).
        self.additional: list[str] = []
        self.seen: list[Seen] = []
        self.tcp_connections = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def behaviour(self, name: str) -> str:
        if self.mode is not None:
            return self.mode
        first = name.split(".", 1)[0].lower()
        return first if first in MODES else "ok"

    def names(self, proto: str | None = None) -> list[str]:
        return [s.name for s in self.seen if proto is None or s.proto == proto]

    def asked(self) -> int:
        """Queries seen, health-check probes (NS queries) left out."""
        return sum(1 for s in self.seen if s.qtype != "NS")

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        for _ in range(20):
            usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            usock.bind((self.host, self.port))
            port = usock.getsockname()[1]
            tsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tsock.bind((self.host, port))
            except OSError:
                usock.close()
                tsock.close()
                if self.port:
                    raise
                continue
            break
        else:
            raise RuntimeError("no free port for the fake upstream")
        self.port = port
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _FakeUdp(self), sock=usock)
        tsock.listen(64)
        tsock.setblocking(False)
        self._servers.append(await asyncio.start_server(lambda r, w: self._stream(r, w, "tcp"), sock=tsock))
        if self.tls is not None:
            srv = await asyncio.start_server(lambda r, w: self._stream(r, w, "tls"), self.host, 0, ssl=self.tls)
            self.tls_port = srv.sockets[0].getsockname()[1]
            self._servers.append(srv)
        return self

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        for srv in self._servers:
            srv.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 1.0)
        self._servers.clear()

    async def __aenter__(self) -> FakeUpstream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def spawn(self, coro: object) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def record(self, query: DNSRecord, proto: str, client: tuple[str, int]) -> None:
        size = next((rr.rclass for rr in query.ar if rr.rtype == QTYPE.OPT), None)
        self.seen.append(
            Seen(
                str(query.q.qname).lower(),
                QTYPE.get(query.q.qtype),
                proto,
                bool(query.header.rd),
                size,
                client,
                query.header.id,
            )
        )

    def misbehave(self, query: DNSRecord, how: str, proto: str) -> DNSRecord:
        """The reply to `query` as behaviour `how` shapes it (before additional records and packing)."""
        reply = query.reply()
        if how in ("ok", "slow", "wrongid", "garbage") or (how == "tc" and proto != "udp"):
            if query.q.qtype == QTYPE.A:
                reply.add_answer(RR(query.q.qname, QTYPE.A, ttl=60, rdata=A(self.answer)))
        elif how == "tc":
            reply.header.tc = 1
        elif how == "mismatch":
            reply.questions[0].qname = "www.wrong.test."
            reply.add_answer(RR("www.wrong.test.", QTYPE.A, ttl=60, rdata=A("192.0.2.99")))
        elif how in ("servfail", "refused", "nxdomain"):
            reply.header.rcode = {"servfail": 2, "refused": 5, "nxdomain": 3}[how]
        elif how == "noqr":
            reply.header.qr = 0
        return reply

    async def replies(self, data: bytes, proto: str, client: tuple[str, int]) -> list[bytes]:
        """The datagrams/messages to send back for one query (none, one, or two for wrongid)."""
        try:
            query = DNSRecord.parse(data)
        except Exception:
            return []
        self.record(query, proto, client)
        how = self.behaviour(str(query.q.qname))
        if how == "drop":
            return []
        if how == "slow":
            await asyncio.sleep(self.delay)
        reply = self.misbehave(query, how, proto)
        for extra in self.additional:
            reply.add_ar(EDNS0(udp_len=4096) if extra == "opt" else RR("ns.glue.test.", QTYPE.A, ttl=60,
                                                                       rdata=A("192.0.2.53")))
        out = reply.pack()
        if how == "garbage":
            return [out[:-3]]  # the question is right, the answer record is cut short
        if how == "wrongid":
            other = reply.pack()
            return [bytes([out[0] ^ 0x5A, out[1]]) + other[2:], out]
        return [out]

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proto: str) -> None:
        self.tcp_connections += 1
        self._writers.add(writer)
        peer = writer.get_extra_info("peername") or ("", 0)
        try:
            while True:
                n = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(n)
                for out in await self.replies(data, proto, (peer[0], peer[1])):
                    writer.write(len(out).to_bytes(2, "big") + out)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def close_connections(self) -> None:
        """Drop every open TCP/TLS connection, as an upstream's idle timeout would."""
        for w in list(self._writers):
            w.close()


class _FakeUdp(asyncio.DatagramProtocol):
    def __init__(self, server: FakeUpstream) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.spawn(self._answer(data, addr))

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        for out in await self.server.replies(data, "udp", (addr[0], addr[1])):
            if self.transport is not None and not self.transport.is_closing():
                self.transport.sendto(out, addr)


class ThreadedUpstream:
    """A FakeUpstream running in its own thread and event loop, for tests that block (dig, subprocesses)."""

    def __init__(self, **kwargs: object) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = FakeUpstream(**kwargs)  # type: ignore[arg-type]
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    @property
    def addr(self) -> str:
        return self.server.addr

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
