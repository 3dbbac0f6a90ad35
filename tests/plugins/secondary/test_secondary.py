"""secondary: zones transferred from a primary (our own `file` + `transfer to`, listening on loopback
in this process), answered as the primary answers them; refresh by SOA serial, retry, expiry, the
first transfer retried, failed transfers changing nothing, re-export through `transfer`, and the
Corefile's errors."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, DNSRecord

from corefile import CorefileError, parse
from dnsplugins.secondary import Secondary, SecondaryZone, TransferError, axfr, primary_serial, serial_less
from dnsserver.config import build
from dnsserver.instance import Instance
from tests.dnstest import Case, Served, plugin_in, serve
from tests.server import free_port

ZONES = Path(__file__).resolve().parents[2] / "data" / "zones"
ORG = "example.org."
NS = "example.org. 60 IN NS ns1.example.org."  # positive answers carry the apex NS, as file's do

SOA_TEMPLATE = """$ORIGIN example.org.
$TTL 60
@ IN SOA ns1 hostmaster ( {serial} {refresh} {retry} {expire} 30 )
  IN NS ns1
ns1 IN A 192.0.2.1
www IN A {www}
"""


def zone_text(serial: int, www: str = "192.0.2.80", refresh: int = 100, retry: int = 10, expire: int = 35) -> str:
    return SOA_TEMPLATE.format(serial=serial, refresh=refresh, retry=retry, expire=expire, www=www)


async def start_primary(zone_file: Path, reload: str = "0", port: int | None = None) -> tuple[Instance, int]:
    """Our own server as the primary: `file` and `transfer to *` on a free loopback port."""
    port = port or free_port()
    inst = Instance(None, dns_port=port)
    text = f"example.org:{port} {{\n bind 127.0.0.1\n file {zone_file} {{\n  reload {reload}\n }}\n" \
           " transfer {\n  to *\n }\n}\n"
    await inst.start(inst.build(parse(text, "Corefile")))
    return inst, port


@asynccontextmanager
async def primary(zone_file: Path, reload: str = "0") -> AsyncIterator[int]:
    inst, port = await start_primary(zone_file, reload)
    try:
        yield port
    finally:
        await inst.shutdown()


def secondary_corefile(port: int, options: str = "", extra: str = "") -> str:
    return f"example.org {{\n secondary {{\n  transfer from 127.0.0.1:{port}\n  {options}\n }}\n {extra}\n}}\n"


def zone_of(s: Served) -> SecondaryZone:
    p = plugin_in(Secondary, s)
    return p.zones[ORG]


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# The same questions asked of the primary's file plugin and of the secondary: the same answers.
QUESTIONS = [("www.example.org.", "A"), ("example.org.", "NS"), ("example.org.", "SOA"), ("nope.example.org.", "A"),
             ("alias.example.org.", "A"), ("x.wild.example.org.", "TXT"), ("sub.example.org.", "A"),
             ("www.example.org.", "MX"), ("_sip._tcp.example.org.", "SRV")]


async def test_answers_are_the_primarys() -> None:
    zone_file = ZONES / "db.example.org"
    async with primary(zone_file) as port, serve(secondary_corefile(port)) as sec, \
            serve(f"example.org {{\n file {zone_file}\n}}\n") as prim:
        await until(lambda: zone_of(sec).zone is not None)
        for name, qtype in QUESTIONS:
            q = DNSRecord.question(name, qtype).pack()
            got, want = await sec.chain(q), await prim.chain(q)
            assert got is not None
            assert want is not None
            assert DNSRecord.parse(got) == DNSRecord.parse(want), name
        # Not on the hot path: every query runs the chain.
        await sec.query(Case("www.example.org.", "A"))
        await sec.query(Case("www.example.org.", "A"))
        assert not sec.last_fast


class FakeTime:
    """The SOA timers' clock: each sleep moves it on at once (and lets the event loop run)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0.002)


