"""Table tests for the small plugins: whoami, chaos, any, bind, health, ready, prometheus, reload."""

from __future__ import annotations

from pathlib import Path

import pytest

from corefile import CorefileError, parse
from dnsserver.config import build
from tests.dnstest import Case, serve


def load(text: str):
    return build(parse(text, "Corefile"), 53)


LONG_NAME = ("a" * 63 + ".") * 3 + "b" * 58 + "."

SERVE_CASES = [
    (". {\n whoami\n}", Case("a.example.org.", "A", aa=True,
                             extra=["a.example.org. 0 IN A 10.240.0.1",
                                    "_udp.a.example.org. 0 IN SRV 0 0 40212 ."])),
    (". {\n whoami\n}", Case("a.example.org.", "A", proto="tcp", client=("fd00::7", 5353),
                             extra=["a.example.org. 0 IN AAAA fd00::7",
                                    "_tcp.a.example.org. 0 IN SRV 0 0 5353 ."])),
    (". {\n chaos v1 alice\n}", Case("version.bind.", "TXT", qclass="CH", answer=['version.bind. 0 CH TXT "v1"'])),
    (". {\n chaos v1 alice\n}", Case("version.server.", "TXT", qclass="CH",
                                    answer=['version.server. 0 CH TXT "v1"'])),
    (". {\n chaos v1 alice\n}", Case("authors.bind.", "TXT", qclass="CH",
                                    answer=['authors.bind. 0 CH TXT "alice"'])),
    # Not a chaos name and nothing after chaos: the chain ends unanswered -> SERVFAIL.
    (". {\n chaos v1\n}", Case("other.bind.", "TXT", qclass="CH", rcode="SERVFAIL")),
    # chaos loaded, so CH is accepted; IN queries pass through to whoami.
    (". {\n chaos\n whoami\n}", Case("x.", "A", extra=["x. 0 IN A 10.240.0.1", "_udp.x. 0 IN SRV 0 0 40212 ."])),
    # A question name of 252 octets: `_udp.` would make the SRV owner too long for any message, so the
    # SRV is left out (fuzz/corpus/dns/crash-whoami-long-name: the reply failed to pack).
    (". {\n whoami\n}", Case(LONG_NAME, "A", extra=[f"{LONG_NAME} 0 IN A 10.240.0.1"])),
    # Without chaos/forward a non-IN class is refused.
    (". {\n whoami\n}", Case("version.bind.", "TXT", qclass="CH", rcode="REFUSED")),
    (". {\n any\n whoami\n}", Case("x.org.", "ANY", answer=['x.org. 8482 IN HINFO "ANY obsoleted" "See RFC 8482"'])),
    # No zone matches -> REFUSED.
    ("example.org {\n whoami\n}", Case("example.com.", "A", rcode="REFUSED")),
]


@pytest.mark.parametrize(("corefile", "case"), SERVE_CASES)
async def test_serve(corefile: str, case: Case) -> None:
    async with serve(corefile) as s:
        await s.run([case])


async def test_bufsize_truncates_and_keeps_opt() -> None:
    authors = " ".join(f"someone-{i}@example.org" for i in range(40))
    async with serve(f". {{\n chaos v1 {authors}\n}}") as s:
        r = await s.query(Case("authors.bind.", "TXT", qclass="CH", bufsize=512))
        assert r.header.tc == 1
        assert len(r.pack()) <= 512
        assert [x.rtype for x in r.ar] == [41]
        assert r.ar[0].rclass == 512
        r = await s.query(Case("authors.bind.", "TXT", qclass="CH", proto="tcp"))
        assert r.header.tc == 0
        assert len(r.rr) == 40


