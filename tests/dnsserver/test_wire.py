"""The hot path's byte-level helpers: queries equal but for their ID share what was read and built."""

from __future__ import annotations

import pytest
from dnslib import EDNS0, QTYPE, RR, A, DNSRecord

from dnsserver.wire.answer import assemble
from dnsserver.wire.consts import QR
from dnsserver.wire.query import parse_query, quick_query
from dnsserver.wire.reply import FOREIGN, MALFORMED, NO_OPT, trailing_opt, upstream_reply, well_formed, without_opt


def query(name: str, qid: int, edns: bool = False, rd: bool = True) -> bytes:
    q = DNSRecord.question(name)
    q.header.id, q.header.rd = qid, int(rd)
    if edns:
        q.add_ar(EDNS0(udp_len=1232))
    return bytes(q.pack())


def tail_for(ip: str) -> bytes:
    """The records after the question of a reply for app.example.org (what a store keeps)."""
    r = DNSRecord.question("app.example.org").reply()
    r.add_answer(RR("app.example.org", QTYPE.A, rdata=A(ip), ttl=30))
    packed = bytes(r.pack())
    return packed[12 + len(b"\x03app\x07example\x03org\x00") + 4:]


def test_queries_differing_only_in_id_share_one_reading() -> None:
    a, b = quick_query(query("App.Example.org", 1)), quick_query(query("App.Example.org", 2))
    assert a is not None
    assert a is b
    assert quick_query(query("app.example.org", 1)) is not a  # other spelling: other bytes, other key
    assert quick_query(query("App.Example.org", 1, edns=True)) is not a


@pytest.mark.parametrize(("edns", "rd"), [(False, True), (True, True), (False, False)])
def test_assemble_reuses_only_while_inputs_are_the_same(edns: bool, rd: bool) -> None:
    first, second = query("App.Example.org", 0x1111, edns, rd), query("App.Example.org", 0x2222, edns, rd)
    q = quick_query(first)
    assert q is not None
    assert q is quick_query(second)
    old, new = tail_for("10.0.0.1"), tail_for("10.0.0.2")
    cases = [  # (query bytes, tail, flags, expected address); each answer checked against a fresh parse
        (first, old, QR, "10.0.0.1"),
        (second, old, QR, "10.0.0.1"),  # reused: only the ID differs
        (second, new, QR, "10.0.0.2"),  # the store's tail object changed: built again
        (first, new, QR | 0x0400, "10.0.0.2"),  # other flags (AA): built again
        (first, bytes(new), QR | 0x0400, "10.0.0.2"),  # an equal but distinct tail is fine too
    ]
    for data, tail, flags, ip in cases:
        out = assemble(data, q, flags, 1, 0, 0, tail)
        fresh = parse_query(data)
        assert fresh is not None
        assert out == assemble(data, fresh, flags, 1, 0, 0, tail)  # no memory on a fresh reading
        reply = DNSRecord.parse(out)
        assert reply.header.id == DNSRecord.parse(data).header.id
        assert bool(reply.header.aa) == bool(flags & 0x0400)
        assert bool(reply.header.rd) == rd
        assert [str(r.rdata) for r in reply.rr] == [ip]
        assert str(reply.q.qname) == "App.Example.org."
        assert (reply.ar[0].edns_len if reply.ar else None) == (1232 if edns else None)


def _reply(*answers: str) -> bytes:
    r = DNSRecord.question("app.example.org").reply()
    for ip in answers:
        r.add_answer(RR("app.example.org", QTYPE.A, rdata=A(ip), ttl=30))
    return bytes(r.pack())


QEND = 12 + len(b"\x03app\x07example\x03org\x00") + 4
GOOD = _reply("10.0.0.1", "10.0.0.2")

# (message, start, questions left, well formed?)
WELL_FORMED = [
    (GOOD, 12, None, True),
    (GOOD, QEND, 0, True),  # the question already checked by the caller
    (_reply(), QEND, 0, True),
    (GOOD[:-1], 12, None, False),  # cut short inside the last record
    (GOOD + b"\x00", 12, None, False),  # a byte past the last record
    (GOOD[:6] + b"\x00\x03" + GOOD[8:], 12, None, False),  # counts one answer more than there is
    (GOOD[:6] + b"\x00\x01" + GOOD[8:], QEND, 0, False),  # counts one fewer: bytes left over
    (GOOD, QEND - 1, 0, False),  # a wrong start cannot end exactly at the end
    (GOOD[:11], 12, None, False),  # not even a header
]


@pytest.mark.parametrize(("msg", "start", "qd", "want"), WELL_FORMED)
def test_well_formed(msg: bytes, start: int, qd: int | None, want: bool) -> None:
    assert (trailing_opt(msg, start, qd) != MALFORMED) is want
    if start == 12 and qd is None:
        assert well_formed(msg) is want


def _with_additional(*kinds: str) -> bytes:
    r = DNSRecord.parse(GOOD)
    for kind in kinds:
        r.add_ar(EDNS0(udp_len=4096) if kind == "opt" else RR("ns.example.org", QTYPE.A, rdata=A("10.0.0.53")))
    return bytes(r.pack())


# (message, where its trailing OPT starts: an offset, NO_OPT or MALFORMED)
TRAILING_OPT = [
    (GOOD, NO_OPT),
    (_with_additional("opt"), len(GOOD)),
    (_with_additional("glue", "opt"), len(_with_additional("glue"))),
    (_with_additional("opt", "glue"), NO_OPT),  # an OPT, but not the last record
    (_with_additional("opt")[:-1], MALFORMED),
]


@pytest.mark.parametrize(("msg", "want"), TRAILING_OPT)
def test_trailing_opt_and_without_it(msg: bytes, want: int) -> None:
    assert trailing_opt(msg) == want
    if want >= 0:
        cut = DNSRecord.parse(without_opt(msg, want))
        assert [r.rtype for r in cut.ar] == [r.rtype for r in DNSRecord.parse(msg).ar][:-1]
        assert cut.rr == DNSRecord.parse(msg).rr


def test_garbled_upstream_reply_is_a_failure_not_another_question() -> None:
    """A reply cut inside a question its header miscounts cannot be read at all: an upstream failure
    (SERVFAIL after the tries), not FORMERR, which is for a readable reply to another question (found by
    the upstream fault drill, tests/drills/test_upstream_faults.py)."""
    query = DNSRecord.question("n1.drill.test", "A").pack()
    reply = DNSRecord.parse(query).reply().pack()
    garbled = reply[:4] + b"\x00\x07\x00\x09" + reply[8:-6]
    assert upstream_reply(query, garbled) == MALFORMED
    other = DNSRecord.question("other.test", "A").reply().pack()
    assert upstream_reply(query, query[:2] + other[2:]) == FOREIGN
