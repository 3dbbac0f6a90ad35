"""transfer: the parse tables, who may transfer what, AXFR/IXFR answers, splitting into messages."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, SOA, DNSQuestion, DNSRecord

from corefile import CorefileError
from dnsplugins import transfer as transfermod
from dnsplugins.file import File
from dnsplugins.file.zone import Zone
from dnsplugins.file.zonefile import parse_file
from dnsplugins.transfer import SAFE_MESSAGE, Transfer, parse_to, serial_newer_or_same, split
from tests.dnstest import Case, plugin_in, rr_text, serve

ZONES = Path(__file__).resolve().parents[2] / "data" / "zones"
DB, RELATIVE = ZONES / "db.example.org", ZONES / "db.relative"
NET = "example.net."
NET_SOA = f"{NET} 300 IN SOA ns.{NET} hostmaster.{NET} 7 7200 3600 1209600 60"
# db.relative loaded as example.net: SOA first and last, the apex, then the names in canonical order.
NET_AXFR = [
    NET_SOA,
    f"{NET} 300 IN NS ns.{NET}",
    f"ns.{NET} 300 IN A 192.0.2.1",
    f"www.{NET} 300 IN A 192.0.2.2",
    NET_SOA,
]
LOCAL = ("127.0.0.1", 40000)

COREFILE = f"""
. {{
    file {DB} example.org
    file {RELATIVE} example.net
    transfer example.org example.net {{
        to 127.0.0.1 192.0.2.0/24
        to 2001:db8::/32 [2001:db8:1::53]:53
    }}
    whoami
}}
"""


def axfr(
    qname: str = NET,
    client: tuple[str, int] = LOCAL,
    proto: str = "tcp",
    rcode: str = "NOERROR",
    answer: list[str] | None = None,
    qtype: str = "AXFR",
) -> Case:
    return Case(
        qname,
        qtype,
        rcode=rcode,
        answer=answer or [],
        proto=proto,
        client=client,
        ordered=True,
        aa=True if rcode == "NOERROR" else None,
    )


def passed_on(name: str, qtype: str, client: tuple[str, int] = LOCAL) -> Case:
    """whoami's answer (over TCP): proof the query went past transfer and file."""
    return Case(
        name,
        qtype,
        proto="tcp",
        client=client,
        extra=[f"{name} 0 IN A {client[0]}", f"_tcp.{name} 0 IN SRV 0 0 {client[1]} ."],
    )


TRANSFERS = [
    # Allowed by address, by network, as an IPv4-mapped IPv6 address, by IPv6 network, by IP:port.
    axfr(answer=NET_AXFR),
    axfr("Example.NET.", answer=NET_AXFR),
    axfr(client=("192.0.2.77", 53000), answer=NET_AXFR),
    axfr(client=("::ffff:127.0.0.1", 53000), answer=NET_AXFR),
    axfr(client=("2001:db8:ffff::1", 53000), answer=NET_AXFR),
    # Not in `to`, or over UDP: refused.
    axfr(client=("10.0.0.1", 53000), rcode="REFUSED"),
    axfr(client=("198.51.100.1", 53000), rcode="REFUSED"),
    axfr(proto="udp", rcode="REFUSED"),
    axfr(proto="udp", rcode="REFUSED", qtype="IXFR"),
    # A name inside the zone is no zone: nobody transfers it, and file refuses.
    axfr(f"www.{NET}", rcode="REFUSED"),
    # A name outside the transfer zones goes down the chain (to whoami here).
    passed_on("example.com.", "AXFR"),
    # Everything else passes through untouched.
    Case(f"www.{NET}", "A", answer=[f"www.{NET} 300 IN A 192.0.2.2"], ns=[f"{NET} 300 IN NS ns.{NET}"], aa=True),
]


async def test_transfers() -> None:
    async with serve(COREFILE) as s:
        await s.run(TRANSFERS)