PARSE_ERRORS = [
    (". {\n whoami foo\n}", "Corefile:2 - plugin/whoami: Wrong argument count"),
    (". {\n any x\n}", "Corefile:2 - plugin/any: Wrong argument count"),
    (". {\n bind\n whoami\n}", "Corefile:2 - plugin/bind: Wrong argument count"),
    (". {\n bind not-an-interface-xyz\n}", "Corefile:2 - plugin/bind: not a valid IP address or interface"),
    (". {\n bind 127.0.0.1 {\n  only 1.2.3.4\n }\n}", "Corefile:3 - plugin/bind: unknown property 'only'"),
    (". {\n health :8080 :8081\n}", "Corefile:2 - plugin/health: Wrong argument count"),
    (". {\n health {\n  lameduck soon\n }\n}", "Corefile:3 - plugin/health: unable to parse lameduck"),
    (". {\n health {\n  deadduck 5s\n }\n}", "Corefile:3 - plugin/health: unknown property 'deadduck'"),
    (". {\n ready\n ready\n}", "Corefile:3 - plugin/ready: this plugin can only be used once per Server Block"),
    (". {\n ready {\n  monitor sometimes\n }\n}", "Corefile:3 - plugin/ready: Wrong argument count"),
    (". {\n prometheus :9153\n prometheus :9154\n}", "Corefile:3 - plugin/prometheus: this plugin can only"),
    (". {\n prometheus localhost:99999\n}", "Corefile:2 - plugin/prometheus: invalid address"),
    (". {\n reload 1s\n}", "Corefile:2 - plugin/reload: interval value must be greater or equal to 2s"),
    (". {\n reload 10s 0.5s\n}", "Corefile:2 - plugin/reload: jitter value must be greater or equal to 1s"),
    (". {\n reload 10s 1s 2s\n}", "Corefile:2 - plugin/reload: Wrong argument count"),
    (". {\n reload often\n}", "Corefile:2 - plugin/reload: time: invalid duration"),
    (". {\n whoami\n}\n. {\n whoami\n}", "Corefile:4 - cannot serve dns://.:53 - it is already defined"),
    ("example.org:53 {\n whoami\n}\nexample.org:53 {\n bind 127.0.0.1\n whoami\n}",
     "Corefile:4 - cannot serve dns://example.org.:53 - zone overlap"),
    (". {\n frobnicate\n}", "Corefile:2 - Error during parsing: Unknown directive 'frobnicate'"),
    ("tls://. {\n whoami\n}", "Corefile:1 - tls:// server blocks need the tls plugin"),
    ("quic://. {\n whoami\n}", "Corefile:1 - quic:// server blocks are not supported"),
    ("https3://. {\n whoami\n}", "Corefile:1 - https3:// server blocks are not supported"),
    ("https://. {\n whoami\n}\nhttps://.:443 {\n whoami\n}", "Corefile:4 - cannot serve https://.:443 - it is already"),
    (". {\n tls a.pem\n}", "Corefile:2 - plugin/tls: Wrong argument count"),
    (". {\n tls nope.pem nope.key\n}", "Corefile:2 - plugin/tls: no such file"),
]


@pytest.mark.parametrize(("text", "want"), PARSE_ERRORS)
def test_setup_errors(text: str, want: str) -> None:
    with pytest.raises(CorefileError) as ei:
        load(text)
    assert str(ei.value).startswith(want), str(ei.value)


def test_https_blocks_get_a_tls_context_of_their_own() -> None:
    """The tls plugin's https:// context offers HTTP in ALPN; the DoT one must not. Without the plugin an
    https:// block is plain HTTP (a proxy in front ends TLS), as in CoreDNS."""
    docs = Path(__file__).resolve().parents[1] / "data" / "docs"
    cfg = build(parse("tls://. https://. {\n tls cert.pem key.pem\n whoami\n}\nhttps://example.org:8443 {\n whoami\n}",
                      str(docs / "Corefile")), 53)
    both, plain = cfg.blocks
    assert sorted(cfg.listeners) == [("https", "", 443), ("https", "", 8443), ("tls", "", 853)]
    assert both.tls_for("tls") is both.tls is not None
    assert both.tls_for("https") is not None
    assert both.tls_for("https") is not both.tls
    assert plain.tls_for("https") is None


def test_setup_values() -> None:
    cfg = load(". {\n bind 127.0.0.1 ::1 127.0.0.1\n health {\n  lameduck 5s\n }\n reload 10s 8s\n whoami\n}")
    b = cfg.blocks[0]
    assert b.bind == ["127.0.0.1", "::1"]
    health = next(p for p in b.plugins if p.name == "health")
    assert health.address == ":8080"
    assert health.lameduck == 5.0
    reload = next(p for p in b.plugins if p.name == "reload")
    assert reload.interval == 10.0
    assert reload.jitter == 5.0
    # The chain runs in the table's order, not the Corefile's.
    cfg = load(". {\n whoami\n any\n chaos\n errors\n}")
    assert cfg.blocks[0].names == ["errors", "any", "chaos", "whoami"]
    # Listeners: one per bind address; same zone on two addresses in two blocks is fine.
    cfg = load("example.org {\n bind 127.0.0.1\n whoami\n}\nexample.org {\n bind 127.0.0.2\n whoami\n}")
    assert sorted(cfg.listeners) == [("dns", "127.0.0.1", 53), ("dns", "127.0.0.2", 53)]


def test_bind_interface_lo() -> None:
    cfg = load(". {\n bind lo {\n  except ::1\n }\n whoami\n}")
    assert cfg.blocks[0].bind == ["127.0.0.1"]
