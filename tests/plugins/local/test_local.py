"""local: the loopback zones answered as CoreDNS answers them, the parse table, and the hot path kept off."""

from __future__ import annotations

import pytest

from corefile import CorefileError
from dnsplugins.local import Local
from dnsserver.metrics import REGISTRY
from tests.dnstest import Case, plugin_in, serve

SOA = "{} 604800 IN SOA localhost. root.localhost. 1 0 0 0 604800"
# A later plugin that would answer anything: local must stop every name it owns before it.
COREFILE = """. {
    local
    hosts {
        192.0.2.9 localhost localhost.example.org www.example.org
        fallthrough
    }
    whoami
}"""

CASES = [
    Case("localhost.", "A", answer=["localhost. 604800 IN A 127.0.0.1"], aa=False),
    Case("LocalHost.", "AAAA", answer=["localhost. 604800 IN AAAA ::1"]),
    Case("localhost.", "SOA", answer=[SOA.format("localhost.")]),
    Case("localhost.", "NS", answer=["localhost. 604800 IN NS localhost."]),
    Case("localhost.", "MX", ns=[SOA.format("localhost.")]),
    Case("foo.localhost.", "A", answer=["foo.localhost. 604800 IN A 127.0.0.1"]),
    Case("foo.localhost.", "TXT", ns=[SOA.format("foo.localhost.")]),
    Case("localhost.example.org.", "AAAA", answer=["localhost.example.org. 604800 IN AAAA ::1"]),
    Case("127.in-addr.arpa.", "SOA", answer=[SOA.format("127.in-addr.arpa.")]),
    Case("0.in-addr.arpa.", "NS", answer=["0.in-addr.arpa. 604800 IN NS localhost."]),
    Case("255.in-addr.arpa.", "A", ns=[SOA.format("255.in-addr.arpa.")]),
    Case("1.0.0.127.in-addr.arpa.", "PTR", answer=["1.0.0.127.in-addr.arpa. 604800 IN PTR localhost."]),
    Case("1.0.0.127.in-addr.arpa.", "A", ns=[SOA.format("127.in-addr.arpa.")]),
    Case("2.0.0.127.in-addr.arpa.", "PTR", rcode="NXDOMAIN", ns=[SOA.format("127.in-addr.arpa.")]),
    Case("www.example.org.", "A", answer=["www.example.org. 3600 IN A 192.0.2.9"], aa=True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.qname}/{c.qtype}")
async def test_answers(case: Case) -> None:
    async with serve(COREFILE) as s:
        await s.run([case])
        await s.run([case])  # twice: a store behind local (hosts) never answers a name local owns
        assert not s.last_fast


async def test_prefix_off_passes_legacy_names_on() -> None:
    async with serve(COREFILE.replace("local\n", "local {\n localhost_prefix off\n }\n")) as s:
        await s.run(
            [
                Case("localhost.example.org.", "A", answer=["localhost.example.org. 3600 IN A 192.0.2.9"]),
                Case("a.localhost.", "A", answer=["a.localhost. 604800 IN A 127.0.0.1"]),
            ]
        )


def local_of(text: str) -> Local:
    return plugin_in(Local, text)


@pytest.mark.parametrize(
    ("body", "prefix"),
    [("local", True), ("local {\n localhost_prefix on\n}", True), ("local {\n localhost_prefix off\n}", False)],
)
def test_parse(body: str, prefix: bool) -> None:
    assert local_of(f". {{\n{body}\n}}").localhost_prefix is prefix


L = "Corefile:{} - plugin/local: "
PARSE_ERRORS = [
    ("local x", L.format(2) + "Wrong argument count or unexpected line ending after 'x'"),
    ("local {\n localhost_prefix\n}", L.format(3) + "Wrong argument count or unexpected line ending after"),
    ("local {\n localhost_prefix maybe\n}", L.format(3) + "localhost_prefix expects 'on' or 'off', got \"maybe\""),
    ("local {\n frobnicate x\n}", L.format(3) + "unknown property 'frobnicate'"),
]


@pytest.mark.parametrize(("body", "message"), PARSE_ERRORS)
def test_parse_errors(body: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        local_of(f". {{\n{body}\n}}")
    assert str(e.value).startswith(message)


METRIC = "coredns_local_localhost_requests_total"


async def test_localhost_subdomains_are_counted() -> None:
    before = REGISTRY.get_sample_value(METRIC) or 0.0
    async with serve(COREFILE) as s:
        await s.run([Case("localhost.", "A", answer=["localhost. 604800 IN A 127.0.0.1"])])  # the apex is not counted
        await s.run([Case("a.localhost.", "A", answer=["a.localhost. 604800 IN A 127.0.0.1"])])
        await s.run([Case("localhost.example.org.", "A", answer=["localhost.example.org. 604800 IN A 127.0.0.1"])])
    assert REGISTRY.get_sample_value(METRIC) == before + 2
