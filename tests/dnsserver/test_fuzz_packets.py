"""Property test: whatever bytes arrive, the dispatcher never raises, and any reply it sends is a
well-formed DNS message for the same ID. Valid queries are still answered afterwards."""

from __future__ import annotations

import asyncio

import pytest
from dnslib import EDNS0, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dnstest import Case, check, serve

COREFILE = ". {\n chaos v1 a b c\n any\n whoami\n}\nexample.org {\n whoami\n}"


def _seed() -> bytes:
    q = DNSRecord.question("www.example.org", "A")
    q.add_ar(EDNS0(udp_len=1232, flags="do"))
    return q.pack()


SEED = _seed()

mutated = st.builds(
    lambda flips: bytes(b ^ flips.get(i, 0) for i, b in enumerate(SEED)),
    st.dictionaries(st.integers(0, len(SEED) - 1), st.integers(1, 255), min_size=1, max_size=6),
)
truncated = st.integers(0, len(SEED)).map(lambda n: SEED[:n])
packets = st.one_of(st.binary(max_size=600), mutated, truncated,
                    st.binary(min_size=12, max_size=60).map(lambda b: b[:2] + b"\x00\x00\x00\x01" + b[6:]))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.lists(packets, min_size=1, max_size=5))
def test_dispatcher_survives_any_bytes(data: list[bytes]) -> None:
    async def go() -> None:
        async with serve(COREFILE) as s:
            for pkt in data:
                for proto in ("udp", "tcp"):
                    out = await s.wire(pkt, proto)
                    if out is None:
                        continue
                    assert len(pkt) >= 12
                    assert out[:2] == pkt[:2]  # the client's ID
                    assert out[2] & 0x80  # QR set
                    DNSRecord.parse(out)  # and it parses
            await s.run([Case("www.example.org.", "A", extra=["www.example.org. 0 IN A 10.240.0.1",
                                                              "_udp.www.example.org. 0 IN SRV 0 0 40212 ."])])

    asyncio.run(go())


def test_check_helper_detects_wrong_answers() -> None:
    """The table helper itself must fail on a mismatch, or every table test would be hollow."""
    q = DNSRecord.question("x.", "A")
    r = q.reply()
    with pytest.raises(AssertionError):
        check(Case("x.", "A", rcode="NXDOMAIN"), r)
    with pytest.raises(AssertionError):
        check(Case("x.", "A", answer=["x. 5 IN A 1.2.3.4"]), r)


def test_a_label_length_of_the_reserved_types_is_formerr_not_a_panic() -> None:
    """A length byte of 64 to 191 (the reserved label types): dnslib reads it as a long label and
    then cannot pack the reply's question. Found by fuzz/dns_target.py (fuzz/corpus/dns/crash-label-64)."""
    header = bytes.fromhex("beef 0100 0001 0000 0000 0000")
    data = header + b"\x03app" + b"\x50" + b"v" * 80 + b"\x00" + bytes.fromhex("0001 0001")  # a label of 80

    async def go() -> None:
        async with serve(COREFILE) as s:
            panics = s.dispatcher.metrics.panics
            for proto in ("udp", "tcp"):
                out = await s.wire(data, proto)
                assert out is not None
                reply = DNSRecord.parse(out)
                assert (reply.header.id, reply.header.rcode) == (0xBEEF, 1)  # FORMERR
            assert s.dispatcher.metrics.panics == panics

    asyncio.run(go())


def test_a_malformed_edns_option_is_formerr_on_the_hot_path_too() -> None:
    """An OPT whose option claims more bytes than the record holds: the chain's parse refuses it
    (FORMERR); the hot path answered it NOERROR once the question had a route. Found by
    fuzz/dns_target.py (fuzz/corpus/dns/crash-opt-*)."""
    question = bytes.fromhex("0100 0001 0000 0000 0001") + b"\x03www\x07example\x03org\x00" + bytes.fromhex("0001 0001")
    good = b"\x12\x34" + question + bytes.fromhex("00 0029 1000 00000000 0000")
    bad = b"\x12\x35" + question + bytes.fromhex("00 0029 1000 00000000 000c 002c0000 0000c0ff ffffffff")

    async def go() -> None:
        async with serve(". {\n cache\n hosts {\n  10.0.0.1 www.example.org\n }\n}") as s:
            for _ in range(2):
                assert DNSRecord.parse(await s.wire(good)).header.rcode == 0
            assert s.last_fast  # the question has its route
            out = await s.wire(bad)
            assert out is not None
            assert (out[:2], out[3] & 0x0F) == (b"\x12\x35", 1)  # FORMERR

    asyncio.run(go())
