"""timeouts: the parse table, the listener options it sets, and what a TCP connection sees of each limit."""

from __future__ import annotations

import asyncio
import struct

import pytest
from dnslib import DNSRecord

from corefile import CorefileError, parse
from dnsserver.config import build
from dnsserver.dispatch import Dispatcher
from dnsserver.instance import Instance
from dnsserver.listeners import Listener, TcpProtocol
from dnsserver.metrics import process_metrics
from dnsserver.plugin import StreamTimeouts
from tests.server import free_port


def timeouts_of(body: str) -> StreamTimeouts | None:
    return build(parse(f". {{\n{body}\n whoami\n}}", "Corefile"), 53).blocks[0].timeouts


PARSE_CASES = [
    ("", None),
    ("timeouts {\n read 10s\n write 20s\n idle 1m\n}", StreamTimeouts(10.0, 20.0, 60.0)),
    ("timeouts {\n idle 30\n}", StreamTimeouts(idle=30.0)),
    ("timeouts {\n maxtcpqueries 128\n}", StreamTimeouts(max_queries=128)),
    ("timeouts {\n maxtcpqueries -1\n read 24h\n}", StreamTimeouts(read=86400.0, max_queries=-1)),
]


@pytest.mark.parametrize(("body", "want"), PARSE_CASES)
def test_parse(body: str, want: StreamTimeouts | None) -> None:
    assert timeouts_of(body) == want


T = "Corefile:{} - plugin/timeouts: "
PARSE_ERRORS = [
    ("timeouts", T.format(2) + "timeouts block with no timeouts specified"),
    ("timeouts {\n}", T.format(3) + "timeouts block with no timeouts specified"),
    ("timeouts x {\n read 2s\n}", T.format(2) + "Wrong argument count or unexpected line ending after 'x'"),
    ("timeouts {\n read\n}", T.format(3) + "Wrong argument count"),
    ("timeouts {\n read 1s 2s\n}", T.format(3) + "Wrong argument count"),
    ("timeouts {\n read soon\n}", T.format(3) + 'time: invalid duration "soon"'),
    ("timeouts {\n read 500ms\n}", T.format(3) + "timeout provided '0.5s' needs to be between 1 second and 24 hours"),
    ("timeouts {\n idle 25h\n}", T.format(3) + "timeout provided"),
    (
        "timeouts {\n maxtcpqueries 0\n}",
        T.format(3) + "maxtcpqueries provided '0' needs to be -1 (unlimited) or a positive integer",
    ),
    ("timeouts {\n maxtcpqueries many\n}", T.format(3) + "invalid value for maxtcpqueries 'many'"),
    ("timeouts {\n frobnicate 1s\n}", T.format(3) + "unknown option: 'frobnicate'"),
]


@pytest.mark.parametrize(("body", "message"), PARSE_ERRORS)
def test_parse_errors(body: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        timeouts_of(body)
    assert str(e.value).startswith(message)


QUERY = DNSRecord.question("t.example", "A").pack()
FRAME = struct.pack("!H", len(QUERY)) + QUERY


async def started(body: str) -> tuple[Instance, Listener, int]:
    port = free_port()
    inst = Instance(None, dns_port=port)
    await inst.start(inst.build(parse(f".:{port} {{\n bind 127.0.0.1\n {body}\n whoami\n}}\n", "Corefile")))
    return inst, next(iter(inst.listeners.values())), port


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(FRAME)
    (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), timeout=3))
    await reader.readexactly(n)


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ("timeouts {\n read 2s\n write 3s\n idle 4s\n maxtcpqueries 5\n }", (2.0, 3.0, 4.0, 5)),
        ("", (3.0, 5.0, 10.0, -1)),  # CoreDNS's defaults without the plugin
    ],
)
async def test_the_listener_takes_the_blocks_settings(body: str, want: tuple[float, float, float, int]) -> None:
    inst, listener, _ = await started(body)
    try:
        assert (listener.read_timeout, listener.write_timeout, listener.idle_timeout, listener.max_queries) == want
    finally:
        await inst.shutdown()


async def test_maxtcpqueries_closes_after_the_last_answer() -> None:
    inst, _, port = await started("timeouts {\n maxtcpqueries 2\n }")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await ask(reader, writer)
        await ask(reader, writer)
        writer.write(FRAME)  # a third query is not read: the connection closes after the second answer
        assert await asyncio.wait_for(reader.read(1), timeout=3) == b""
        writer.close()
    finally:
        await inst.shutdown()


@pytest.mark.parametrize("partial", [False, True])
async def test_read_timeout_for_a_silent_or_unfinished_first_query(partial: bool) -> None:
    inst, listener, port = await started("")
    listener.read_timeout, listener.idle_timeout = 0.3, 30.0  # shortened: the plugin's minimum is 1s
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if partial:
            writer.write(FRAME[:5])
        assert await asyncio.wait_for(reader.read(1), timeout=3) == b""
        writer.close()
    finally:
        await inst.shutdown()


async def test_idle_timeout_between_queries() -> None:
    inst, listener, port = await started("")
    listener.read_timeout, listener.idle_timeout = 30.0, 0.3
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await ask(reader, writer)
        assert await asyncio.wait_for(reader.read(1), timeout=3) == b""
        writer.close()
    finally:
        await inst.shutdown()


class _StuckTransport:
    """A transport whose client reads nothing, or reads `drain` bytes per check: its buffer says so."""

    def __init__(self, drain: int = 0) -> None:
        self.buffered = 0
        self.drain = drain
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.buffered += len(data)

    def get_write_buffer_size(self) -> int:
        self.buffered = max(self.buffered - self.drain, 0)
        return self.buffered

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


@pytest.mark.parametrize(("drain", "aborted"), [(0, True), (40, False)])
async def test_write_timeout_drops_a_client_that_reads_nothing(drain: int, aborted: bool) -> None:
    listener = Listener("127.0.0.1", 0, Dispatcher("dns://127.0.0.1:0", {}, process_metrics()))
    listener.write_timeout = 0.05
    conn = TcpProtocol(listener)
    transport = _StuckTransport(drain)
    conn.transport = transport  # type: ignore[assignment]
    conn._write(b"x" * 1000)
    await asyncio.sleep(0.3)
    assert transport.aborted is aborted  # a slow reader that makes progress keeps its connection
