"""nsid: the NSID option in replies to queries that ask for it, on every kind of answer, and the parse table."""

from __future__ import annotations

import socket
import struct

import pytest
from dnslib import EDNS0, QTYPE, DNSQuestion, DNSRecord, EDNSOption

from corefile import CorefileError
from dnsplugins.nsid import OPTION_NSID, Nsid, edns_option_codes
from dnsserver.wire.consts import TYPE_OPT
from tests.dnstest import plugin_in, serve


def query(name: str, nsid: bool, edns: bool = True) -> bytes:
    q = DNSRecord(q=DNSQuestion(name, QTYPE.A))
    if edns:
        q.add_ar(EDNS0(udp_len=1232, opts=[EDNSOption(OPTION_NSID, b"")] if nsid else []))
    out: bytes = q.pack()
    return out


def nsid_of(reply: DNSRecord) -> bytes | None:
    """The NSID option's data in the reply's OPT record; None when there is none."""
    for rr in reply.ar:
        if rr.rtype == TYPE_OPT:
            for o in rr.rdata:
                if o.code == OPTION_NSID:
                    data: bytes = o.data
                    return data
    return None


COREFILE = """example.org {
    nsid Use The Force
    cache
    hosts {
        192.0.2.1 www.example.org
    }
}"""

# (query name, asks for NSID, sends EDNS, the NSID expected back)
CASES = [
    ("www.example.org.", True, True, b"Use The Force"),
    ("nope.example.org.", True, True, b"Use The Force"),  # the SERVFAIL for a name hosts lacks too
    ("www.example.org.", False, True, None),
    ("www.example.org.", False, False, None),
]


@pytest.mark.parametrize(("name", "asks", "edns", "want"), CASES)
async def test_nsid_in_replies(name: str, asks: bool, edns: bool, want: bytes | None) -> None:
    async with serve(COREFILE) as s:
        for _ in range(3):  # cache fills on the first: later answers come from it, NSID included
            out = await s.wire(query(name, asks, edns))
            assert out is not None
            reply = DNSRecord.parse(out)
            assert nsid_of(reply) == want
            assert not s.last_fast  # nsid keeps its block off the hot path, which writes no options


def plugin_of(text: str) -> Nsid:
    return plugin_in(Nsid, text)


@pytest.mark.parametrize(
    ("line", "want"),
    [("nsid", socket.gethostname() or "localhost"), ("nsid one", "one"), ('nsid "Use  The" Force', "Use  The Force")],
)
def test_parse(line: str, want: str) -> None:
    assert plugin_of(f". {{\n{line}\n}}").data == want


def test_once_per_block() -> None:
    with pytest.raises(CorefileError) as e:
        plugin_of(". {\n nsid a\n nsid b\n}")
    assert str(e.value) == "Corefile:3 - plugin/nsid: this plugin can only be used once per Server Block"


def with_options(*options: tuple[int, bytes]) -> bytes:
    """A query whose OPT carries `options`, packed by hand: dnslib drops empty ones when it parses."""
    body = b"".join(struct.pack("!HH", code, len(data)) + data for code, data in options)
    out: bytes = DNSRecord(q=DNSQuestion("a.example.", QTYPE.A)).pack()
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + struct.pack("!H", len(body)) + body  # root, OPT, 1232
    return out[:10] + b"\x00\x01" + out[12:] + opt  # ARCOUNT 1


@pytest.mark.parametrize(
    ("wire", "codes"),
    [
        (with_options((OPTION_NSID, b"")), [OPTION_NSID]),
        (with_options((10, b"12345678"), (OPTION_NSID, b"")), [10, OPTION_NSID]),  # dig's cookie first
        (with_options(), []),
        (query("a.example.", nsid=False, edns=False), []),
        (with_options((OPTION_NSID, b""))[:-3], []),  # cut short: what is whole is read, nothing more
        (b"\x00" * 5, []),
    ],
)
def test_edns_option_codes(wire: bytes, codes: list[int]) -> None:
    assert edns_option_codes(wire) == codes
