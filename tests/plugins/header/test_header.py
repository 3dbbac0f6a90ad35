"""header: flag rules on queries and replies, kept by a cache's stored answers, and the parse table."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, DNSQuestion, DNSRecord

from corefile import CorefileError
from dnsplugins.header import Header, Rule
from tests.dnstest import plugin_in, serve

HOSTS = "    hosts {\n        192.0.2.1 www.example.org\n    }\n"


def query(rd: bool = True) -> bytes:
    q = DNSRecord(q=DNSQuestion("www.example.org.", QTYPE.A))
    q.header.rd = int(rd)
    out: bytes = q.pack()
    return out


def flags(reply: DNSRecord) -> set[str]:
    h = reply.header
    return {f for f in ("aa", "ra", "rd") if getattr(h, f)}


# (rules, extra plugins, query RD, flags expected on every reply)
CASES = [
    ("response set ra", "", True, {"aa", "ra", "rd"}),
    ("response clear aa", "", True, {"rd"}),
    ("response clear rd", "", True, {"aa"}),
    ("response set ra aa\n response clear rd", "", True, {"aa", "ra"}),
    ("response set ra\n response clear ra", "", True, {"aa", "rd"}),  # the last rule wins
    ("query clear rd", "", True, {"aa"}),  # hosts copies the RD it was shown
    ("query set rd", "", False, {"aa", "rd"}),
    # With cache, its stored answer keeps the RA header set; AA and RD on a cached answer are cache's.
    ("response set ra", "cache", True, {"aa", "ra", "rd"}),
]


@pytest.mark.parametrize(("rules", "extra", "rd", "want"), CASES)
async def test_rules(rules: str, extra: str, rd: bool, want: set[str]) -> None:
    corefile = f"example.org {{\n header {{\n {rules}\n }}\n {extra}\n{HOSTS}}}"
    async with serve(corefile) as s:
        for _ in range(3):
            out = await s.wire(query(rd))
            assert out is not None
            assert flags(DNSRecord.parse(out)) == want
        assert s.last_fast is (extra == "cache")  # without a cache, hosts' stored answers are not used


def header_of(text: str) -> Header:
    return plugin_in(Header, text)


def test_parse() -> None:
    h = header_of(". {\n header {\n  Response SET RA aa\n  query clear rd\n }\n}")
    assert h.response == [Rule("ra", True), Rule("aa", True)]
    assert h.query == [Rule("rd", False)]


H = "Corefile:{} - plugin/header: "
PARSE_ERRORS = [
    ("header", H.format(2) + "Wrong argument count or unexpected line ending after 'header'"),
    ("header {\n}", H.format(3) + "Wrong argument count"),
    ("header x {\n response set ra\n}", H.format(2) + "Wrong argument count or unexpected line ending after 'x'"),
    (
        "header {\n frobnicate set ra\n}",
        H.format(3) + "setting up rule: invalid selector=frobnicate should be query or response",
    ),
    ("header {\n response\n}", H.format(3) + "setting up rule: no flag action provided"),
    (
        "header {\n response set\n}",
        H.format(3) + "setting up rule: invalid length for flags, at least one should be provided",
    ),
    (
        "header {\n response toggle ra\n}",
        H.format(3) + "setting up rule: unknown flag action=toggle, should be set or clear",
    ),
    ("header {\n query set ad\n}", H.format(3) + "setting up rule: unknown/unsupported flag=ad"),
]


@pytest.mark.parametrize(("body", "message"), PARSE_ERRORS)
def test_parse_errors(body: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        header_of(f". {{\n{body}\n}}")
    assert str(e.value).startswith(message)
