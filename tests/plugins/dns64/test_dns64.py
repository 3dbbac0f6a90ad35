"""dns64: which AAAA replies are synthesised, the RFC 6052 layout, TTL caps, the cache, and the parse table."""

from __future__ import annotations

import ipaddress

import pytest
from dnslib import QTYPE

from corefile import CorefileError
from dnsplugins.dns64 import Dns64, embed
from dnsserver.metrics import REGISTRY
from tests.dnstest import Case, plugin_in, rr, serve

V6 = ("2001:db8::7", 40212)
V4 = ("10.240.0.1", 40212)

COREFILE = """example.org {{
    dns64 {options}
    {cache}
    hosts {{
        192.0.2.1 v4only.example.org
        192.0.2.2 both.example.org
        2001:db8::2 both.example.org
        ttl 3600
    }}
}}"""


def corefile(options: str = "", cache: bool = False) -> str:
    return COREFILE.format(options=options, cache="cache" if cache else "")


def records(texts: list[str]) -> set[tuple[str, str, str]]:
    """Owner, type and data of each record, without the TTL (a cache's answers count it down)."""
    return {(str(r.rname).lower(), QTYPE[r.rtype], str(r.rdata)) for r in map(rr, texts)}


CASES = [
    # (dns64 options, case)
    ("", Case("v4only.example.org.", "AAAA", client=V6, answer=["v4only.example.org. 600 IN AAAA 64:ff9b::c000:201"])),
    ("", Case("both.example.org.", "AAAA", client=V6, answer=["both.example.org. 3600 IN AAAA 2001:db8::2"])),
    ("", Case("v4only.example.org.", "AAAA", client=V4)),  # IPv4 clients are left alone
    ("", Case("v4only.example.org.", "A", client=V6, answer=["v4only.example.org. 3600 IN A 192.0.2.1"])),
    (
        "{\n allow_ipv4\n }",
        Case("v4only.example.org.", "AAAA", client=V4, answer=["v4only.example.org. 600 IN AAAA 64:ff9b::c000:201"]),
    ),
    (
        "{\n translate_all\n }",
        Case("both.example.org.", "AAAA", client=V6, answer=["both.example.org. 600 IN AAAA 64:ff9b::c000:202"]),
    ),
    (
        "64:1337::/96",
        Case("v4only.example.org.", "AAAA", client=V6, answer=["v4only.example.org. 600 IN AAAA 64:1337::c000:201"]),
    ),
    (
        "{\n prefix 2001:db8:100::/40\n }",
        Case("v4only.example.org.", "AAAA", client=V6, answer=["v4only.example.org. 600 IN AAAA 2001:db8:1c0:2:1::"]),
    ),
]


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize(("options", "case"), CASES, ids=lambda c: getattr(c, "qname", c))
async def test_answers(options: str, case: Case, cache: bool) -> None:
    async with serve(corefile(options, cache)) as s:
        await s.run([case])  # exact records, TTLs included
        for _ in range(2):  # with cache, later queries still see the synthesis (no hot path past dns64)
            reply = await s.query(case)
            got = {(str(r.rname).lower(), QTYPE[r.rtype], str(r.rdata)) for r in reply.rr}
            assert got == records(case.answer)
            assert not s.last_fast


@pytest.mark.parametrize(
    ("prefix", "v4", "want"),
    [
        ("64:ff9b::/96", "192.0.2.33", "64:ff9b::c000:221"),  # RFC 6052 section 2.4's examples
        ("2001:db8::/32", "192.0.2.33", "2001:db8:c000:221::"),
        ("2001:db8:100::/40", "192.0.2.33", "2001:db8:1c0:2:21::"),
        ("2001:db8:122::/48", "192.0.2.33", "2001:db8:122:c000:2:2100::"),
        ("2001:db8:122:300::/56", "192.0.2.33", "2001:db8:122:3c0:0:221::"),
        ("2001:db8:122:344::/64", "192.0.2.33", "2001:db8:122:344:c0:2:2100:0"),
    ],
)
def test_embed(prefix: str, v4: str, want: str) -> None:
    assert embed(ipaddress.IPv6Network(prefix), v4) == ipaddress.IPv6Address(want)


def dns64_of(body: str) -> Dns64:
    return plugin_in(Dns64, f". {{\n{body}\n}}")


def test_parse() -> None:
    d = dns64_of("dns64")
    assert (str(d.prefix), d.translate_all, d.allow_ipv4) == ("64:ff9b::/96", False, False)
    d = dns64_of("dns64 64:1337::/96 {\n translate_all\n allow_ipv4\n}")
    assert (str(d.prefix), d.translate_all, d.allow_ipv4) == ("64:1337::/96", True, True)


D = "Corefile:{} - plugin/dns64: "
PARSE_ERRORS = [
    ("dns64 a b", D.format(2) + "Wrong argument count or unexpected line ending after 'b'"),
    ("dns64 nonsense", D.format(2) + "invalid CIDR address: nonsense"),
    ("dns64 10.0.0.0/8", D.format(2) + 'invalid netmask 32 IPv6 address: "10.0.0.0/8"'),
    ("dns64 64:ff9b::/100", D.format(2) + 'invalid prefix length "64:ff9b::/100"'),
    ("dns64 64:ff9b::/60", D.format(2) + 'invalid prefix length "64:ff9b::/60"'),
    ("dns64 {\n prefix\n}", D.format(3) + "Wrong argument count"),
    ("dns64 {\n frobnicate x\n}", D.format(3) + "unknown property 'frobnicate'"),
]


@pytest.mark.parametrize(("body", "message"), PARSE_ERRORS)
def test_parse_errors(body: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        dns64_of(body)
    assert str(e.value).startswith(message)


async def test_translations_are_counted() -> None:
    labels = {"server": "dns://:53"}
    before = REGISTRY.get_sample_value("coredns_dns64_requests_translated_total", labels) or 0.0
    async with serve(corefile()) as s:
        await s.run([CASES[0][1], CASES[1][1], CASES[2][1]])  # one synthesised; an AAAA found; an IPv4 client
    assert REGISTRY.get_sample_value("coredns_dns64_requests_translated_total", labels) == before + 1
