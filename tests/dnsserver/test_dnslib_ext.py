"""The dnslib mends: large messages stay parseable; HINFO packs and prints."""

from __future__ import annotations

from dnslib import QTYPE, RR, TXT, DNSRecord

import dnsserver  # noqa: F401  (installs the mends)
from dnsserver.dnslib_ext import HINFO


def test_messages_over_16k_keep_valid_pointers() -> None:
    r = DNSRecord.question("example.org", "TXT").reply()
    for _ in range(250):  # padding to push the offset past 16 KiB
        r.add_answer(RR("pad.example.org", QTYPE.TXT, rdata=TXT("x" * 80), ttl=5))
    late = [f"late-{i}.other.test" for i in range(20)]
    for name in late + late:  # first written past 16 KiB, then repeated: a pointer would be wanted
        r.add_answer(RR(name, QTYPE.TXT, rdata=TXT("y"), ttl=5))
    wire = r.pack()
    assert len(wire) > 0x4000 + 1000
    back = DNSRecord.parse(wire)
    assert [str(x.rname) for x in back.rr[250:]] == [n + "." for n in late + late]


def test_hinfo_round_trip() -> None:
    r = DNSRecord.question("x.org", "ANY").reply()
    r.add_answer(RR("x.org", QTYPE.HINFO, rdata=HINFO(["ANY obsoleted", "See RFC 8482"]), ttl=8482))
    back = DNSRecord.parse(r.pack())
    assert str(back.rr[0].rdata) == '"ANY obsoleted" "See RFC 8482"'
