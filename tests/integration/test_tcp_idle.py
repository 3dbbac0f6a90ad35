"""TCP connections: an idle one is closed after the idle timeout; one with a query in flight is not."""

from __future__ import annotations

import asyncio
import struct

from dnslib import DNSRecord

from corefile import parse
from dnsserver.instance import Instance
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