async def test_the_whole_zone_soa_first_and_last(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    zone = Zone(parse_file(str(DB), "db", "example.org."))
    async with serve(COREFILE) as s:
        reply = await s.query(axfr("example.org."))
    assert reply.header.rcode == 0
    assert reply.header.aa
    got = [rr_text(r) for r in reply.rr]
    assert got[0] == got[-1] == rr_text(zone.soa)
    assert len(got) == 28 + 1  # every record of the file (RRSIG, glue and delegation included), SOA twice
    assert sorted(got[1:-1]) == sorted(rr_text(r) for r in zone.axfr[1:-1])
    assert (
        '[INFO] plugin/transfer: Outgoing transfer of 29 records of zone "example.org." to 127.0.0.1 '
        "for 2024010101 SOA serial"
    ) in caplog.messages


def ixfr(serial: int | None, qname: str = NET) -> bytes:
    q = DNSRecord(q=DNSQuestion(qname, QTYPE.IXFR))
    if serial is not None:
        q.add_auth(RR(qname, QTYPE.SOA, rdata=SOA("ns.", "hm.", (serial, 1, 1, 1, 1))))
    return q.pack()


IXFRS = [
    # The client's serial is current or newer (RFC 1982): the SOA alone.
    (7, "NOERROR", [NET_SOA]),
    (8, "NOERROR", [NET_SOA]),
    (7 + 2**31 - 1, "NOERROR", [NET_SOA]),
    # Older: the whole zone, AXFR style.
    (6, "NOERROR", NET_AXFR),
    (7 + 2**31, "NOERROR", NET_AXFR),
    (0, "NOERROR", NET_AXFR),
    # No SOA in the authority section: SERVFAIL, as CoreDNS.
    (None, "SERVFAIL", []),
]


@pytest.mark.parametrize(("serial", "rcode", "answer"), IXFRS)
async def test_ixfr(serial: int | None, rcode: str, answer: list[str]) -> None:
    async with serve(COREFILE) as s:
        out = await s.wire(ixfr(serial), "tcp", LOCAL)
    assert out is not None
    reply = DNSRecord.parse(out)
    assert RCODE.get(reply.header.rcode) == rcode
    assert [rr_text(r) for r in reply.rr] == [rr_text(RR.fromZone(a)[0]) for a in answer]


async def test_longest_transfer_zone_decides() -> None:
    text = f"""
. {{
    file {DB} example.org
    file {RELATIVE} example.net
    transfer . {{
        to 127.0.0.1
    }}
    transfer example.net {{
        to 10.9.9.9
    }}
}}
"""
    async with serve(text) as s:
        await s.run([axfr(rcode="REFUSED"), axfr(client=("10.9.9.9", 1), answer=NET_AXFR)])
        reply = await s.query(axfr("example.org."))
        assert reply.header.rcode == 0
        assert len(reply.rr) == 29


async def test_to_anyone_and_block_zones() -> None:
    text = f"example.net {{\n file {RELATIVE}\n transfer {{\n  to *\n }}\n}}\n"
    async with serve(text) as s:
        await s.run([axfr(client=("203.0.113.9", 1), answer=NET_AXFR)])


async def test_without_a_transferer_the_query_goes_on() -> None:
    async with serve(". {\n transfer example.org {\n  to *\n }\n whoami\n}\n") as s:
        await s.run([passed_on("example.org.", "AXFR")])
        transfer = next(p for p in s.config.plugins if isinstance(p, Transfer))
        assert transfer.transferers == []


async def test_transferers_are_found_at_start() -> None:
    async with serve(COREFILE) as s:
        transfer = next(p for p in s.config.plugins if isinstance(p, Transfer))
        assert [type(p) for p in transfer.transferers] == [File]
        file = transfer.transferers[0]
        assert file.transfer("example.org.") is not None
        assert file.transfer(f"www.{NET}") is None


# -- large zones: several messages ----------------------------------------------------------------


def big_zone(path: Path, n: int = 3000) -> Path:
    lines = ["@ 300 IN SOA ns hostmaster 99 7200 3600 1209600 60", "@ NS ns", "ns A 192.0.2.1"]
    lines += [f'host{i:05d} TXT "{"x" * 100}{i}"' for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_split_keeps_order_and_fits_each_message(tmp_path: Path) -> None:
    zone = Zone(parse_file(str(big_zone(tmp_path / "db.big")), "db.big", "big.test."))
    chunks = split(zone.axfr)
    assert len(chunks) > 10
    assert [r for c in chunks for r in c] == zone.axfr
    for c in chunks:
        msg = DNSRecord(q=DNSQuestion("big.test.", QTYPE.AXFR), rr=c)
        msg.add_ar(EDNS0(udp_len=4096))
        assert len(msg.pack()) <= SAFE_MESSAGE


async def test_large_zone_goes_out_in_several_messages(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    big_zone(tmp_path / "db.big")
    text = f"big.test {{\n file {tmp_path / 'db.big'}\n transfer {{\n  to *\n }}\n}}\n"
    zone = Zone(parse_file(str(tmp_path / "db.big"), "db.big", "big.test."))
    query = DNSRecord(q=DNSQuestion("big.test.", QTYPE.AXFR))
    query.header.id = 777
    async with serve(text) as s:
        out = await s.wire(query.pack(), "tcp", LOCAL)
    assert out is not None
    messages = [out, *out.more]  # type: ignore[attr-defined]
    assert len(messages) > 10
    records: list[str] = []
    for wire in messages:
        assert len(wire) <= SAFE_MESSAGE
        msg = DNSRecord.parse(wire)
        assert msg.header.id == 777
        assert msg.header.aa
        assert msg.header.rcode == 0
        assert str(msg.q.qname) == "big.test."
        assert msg.q.qtype == QTYPE.AXFR
        records += [rr_text(r) for r in msg.rr]
    assert records == [rr_text(r) for r in zone.axfr]


async def test_messages_are_cut_once_per_zone_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sized: list[RR] = []
    real_size = transfermod.wire_size

    def counting_size(rr: RR) -> int:
        sized.append(rr)
        return real_size(rr)

    monkeypatch.setattr(transfermod, "wire_size", counting_size)
    db = big_zone(tmp_path / "db.big", 300)
    text = f"big.test {{\n file {db} {{\n  reload 0\n }}\n transfer {{\n  to *\n }}\n}}\n"
    query = DNSRecord(q=DNSQuestion("big.test.", QTYPE.AXFR)).pack()
    async with serve(text) as s:
        first = await s.wire(query, "tcp", LOCAL)
        assert len(sized) == 300 + 4  # every record sized once (the SOA twice)
        again = await s.wire(query, "tcp", LOCAL)
        assert len(sized) == 300 + 4  # the same zone: its messages are reused, nothing sized again
        assert first is not None
        assert again is not None
        assert [first, *first.more] == [again, *again.more]  # type: ignore[attr-defined]
        # A reloaded zone is a new list of records: cut again, and its new data goes out.
        file = next(p for p in s.config.plugins if isinstance(p, File))
        st = db.stat()
        db.write_text(db.read_text().replace(" 99 7200", " 100 7200").replace('"x', '"y', 1))
        os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert file.load(file.sources["big.test."])
        reloaded = await s.wire(query, "tcp", LOCAL)
        assert len(sized) == 2 * (300 + 4)
        assert reloaded is not None
        messages = [reloaded, *reloaded.more]  # type: ignore[attr-defined]
        texts = [rr_text(r) for w in messages for r in DNSRecord.parse(w).rr]
        assert texts[0].split()[6] == "100"
        assert any('"yx' in t for t in texts)


# -- the Corefile ---------------------------------------------------------------------------------


def xfrs_of(text: str) -> list[tuple[list[str], bool, list[str]]]:
    t = plugin_in(Transfer, text)
    return [(x.zones, x.anyone, [str(n) for n in x.to]) for x in t.xfrs]


PARSE_CASES = [
    ("example.org {\n transfer {\n  to *\n }\n}", [(["example.org."], True, [])]),
    (
        ". {\n transfer example.org Example.NET {\n  to 192.0.2.1 10.0.0.0/8 192.0.2.2:5353\n"
        "  to 2001:db8::1 [2001:db8::2]:53 fd00::/8\n }\n}",
        [
            (
                ["example.org.", "example.net."],
                False,
                ["192.0.2.1/32", "10.0.0.0/8", "192.0.2.2/32", "2001:db8::1/128", "2001:db8::2/128", "fd00::/8"],
            )
        ],
    ),
    (
        ". {\n transfer example.org {\n  to 192.0.2.1\n }\n transfer example.net {\n  to * 192.0.2.9\n }\n}",
        [(["example.org."], False, ["192.0.2.1/32"]), (["example.net."], True, ["192.0.2.9/32"])],
    ),
    ("10.0.0.0/24 {\n transfer {\n  to 10.0.0.5/24\n }\n}", [(["0.0.10.in-addr.arpa."], False, ["10.0.0.0/24"])]),
]


@pytest.mark.parametrize(("text", "want"), PARSE_CASES)
def test_parse(text: str, want: list[tuple[list[str], bool, list[str]]]) -> None:
    assert xfrs_of(text) == want


PARSE_ERRORS = [
    ("example.org {\n transfer\n}", "Corefile:2 - plugin/transfer: 'to' is required"),
    ("example.org {\n transfer {\n }\n}", "Corefile:2 - plugin/transfer: 'to' is required"),
    (
        "example.org {\n transfer {\n  to\n }\n}",
        "Corefile:3 - plugin/transfer: Wrong argument count or unexpected line ending after 'to'",
    ),
    (
        "example.org {\n transfer {\n  to example.com\n }\n}",
        "Corefile:3 - plugin/transfer: 'example.com' in 'to' is not an IP address, IP:port or CIDR network",
    ),
    (
        "example.org {\n transfer {\n  to 10.0.0.300\n }\n}",
        "Corefile:3 - plugin/transfer: '10.0.0.300' in 'to' is not an IP address, IP:port or CIDR network",
    ),
    ("example.org {\n transfer {\n  from 10.0.0.1\n }\n}", "Corefile:3 - plugin/transfer: unknown property 'from'"),
]


@pytest.mark.parametrize(("text", "message"), PARSE_ERRORS)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        xfrs_of(text)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("text", "net"),
    [
        ("192.0.2.1", "192.0.2.1/32"),
        ("192.0.2.1:53", "192.0.2.1/32"),
        ("[::1]:53", "::1/128"),
        ("::1", "::1/128"),
        ("10.1.2.3/8", "10.0.0.0/8"),
    ],
)
def test_parse_to(text: str, net: str) -> None:
    assert str(parse_to(text)) == net


@pytest.mark.parametrize(
    ("theirs", "ours", "newer_or_same"),
    [
        (5, 5, True),
        (6, 5, True),
        (4, 5, False),
        (0, 2**32 - 1, True),
        (2**32 - 1, 0, False),
        (5 + 2**31, 5, False),
        (5 + 2**31 - 1, 5, True),
    ],
)
def test_serial_arithmetic(theirs: int, ours: int, newer_or_same: bool) -> None:
    assert serial_newer_or_same(theirs, ours) is newer_or_same
