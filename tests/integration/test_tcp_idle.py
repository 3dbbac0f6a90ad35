"""TCP connections: an idle one is closed after the idle timeout; one with a query in flight is not."""

from __future__ import annotations

import asyncio
import struct

from dnslib import DNSRecord

from corefile import parse
from dnsserver import wire
from dnsserver.dispatch import Dispatcher
from dnsserver.instance import Instance
from dnsserver.listeners import Listener
from dnsserver.metrics import process_metrics
from tests.server import free_port


async def test_idle_tcp_connection_is_closed() -> None:
    port = free_port()
    inst = Instance(None, dns_port=port)
    cfg = inst.build(parse(f".:{port} {{\n bind 127.0.0.1\n whoami\n}}\n", "Corefile"))
    await inst.start(cfg)
    try:
        listener = next(iter(inst.listeners.values()))
        listener.idle_timeout = 0.3  # CoreDNS's default is 10s; shortened so the test stays fast
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        q = DNSRecord.question("idle.example", "A").pack()
        writer.write(struct.pack("!H", len(q)) + q)
        (n,) = struct.unpack("!H", await reader.readexactly(2))
        assert DNSRecord.parse(await reader.readexactly(n)).header.id == DNSRecord.parse(q).header.id
        # Then silence: the server closes the connection, and the read sees end-of-file.
        assert await asyncio.wait_for(reader.read(1), timeout=3) == b""
        writer.close()
    finally:
        await inst.shutdown()


class _SlowDispatcher(Dispatcher):
    """Answers every query (empty NOERROR) only after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__("dns://127.0.0.1:0", {}, process_metrics())
        self.delay = delay

    async def handle(self, data: bytes, client: tuple[str, int], proto: str, local_ip: str) -> bytes | None:
        await asyncio.sleep(self.delay)
        return wire.header_only_reply(data, wire.NOERROR)


async def test_connection_with_a_query_in_flight_outlives_the_idle_timeout() -> None:
    listener = Listener("127.0.0.1", 0, _SlowDispatcher(delay=1.0))
    listener.idle_timeout = 0.3  # shorter than the answer takes
    await listener.open()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        q = DNSRecord.question("slow.example", "A").pack()
        writer.write(struct.pack("!H", len(q)) + q)
        # The connection is silent for longer than the idle timeout, but a query is in flight: it waits.
        (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), timeout=3))
        assert DNSRecord.parse(await reader.readexactly(n)).header.id == DNSRecord.parse(q).header.id
        # Answered and silent again: now it is closed.
        assert await asyncio.wait_for(reader.read(1), timeout=3) == b""
        writer.close()
    finally:
        await listener.close(grace=0.1)