async def test_refresh_follows_the_serial_then_expires(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_text(zone_text(1))
    t = FakeTime()
    inst, port = await start_primary(db, reload="20ms")
    sz = SecondaryZone(ORG, [("127.0.0.1", port)], clock=t.clock, sleep=t.sleep, jitter=lambda cap: cap)
    sz.start()
    try:
        await until(lambda: sz.zone is not None)
        # The SOA's REFRESH, with the jitter at its cap (5s), between checks.
        await until(lambda: len(t.slept) >= 2)
        assert t.slept[0] == 105
        # A new serial is transferred at a refresh; the same serial with other data is not.
        db.write_text(zone_text(2, www="192.0.2.81"))
        await until(lambda: sz.zone is not None and sz.zone.serial == 2)
        transfers = sz.transfers
        db.write_text(zone_text(2, www="192.0.2.99"))
        await asyncio.sleep(0.2)
        assert sz.transfers == transfers
        # The primary goes away: retries every RETRY (+2s jitter), the zone kept until EXPIRE has passed.
        await inst.shutdown()
        await until(lambda: sz.expired)
        assert 12.0 in t.slept
        assert t.now - sz.refreshed_at >= 35
        assert sz.zone is not None
        assert sz.zone.serial == 2
        # It comes back: the next retry refreshes the zone.
        inst, _ = await start_primary(db, port=port)
        await until(lambda: not sz.expired)
    finally:
        await sz.stop()
        await inst.shutdown()


async def test_expired_and_untransferred_zones_are_servfail() -> None:
    async with primary(ZONES / "db.example.org") as port, serve(secondary_corefile(port)) as s:
        sz = zone_of(s)
        await until(lambda: sz.zone is not None)
        await s.run([Case("www.example.org.", "A", answer=["www.example.org. 3600 IN A 192.0.2.80"],
                          ns=["example.org. 3600 IN NS ns1.example.org.", "example.org. 3600 IN NS ns2.other.net."],
                          aa=True)])
        sz.expired = True
        await s.run([Case("www.example.org.", "A", rcode="SERVFAIL")])
        sz.expired, sz.zone = False, None
        await s.run([Case("www.example.org.", "A", rcode="SERVFAIL")])


async def test_first_transfer_is_retried_and_servfail_until_then(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.write_text(zone_text(7))
    port = free_port()
    async with serve(secondary_corefile(port)) as s:
        await s.run([Case("www.example.org.", "A", rcode="SERVFAIL")])
        inst = Instance(None, dns_port=port)
        text = f"example.org:{port} {{\n bind 127.0.0.1\n file {db}\n transfer {{\n  to *\n }}\n}}\n"
        await inst.start(inst.build(parse(text, "Corefile")))
        try:
            await until(lambda: zone_of(s).zone is not None)
            await s.run([Case("www.example.org.", "A", answer=["www.example.org. 60 IN A 192.0.2.80"], ns=[NS])])
        finally:
            await inst.shutdown()


async def test_fallthrough_and_reexport() -> None:
    async with primary(ZONES / "db.example.org") as port, \
            serve(secondary_corefile(port, "fallthrough", "transfer {\n  to *\n }\n whoami")) as s:
        await until(lambda: zone_of(s).zone is not None)
        r = await s.query(Case("nope.example.org.", "A"))
        assert [x.rtype for x in r.ar] == [QTYPE.A, QTYPE.SRV]  # whoami's
        out = await s.wire(DNSRecord.question(ORG, "AXFR").pack(), proto="tcp", client=("127.0.0.1", 5353))
        assert out is not None
        records = DNSRecord.parse(out).rr
        zone = zone_of(s).zone
        assert zone is not None
        assert records[0].rtype == records[-1].rtype == QTYPE.SOA
        assert len(records) == len(zone.axfr)


# -- transfers that go wrong change nothing ----------------------------------------------------------------


def frame(msg: DNSRecord) -> bytes:
    data = msg.pack()
    return struct.pack("!H", len(data)) + data


@asynccontextmanager
async def fake_primary(answer: Callable[[DNSRecord], list[bytes]]) -> AsyncIterator[int]:
    """A TCP server on loopback answering each query with the frames `answer` gives."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
            q = DNSRecord.parse(await reader.readexactly(n))
            for f in answer(q):
                writer.write(f)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


SOA = "example.org. 60 IN SOA ns1.example.org. h.example.org. 5 1 1 2 30"


def reply(q: DNSRecord, *records: str) -> bytes:
    r = q.reply()
    for text in records:
        r.add_answer(*RR.fromZone(text))
    return frame(r)


BAD_TRANSFERS: list[tuple[str, Callable[[DNSRecord], list[bytes]], str]] = [
    ("no closing SOA", lambda q: [reply(q, SOA, "www.example.org. 60 IN A 192.0.2.1")], "IncompleteReadError"),
    ("outside the zone", lambda q: [reply(q, SOA, "www.example.net. 60 IN A 192.0.2.1", SOA)], "outside the zone"),
    ("no SOA first", lambda q: [reply(q, "www.example.org. 60 IN A 192.0.2.1", SOA)], "does not start with"),
    ("refused", lambda q: [frame(q.reply())[:2] + bytes([q.header.id >> 8, q.header.id & 255, 0x84, 0x05])
                           + frame(q.reply())[6:]], "rcode REFUSED"),
    ("too many", lambda q: [reply(q, SOA, *[f"h{i}.example.org. 60 IN A 192.0.2.1" for i in range(5)], SOA)],
     "more than 3 records"),
]


@pytest.mark.parametrize(("what", "answer", "message"), BAD_TRANSFERS, ids=[w for w, _, _ in BAD_TRANSFERS])
async def test_bad_transfers(what: str, answer: Callable[[DNSRecord], list[bytes]], message: str) -> None:
    async with fake_primary(answer) as port:
        with pytest.raises((TransferError, asyncio.IncompleteReadError)) as e:
            await axfr(("127.0.0.1", port), ORG, timeout=3, max_records=3)
        assert message in f"{type(e.value).__name__}: {e.value}"


async def test_a_failed_transfer_keeps_the_zone() -> None:
    async with fake_primary(lambda q: [reply(q, SOA, "www.example.org. 60 IN A 192.0.2.1", SOA)]) as good:
        sz = SecondaryZone(ORG, [("127.0.0.1", good)])
        await sz.transfer_in()
    assert sz.zone is not None
    kept = sz.zone
    async with fake_primary(lambda q: [reply(q, SOA, "www.example.net. 60 IN A 192.0.2.1", SOA)]) as bad:
        sz.primaries = [("127.0.0.1", bad)]
        with pytest.raises(TransferError):
            await sz.transfer_in()
        assert sz.zone is kept
        assert await primary_serial(("127.0.0.1", bad), ORG) == 5


SERIALS = [(1, 2, True), (2, 1, False), (5, 5, False), (0xFFFFFFFF, 0, True), (0, 0xFFFFFFFF, False),
           (1, 1 + 2**31 + 1, False)]


@pytest.mark.parametrize(("a", "b", "less"), SERIALS)
def test_serial_arithmetic(a: int, b: int, less: bool) -> None:
    assert serial_less(a, b) is less


# -- the Corefile ----------------------------------------------------------------------------------------------

PARSED = [
    ("secondary {\n transfer from 10.0.1.1 10.1.2.1:5353\n}", [ORG], [("10.0.1.1", 53), ("10.1.2.1", 5353)]),
    ("secondary example.org example.net {\n transfer from 10.0.1.1\n transfer from [2001:db8::1]:54\n}",
     [ORG, "example.net."], [("10.0.1.1", 53), ("2001:db8::1", 54)]),
]


@pytest.mark.parametrize(("text", "zones", "primaries"), PARSED, ids=[t for t, _, _ in PARSED])
def test_parse(text: str, zones: list[str], primaries: list[tuple[str, int]]) -> None:
    cfg = build(parse(f"example.org {{\n{text}\n}}\n", "Corefile"), 53)
    p = next(p for p in cfg.plugins if isinstance(p, Secondary))
    assert p.cfg.zones == zones
    assert p.cfg.primaries == primaries


ERRORS = [
    ("secondary", 2, "secondary zones require a transfer from property"),
    ("secondary {\n transfer to 10.0.0.1\n}", 3, "secondary can only transfer from a primary, not 'to'"),
    ("secondary {\n transfer from\n}", 3, "Wrong argument count or unexpected line ending after 'from'"),
    ("secondary {\n transfer from nowhere\n}", 3, 'not an IP address or file: "nowhere"'),
    ("secondary {\n transfer from tls://10.0.0.1\n}", 3, "zones are transferred over plain DNS (TCP) only"),
    ("secondary {\n transfer from 10.0.0.1\n catalog\n}", 4, "catalog zones are not supported"),
]


@pytest.mark.parametrize(("text", "line", "message"), ERRORS, ids=[t for t, _, _ in ERRORS])
def test_errors(text: str, line: int, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        build(parse(f"example.org {{\n{text}\n}}\n", "Corefile"), 53)
    assert str(e.value).startswith(f"Corefile:{line} - plugin/secondary: ")
    assert message in str(e.value)
