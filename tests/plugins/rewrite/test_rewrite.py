"""rewrite: parse tables (rules and FILE:LINE errors), serve tables through the real chain, reply rules
on records only a stub backend gives (CNAME, SRV, MX, NS, SOA, NAPTR, DNAME), and the cname rule."""

from __future__ import annotations

import logging
import re

import pytest
from dnslib import QTYPE, RD, RR, DNSQuestion, DNSRecord

from corefile import CorefileError
from dnsplugins import rewrite as rewriteplugin
from dnsplugins.rewrite import Rewrite, ttl_range, valid_name
from dnsserver.request import Request
from dnsserver.respond import finalize
from tests.dnstest import Case, check, plugin_in, rr, serve


def rewrite_of(text: str) -> Rewrite:
    return plugin_in(Rewrite, text)


def block(rules: str) -> str:
    return ". {\n" + rules + "\n}\n"


def describe(r: Rewrite) -> list[tuple[str, str]]:
    return [(type(rule).__name__, rule.mode) for rule in r.rules]


# (Corefile, the rules built, as (class, mode))
PARSE_CASES = [
    (block(" rewrite name a.example.org b.example.org"), [("NameRule", "stop")]),
    (block(" rewrite name exact a.example.org b.example.org"), [("NameRule", "stop")]),
    (block(" rewrite stop name prefix foo bar answer auto"), [("NameRule", "stop")]),
    (block(" rewrite continue name suffix .a.org .b.org answer auto"), [("NameRule", "continue")]),
    (block(" rewrite CONTINUE NAME Substring a b"), [("NameRule", "continue")]),
    (block(r" rewrite name regex (.*)\.my\.domain {1}.default.svc.cluster.local answer auto"),
     [("NameRule", "stop")]),
    (block(r" rewrite name regex (.*)\.a\.org {1}.b.org answer name (.*)\.b\.org {1}.a.org value (.*)\.b\.org"
           r" {1}.a.org answer value x y"), [("NameRule", "stop")]),
    (block(" rewrite type ANY HINFO\n rewrite class ch in"), [("TypeRule", "stop"), ("ClassRule", "stop")]),
    (block(" rewrite ttl a.org 10\n rewrite ttl exact a.org 10-20\n rewrite ttl prefix a 10-\n"
           " rewrite ttl suffix a.org -20\n rewrite ttl substring a 0\n rewrite continue ttl regex ^a 5"),
     [("ReplyRule", "stop")] * 5 + [("ReplyRule", "continue")]),
    (block(" rewrite rcode a.org SERVFAIL NXDOMAIN\n rewrite rcode regex .* 2 0"),
     [("ReplyRule", "stop"), ("ReplyRule", "stop")]),
    (block(" rewrite cname a.org. b.org.\n rewrite continue cname regex (.*)\\.x\\. {1}.y."),
     [("CnameRule", "stop"), ("CnameRule", "continue")]),
    # The block form: its lines make one rule, as if written on the directive's line.
    (block(" rewrite stop {\n  name regex (.*)-(west)\\.a\\.org {1}.{2}.b.org\n"
           "  answer name (.*)\\.(west)\\.b\\.org {1}-{2}.a.org\n }"), [("NameRule", "stop")]),
    (block(" rewrite {\n  continue name exact a.org b.org\n }"), [("NameRule", "continue")]),
    (block(" rewrite continue {\n  ttl a.org 15\n }\n rewrite name a.org b.org"),
     [("ReplyRule", "continue"), ("NameRule", "stop")]),
]


@pytest.mark.parametrize(("corefile", "want"), PARSE_CASES)
def test_parse(corefile: str, want: list[tuple[str, str]]) -> None:
    assert describe(rewrite_of(corefile)) == want


R2, R3 = "Corefile:2 - plugin/rewrite: ", "Corefile:3 - plugin/rewrite: "
PARSE_ERRORS = [
    (block(" rewrite"), R2 + "no rule type specified for rewrite"),
    (block(" rewrite stop"), R2 + "stop rule must begin with a rule type"),
    (block(" rewrite continue"), R2 + "continue rule must begin with a rule type"),
    (block(" rewrite stop { }"), R2 + "stop rule must begin with a rule type"),
    (block(" rewrite nome a b"), R2 + 'invalid rule type "nome"'),
    (block(" rewrite answer name a b"), R2 + "response rewrites must begin with a name rule"),
    (block(" rewrite edns0 local set 0xffee abcd"), R2 + "edns0 rules are not supported yet"),
    # name
    (block(" rewrite name a.org"), R2 + "too few arguments for a name rule"),
    (block(" rewrite name fuzzy a b"),
     R2 + "name rule supports only exact, prefix, suffix, substring, and regex name matching, received: fuzzy"),
    (block(" rewrite name regex (.* b"), R2 + "invalid regex matching pattern: (.*"),
    (block(" rewrite name regex (.*) {1}.{2}.b.org"),
     R2 + "the rewrite regex pattern ({1}.{2}.b.org) uses more subexpressions than its corresponding matching "
          "regex pattern ((.*))"),
    (block(" rewrite name regex a.org {0}.b.org"),
     R2 + "the rewrite regex pattern ({0}.b.org) uses more subexpressions than its corresponding matching "
          "regex pattern (a.org)"),
    (block(" rewrite name regex " + "a" * 10001 + " b"),
     R2 + "regex pattern too long (10001 characters, at most 10000)"),
    (block(" rewrite name suffix a b answer"), R2 + "invalid arguments for suffix rule"),
    (block(" rewrite name suffix a b answer other"), R2 + 'invalid type "other" for answer rule for suffix rule'),
    (block(" rewrite name suffix a b answer name"), R2 + "name answer rule for suffix rule: 2 arguments required"),
    (block(" rewrite name regex a b answer name x"), R2 + "name answer rule for regex rule: 2 arguments required"),
    (block(" rewrite name regex a b extra words"),
     R2 + "exceeded the number of arguments for a non-answer rule argument for regex rule"),
    (block(" rewrite name regex a b answer auto name x y"),
     R2 + "auto name answer rule cannot be combined with explicit name answer rules"),
    (block(" rewrite name regex a b answer name (x y"),
     R2 + "name answer rule for regex rule: invalid regex matching pattern: (x"),
    (block(" rewrite name regex a b answer value (.*) {1}.{2}"),
     R2 + "value answer rule for regex rule: the rewrite regex pattern ({1}.{2}) uses more subexpressions than "
          "its corresponding matching regex pattern ((.*))"),
    (block(" rewrite name regex a b answer name x y answer"), R2 + "type missing for answer rule for regex rule"),
    # type and class
    (block(" rewrite type A"), R2 + "type rules must have exactly two arguments"),
    (block(" rewrite type A AAAA MX"), R2 + "type rules must have exactly two arguments"),
    (block(" rewrite type A bogus"), R2 + 'invalid type "BOGUS"'),
    (block(" rewrite class IN"), R2 + "class rules must have exactly two arguments"),
    (block(" rewrite class IN XX"), R2 + 'invalid class "XX"'),
    # ttl
    (block(" rewrite ttl a.org"), R2 + "too few (1) arguments for a ttl rule"),
    (block(" rewrite ttl exact a.org 5 6"), R2 + "too many arguments for a ttl rule"),
    (block(" rewrite ttl a.org 5x"), R2 + "invalid TTL '5x' for a ttl rule"),
    (block(" rewrite ttl a.org -"), R2 + "invalid TTL '-' for a ttl rule"),
    (block(" rewrite ttl a.org 20-10"), R2 + "invalid TTL '20-10' for a ttl rule"),
    (block(" rewrite ttl a.org 1-2-3"), R2 + "invalid TTL '1-2-3' for a ttl rule"),
    (block(" rewrite ttl a.org 4294967296"), R2 + "invalid TTL '4294967296' for a ttl rule"),
    (block(" rewrite ttl fuzzy a.org 5"),
     R2 + "ttl rule supports only exact, prefix, suffix, substring, and regex name matching"),
    (block(" rewrite ttl regex ( 5"), R2 + "invalid regex pattern in a ttl rule: ("),
    # rcode
    (block(" rewrite rcode a.org SERVFAIL"), R2 + "too few (2) arguments for a rcode rule"),
    (block(" rewrite rcode exact a.org 2 0 1"), R2 + "too many arguments for a rcode rule"),
    (block(" rewrite rcode a.org BOGUS NOERROR"), R2 + "invalid matching RCODE 'BOGUS' for a rcode rule"),
    (block(" rewrite rcode a.org NOERROR 24"), R2 + "invalid replacement RCODE '24' for a rcode rule"),
    (block(" rewrite rcode a.org NOERROR BADCOOKIE"),
     R2 + "replacement RCODE 'BADCOOKIE' does not fit the header (0-15)"),
    (block(" rewrite rcode fuzzy a.org 2 0"),
     R2 + "rcode rule supports only exact, prefix, suffix, substring, and regex name matching"),
    # cname
    (block(" rewrite cname a.org"), R2 + "too few (1) arguments for a cname rule"),
    (block(" rewrite cname fuzzy a b"), R2 + "unknown cname rewrite type: fuzzy"),
    (block(" rewrite cname regex ([ b"), R2 + "invalid regex pattern in a cname rule: (["),
    # Where the mistake is: inside a block, in a later directive, on the directive's own line.
    (block(" rewrite stop {\n  name regex (x y\n }"), R3 + "invalid regex matching pattern: (x"),
    (block(" rewrite stop {\n  name regex x y\n  answer nome x y\n }"),
     "Corefile:4 - plugin/rewrite: invalid type \"nome\" for answer rule for regex rule"),
    (block(" rewrite name a.org b.org\n rewrite ttl a.org soon"), R3 + "invalid TTL 'soon' for a ttl rule"),
    (block(" rewrite name a.org b.org {\n  answer auto\n }"),
     R2 + "a rule written on the directive's line cannot also have a block"),
    (block(" rewrite {\n  name a.org b.org {\n   x\n  }\n }"), R3 + "unexpected '{' after 'name'"),
]


@pytest.mark.parametrize(("corefile", "message"), PARSE_ERRORS)
def test_parse_errors(corefile: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        rewrite_of(corefile)
    assert str(e.value) == message


TTL_RANGES = [("0", (0, 0)), ("60", (60, 60)), ("10-20", (10, 20)), ("10-", (10, 2147483647)), ("-20", (0, 20)),
              ("4294967295", (4294967295, 4294967295)), ("5-5", (5, 5)),
              ("-", None), ("", None), ("+5", None), ("1_0", None), ("٣", None), ("20-10", None), ("a-b", None)]


@pytest.mark.parametrize(("text", "want"), TTL_RANGES)
def test_ttl_range(text: str, want: tuple[int, int] | None) -> None:
    assert ttl_range(text) == want


@pytest.mark.parametrize(("name", "ok"), [
    (".", True), ("a.org.", True), ("a" * 63 + ".org.", True), ("a" * 64 + ".org.", False), ("a..org.", False),
    (".a.org.", False), ("", False), (".".join(["a" * 63] * 3) + "." + "a" * 61 + ".", True),
    (".".join(["a" * 63] * 3) + "." + "a" * 62 + ".", False),
])
def test_valid_name(name: str, ok: bool) -> None:
    assert valid_name(name) is ok


# -- through the real chain: hosts answers (inline entries), whoami shows what was passed on ---------

HOSTS = """\
    hosts {
        10.0.0.1 b.example.org
        10.0.0.2 svc.default.svc.cluster.local
        10.0.0.3 c.example.org bar.example.org
        10.0.0.4 web.svc.example.org
        10.0.0.5 ftp.service.us-west-1.consul
        10.0.0.6 x.example.org
        fd00::1 b.example.org
        fallthrough
    }
    whoami
"""


def corefile(rules: str, extra: str = "") -> str:
    return ". {\n" + rules + "\n" + extra + HOSTS + "}\n"


def passed_on(name: str, qtype: str = "A") -> Case:
    """whoami's reply: the name it was asked shows in its additional records."""
    return Case(name, qtype, extra=[f"{name} 0 IN A 10.240.0.1", f"_udp.{name} 0 IN SRV 0 0 40212 ."])


def a(owner: str, ip: str, ttl: int = 3600) -> str:
    return f"{owner} {ttl} IN A {ip}"


SERVE_CASES = [
    ("exact: answer owner mapped back", "    rewrite name exact a.example.org b.example.org",
     [Case("a.example.org.", answer=[a("a.example.org.", "10.0.0.1")], aa=True),
      Case("A.Example.ORG.", answer=[a("a.example.org.", "10.0.0.1")]),
      Case("a.example.org.", "AAAA", answer=["a.example.org. 3600 IN AAAA fd00::1"]),
      Case("b.example.org.", answer=[a("b.example.org.", "10.0.0.1")]),
      passed_on("xa.example.org."), passed_on("a.example.org.x.")]),
    ("exact, written in upper case with a dot", "    rewrite name A.EXAMPLE.ORG. B.Example.Org.",
     [Case("a.example.org.", answer=[a("a.example.org.", "10.0.0.1")])]),
    ("the Kubernetes exact rewrite", "    rewrite name exact foo.example.com svc.default.svc.cluster.local",
     [Case("foo.example.com.", answer=[a("foo.example.com.", "10.0.0.2")])]),
    ("prefix without answer auto: the rewritten name is seen", "    rewrite name prefix foo bar",
     [Case("foo.example.org.", answer=[a("bar.example.org.", "10.0.0.3")]),
      passed_on("foobar.example.org."),  # the prefix is the whole label `foo.`
      Case("foo.nothing.test.", extra=["bar.nothing.test. 0 IN A 10.240.0.1",
                                       "_udp.bar.nothing.test. 0 IN SRV 0 0 40212 ."])]),
    ("prefix with answer auto", "    rewrite name prefix foo bar answer auto",
     [Case("foo.example.org.", answer=[a("foo.example.org.", "10.0.0.3")]),
      # Names under the rewritten one map back too: whoami's _udp.bar... SRV owner.
      passed_on("foo.nothing.test.")]),
    ("suffix with answer auto swaps the suffix back", "    rewrite name suffix .example.com .example.org answer auto",
     [Case("b.example.com.", answer=[a("b.example.com.", "10.0.0.1")]),
      Case("web.svc.example.com.", answer=[a("web.svc.example.com.", "10.0.0.4")]),
      passed_on("b.example.net.")]),
    ("suffix without answer auto", "    rewrite name suffix example.com example.org",
     [Case("b.example.com.", answer=[a("b.example.org.", "10.0.0.1")]),
      # Not at a label boundary: a suffix is plain text.
      Case("bexample.com.", extra=["bexample.org. 0 IN A 10.240.0.1", "_udp.bexample.org. 0 IN SRV 0 0 40212 ."])]),
    ("substring", "    rewrite name substring svc.example.com svc.example.org answer auto",
     [Case("web.svc.example.com.", answer=[a("web.svc.example.com.", "10.0.0.4")])]),
    ("regex with {1} and answer auto (Kubernetes)",
     r"    rewrite name regex (.*)\.my\.domain {1}.default.svc.cluster.local answer auto",
     [Case("svc.my.domain.", answer=[a("svc.my.domain.", "10.0.0.2")]),
      Case("SVC.My.Domain.", answer=[a("svc.my.domain.", "10.0.0.2")]),
      passed_on("svc.other.domain.")]),
    # The name searched has its trailing dot, so an anchored pattern must allow for it.
    ("regex without answer rules: the rewritten owner shows",
     r"    rewrite name regex ^(b)\.example\.net\.$ {1}.example.org",
     [Case("b.example.net.", answer=[a("b.example.org.", "10.0.0.1")])]),
    ("regex anchored without the dot does not match", r"    rewrite name regex ^(b)\.example\.net$ {1}.example.org",
     [passed_on("b.example.net.")]),
    ("regex with two groups and an explicit answer name",
     "    rewrite stop {\n"
     r"        name regex (.*)-(us-west-1)\.example\.org {1}.service.{2}.consul" "\n"
     r"        answer name (.*)\.service\.(us-west-1)\.consul {1}-{2}.example.org" "\n"
     "    }",
     [Case("ftp-us-west-1.example.org.", answer=[a("ftp-us-west-1.example.org.", "10.0.0.5")])]),
    ("exact with answer value: PTR targets", r"    rewrite name exact 9.9.9.10.in-addr.arpa 1.0.0.10.in-addr.arpa"
     r" answer value (.*)\.example\.org {1}.example.net",
     [Case("9.9.9.10.in-addr.arpa.", "PTR", answer=["9.9.9.10.in-addr.arpa. 3600 IN PTR b.example.net."])]),
    ("type", "    rewrite type AAAA A",
     [Case("b.example.org.", "AAAA", answer=[a("b.example.org.", "10.0.0.1")]),
      Case("b.example.org.", "A", answer=[a("b.example.org.", "10.0.0.1")])]),
    ("type and name together (continue)",
     "    rewrite continue type MX A\n    rewrite name a.example.org b.example.org",
     [Case("a.example.org.", "MX", answer=[a("a.example.org.", "10.0.0.1")])]),
    ("ttl fixed", "    rewrite ttl b.example.org 60",
     [Case("b.example.org.", answer=[a("b.example.org.", "10.0.0.1", 60)]),
      Case("c.example.org.", answer=[a("c.example.org.", "10.0.0.3")])]),
    ("ttl ceiling by suffix", "    rewrite ttl suffix example.org -100",
     [Case("b.example.org.", answer=[a("b.example.org.", "10.0.0.1", 100)]),
      Case("c.example.org.", answer=[a("c.example.org.", "10.0.0.3", 100)])]),
    ("ttl floor, all sections", "    rewrite ttl regex ^nothing 30-",
     [Case("nothing.test.", extra=["nothing.test. 30 IN A 10.240.0.1", "_udp.nothing.test. 30 IN SRV 0 0 40212 ."]),
      Case("b.example.org.", answer=[a("b.example.org.", "10.0.0.1")])]),
    ("ttl range", "    rewrite ttl prefix b 10-20\n    rewrite ttl prefix c 5000-6000",
     [Case("b.example.org.", answer=[a("b.example.org.", "10.0.0.1", 20)]),
      Case("c.example.org.", answer=[a("c.example.org.", "10.0.0.3", 5000)])]),
    ("stop: the first matching rule ends the list",
     "    rewrite name a.example.org b.example.org\n    rewrite name b.example.org c.example.org",
     [Case("a.example.org.", answer=[a("a.example.org.", "10.0.0.1")]),
      Case("b.example.org.", answer=[a("b.example.org.", "10.0.0.3")])]),
    ("continue: the next rule sees the rewritten name, and the reply unwinds in reverse",
     "    rewrite continue name a.example.org b.example.org\n    rewrite name b.example.org c.example.org",
     [Case("a.example.org.", answer=[a("a.example.org.", "10.0.0.3")]),
      Case("b.example.org.", answer=[a("b.example.org.", "10.0.0.3")])]),
    ("continue into a ttl rule on the rewritten name",
     "    rewrite continue name a.example.org b.example.org\n    rewrite ttl b.example.org 7",
     [Case("a.example.org.", answer=[a("a.example.org.", "10.0.0.1", 7)]),
      Case("b.example.org.", answer=[a("b.example.org.", "10.0.0.1", 7)])]),
    ("stop before a ttl rule", "    rewrite name a.example.org b.example.org\n    rewrite ttl b.example.org 7",
     [Case("a.example.org.", answer=[a("a.example.org.", "10.0.0.1")]),
      Case("b.example.org.", answer=[a("b.example.org.", "10.0.0.1", 7)])]),
    ("a ttl rule that matches stops too: whoami is asked a.example.org, its TTLs set to 7",
     "    rewrite ttl a.example.org 7\n    rewrite name a.example.org b.example.org",
     [Case("a.example.org.", extra=["a.example.org. 7 IN A 10.240.0.1", "_udp.a.example.org. 7 IN SRV 0 0 40212 ."])]),
    ("rules in the block form and on lines, in Corefile order",
     "    rewrite continue {\n        name suffix .example.com .example.org answer auto\n    }\n"
     "    rewrite name prefix x c answer auto",
     [Case("x.example.com.", answer=[a("x.example.com.", "10.0.0.3")]),
      Case("b.example.com.", answer=[a("b.example.com.", "10.0.0.1")])]),
]


@pytest.mark.parametrize(("name", "rules", "cases"), SERVE_CASES, ids=[c[0] for c in SERVE_CASES])
async def test_serve(name: str, rules: str, cases: list[Case]) -> None:
    async with serve(corefile(rules)) as s:
        await s.run(cases)


async def test_question_keeps_the_client_spelling() -> None:
    text = corefile("    rewrite name regex (.*)\\.my\\.domain {1}.default.svc.cluster.local answer auto\n"
                    "    rewrite type AAAA A")
    async with serve(text) as s:
        for qname, qtype in (("SvC.mY.DoMaIn.", "A"), ("B.example.ORG.", "AAAA")):
            reply = await s.query(Case(qname, qtype))
            assert str(reply.q.qname) == qname
            assert QTYPE[reply.q.qtype] == qtype
            assert reply.header.id == 4321
        # The mapped-back owner takes the client's spelling of the name it asked.
        reply = await s.query(Case("SvC.mY.DoMaIn."))
        assert [str(r.rname) for r in reply.rr] == ["SvC.mY.DoMaIn."]


async def test_class_rewrite() -> None:
    # A non-IN query reaches the chain only when chaos (or forward) is loaded, as in CoreDNS.
    async with serve(corefile("    rewrite class CH IN", "    chaos\n")) as s:
        # hosts and whoami (which copies the class it is asked) both see an IN query.
        await s.run([Case("b.example.org.", qclass="CH", answer=[a("b.example.org.", "10.0.0.1")]),
                     Case("q.test.", qclass="CH", extra=["q.test. 0 IN A 10.240.0.1",
                                                         "_udp.q.test. 0 IN SRV 0 0 40212 ."])])
    async with serve(corefile("    rewrite class CH IN")) as s:
        await s.run([Case("b.example.org.", qclass="CH", rcode="REFUSED")])
    # chaos runs before rewrite (plugin.cfg order): an IN query made CH never reaches it; whoami gets CH.
    async with serve(corefile("    rewrite class IN CH", "    chaos v1\n")) as s:
        await s.run([Case("version.bind.", "TXT", extra=["version.bind. 0 CH A 10.240.0.1",
                                                         "_udp.version.bind. 0 CH SRV 0 0 40212 ."])])


async def test_rcode_rewrite() -> None:
    text = (". {\n    rewrite rcode nope.example.org SERVFAIL NXDOMAIN\n"
            "    rewrite rcode regex ^empty NOERROR REFUSED\n"
            "    hosts {\n        10.0.0.1 b.example.org\n    }\n}\n")
    async with serve(text) as s:
        await s.run([Case("nope.example.org.", rcode="NXDOMAIN"),
                     Case("other.example.org.", rcode="SERVFAIL"),
                     Case("b.example.org.", answer=[a("b.example.org.", "10.0.0.1")])])
    # Nobody answers at all: the SERVFAIL the server would send is what the rule sees.
    async with serve(". {\n    rewrite rcode x.example.org 2 5\n}\n") as s:
        await s.run([Case("x.example.org.", rcode="REFUSED"), Case("y.example.org.", rcode="SERVFAIL")])


async def test_invalid_name_is_servfail_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="portolan")
    text = corefile("    rewrite name suffix .example.com ..example.org\n"
                    "    rewrite name regex ^(.*)\\.long\\.test {1}{1}{1}{1}{1}.example.org")
    async with serve(text) as s:
        await s.run([Case("b.example.com.", rcode="SERVFAIL"),
                     Case("abcdefghijklmn.long.test.", rcode="SERVFAIL"),
                     Case("abc.long.test.", extra=["abcabcabcabcabc.example.org. 0 IN A 10.240.0.1",
                                                   "_udp.abcabcabcabcabc.example.org. 0 IN SRV 0 0 40212 ."])])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "[ERROR] plugin/rewrite: invalid name after rewrite: b..example.org. (query b.example.com. A)",
        "[ERROR] plugin/rewrite: invalid name after rewrite: " + "abcdefghijklmn" * 5
        + ".example.org. (query abcdefghijklmn.long.test. A)",
    ]


async def test_invalid_name_with_errors_plugin_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="portolan")
    async with serve(corefile("    errors\n    rewrite name suffix .example.com ..example.org")) as s:
        await s.run([Case("b.example.com.", rcode="SERVFAIL")])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["[ERROR] plugin/errors: 2 b.example.com. A: plugin/rewrite: invalid name after rewrite: "
                      "b..example.org."]


def responses_by_plugin() -> dict[str, float]:
    from dnsserver.metrics import REGISTRY
    out: dict[str, float] = {}
    for m in REGISTRY.collect():
        for sample in m.samples:
            if sample.name == "coredns_dns_responses_total":
                plugin = sample.labels.get("plugin", "")
                out[plugin] = out.get(plugin, 0) + sample.value
    return out


async def test_metrics_label_names_the_answering_plugin() -> None:
    text = ". {\n    prometheus localhost:0\n" + corefile("    rewrite name a.example.org b.example.org")[4:]
    before = responses_by_plugin()
    async with serve(text) as s:
        await s.run([Case("a.example.org.", answer=[a("a.example.org.", "10.0.0.1")])])
    after = responses_by_plugin()
    assert after.get("hosts", 0) - before.get("hosts", 0) == 1
    assert after.get("rewrite", 0) == before.get("rewrite", 0)


# -- reply rules on records only a stub backend gives --------------------------------------------

Zone = dict[tuple[str, str], tuple[list[str], list[str], list[str]]]


class Backend:
    """A stub `next`: answers from a table keyed by (name, type), NXDOMAIN otherwise; records what it was asked.

    The RR objects are built once and handed out every time, as hosts and kubernetes do, so a rewrite
    that changed them in place would show up in the next reply.
    """

    def __init__(self, zone: Zone) -> None:
        self.zone = {k: tuple([rr(t) for t in sect] for sect in v) for k, v in zone.items()}
        self.asked: list[tuple[str, str, str]] = []

    async def __call__(self, req: Request) -> DNSRecord | None:
        qtype = QTYPE[req.qtype]
        self.asked.append((req.qname, qtype, req.msg.q.qname.__str__()))
        found = self.zone.get((req.name, qtype))
        if found is None:
            return req.reply(3)
        reply = req.reply(aa=True)
        reply.rr, reply.auth, reply.ar = (list(s) for s in found)
        return reply


def request(qname: str, qtype: str = "A") -> Request:
    msg = DNSRecord(q=DNSQuestion(qname, getattr(QTYPE, qtype)))
    msg.header.id = 4321
    return Request(msg, msg.pack(), ("10.240.0.1", 40212), "udp", "127.0.0.1", "dns://:53")


async def ask(plugin: Rewrite, backend: Backend, case: Case) -> DNSRecord:
    req = request(case.qname, case.qtype)
    reply = await plugin.serve(req, backend)
    assert reply is not None
    return DNSRecord.parse(finalize(req, reply))


TARGETS: Zone = {
    ("b.example.org.", "CNAME"): (["b.example.org. 60 IN CNAME x.b.example.org."], [], []),
    ("b.example.org.", "A"): (["b.example.org. 60 IN CNAME x.b.example.org.", "x.b.example.org. 60 IN A 10.0.0.9"],
                              [], []),
    ("b.example.org.", "SRV"): (["b.example.org. 60 IN SRV 10 20 8080 web.b.example.org."], [],
                                ["web.b.example.org. 60 IN A 10.0.0.8"]),
    ("b.example.org.", "MX"): (["b.example.org. 60 IN MX 10 mail.b.example.org."], [], []),
    ("b.example.org.", "NS"): ([], ["b.example.org. 60 IN NS ns1.b.example.org."],
                               ["ns1.b.example.org. 60 IN A 10.0.0.7"]),
    ("b.example.org.", "TXT"): ([], ["b.example.org. 60 IN SOA ns.b.example.org. host.b.example.org. 1 2 3 4 5"],
                                []),
    ("b.example.org.", "NAPTR"): (['b.example.org. 60 IN NAPTR 100 10 "S" "SIP+D2U" "" _sip._udp.b.example.org.'],
                                  [], []),
    ("b.example.org.", "PTR"): (["b.example.org. 60 IN PTR host.b.example.org."], [], []),
}

VALUE_CASES = [
    # answer auto (always on for exact): values equal to or under the rewritten name map back too.
    ("auto: CNAME", "rewrite name exact a.example.org b.example.org",
     Case("a.example.org.", "A", answer=["a.example.org. 60 IN CNAME x.a.example.org.",
                                         "x.a.example.org. 60 IN A 10.0.0.9"], ordered=True)),
    ("auto: SRV and additional", "rewrite name exact a.example.org b.example.org",
     Case("a.example.org.", "SRV", answer=["a.example.org. 60 IN SRV 10 20 8080 web.a.example.org."],
          extra=["web.a.example.org. 60 IN A 10.0.0.8"])),
    ("auto: MX", "rewrite name exact a.example.org b.example.org",
     Case("a.example.org.", "MX", answer=["a.example.org. 60 IN MX 10 mail.a.example.org."])),
    ("auto: NS in authority", "rewrite name exact a.example.org b.example.org",
     Case("a.example.org.", "NS", ns=["a.example.org. 60 IN NS ns1.a.example.org."],
          extra=["ns1.a.example.org. 60 IN A 10.0.0.7"])),
    ("auto: SOA primary server, not the mailbox", "rewrite name exact a.example.org b.example.org",
     Case("a.example.org.", "TXT", ns=["a.example.org. 60 IN SOA ns.a.example.org. host.b.example.org. 1 2 3 4 5"])),
    ("auto: NAPTR replacement", "rewrite name exact a.example.org b.example.org",
     Case("a.example.org.", "NAPTR",
          answer=['a.example.org. 60 IN NAPTR 100 10 "S" "SIP+D2U" "" _sip._udp.a.example.org.'])),
    ("auto: PTR", "rewrite name exact a.example.org b.example.org",
     Case("a.example.org.", "PTR", answer=["a.example.org. 60 IN PTR host.a.example.org."])),
    ("prefix without auto: nothing maps back", "rewrite name prefix a b",
     Case("a.example.org.", "MX", answer=["b.example.org. 60 IN MX 10 mail.b.example.org."])),
    ("answer value only: owners stay, values change", r"rewrite name regex ^a\.(.*)\.$ b.{1} answer value "
     r"^(.*)\.b\.example\.org {1}.elsewhere.net",
     Case("a.example.org.", "SRV", answer=["b.example.org. 60 IN SRV 10 20 8080 web.elsewhere.net."],
          extra=["web.b.example.org. 60 IN A 10.0.0.8"])),
    ("answer name and value", r"rewrite name regex ^a\.(.*)\.$ b.{1} answer name ^(.*)b\.example\.org {1}a.example.org"
     r" value ^(.*)\.b\.example\.org {1}.a.example.org",
     Case("a.example.org.", "A", answer=["a.example.org. 60 IN CNAME x.a.example.org.",
                                         "x.a.example.org. 60 IN A 10.0.0.9"], ordered=True)),
    ("ttl on every section", "rewrite ttl regex example 1-30",
     Case("b.example.org.", "SRV", answer=["b.example.org. 30 IN SRV 10 20 8080 web.b.example.org."],
          extra=["web.b.example.org. 30 IN A 10.0.0.8"])),
]


@pytest.mark.parametrize(("name", "rules", "case"), VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
async def test_reply_values(name: str, rules: str, case: Case) -> None:
    backend = Backend(TARGETS)
    plugin = rewrite_of(block("    " + rules))
    before = {k: [str(r) for rrs in v for r in rrs] for k, v in backend.zone.items()}
    check(case, await ask(plugin, backend, case))
    check(case, await ask(plugin, backend, case))  # the same again: nothing shared was changed
    assert {k: [str(r) for rrs in v for r in rrs] for k, v in backend.zone.items()} == before
    # OPT records are never renamed nor re-timed, and the client's question is back.
    req = request(case.qname, case.qtype)
    reply = await plugin.serve(req, backend)
    assert reply is not None
    assert all(r.rtype != 41 for r in reply.ar)


async def test_dname_target() -> None:
    # dnslib has no DNAME class: the record comes as raw rdata, and no zone-text form to write it in.
    backend = Backend({})
    dname = RR("b.example.org.", 39, ttl=60, rdata=RD(b"\x01d\x01b\x07example\x03org\x00"))
    backend.zone[("b.example.org.", "DNAME")] = ([dname], [], [])
    plugin = rewrite_of(block("    rewrite name exact a.example.org b.example.org"))
    reply = await ask(plugin, backend, Case("a.example.org.", "DNAME"))
    assert [(str(r.rname), r.rtype, r.rdata.data) for r in reply.rr] == \
        [("a.example.org.", 39, b"\x01d\x01a\x07example\x03org\x00")]
    assert dname.rdata.data == b"\x01d\x01b\x07example\x03org\x00"
    assert str(dname.rname) == "b.example.org."


def test_dname_helper_rejects_compression() -> None:
    from dnsplugins.rewrite import dname_target
    assert dname_target(RD(b"\x01d\x07example\x03org\x00")) == "d.example.org."
    assert dname_target(RD(b"\x01d\xc0\x0c")) is None
    assert dname_target(RD(b"\x05ab")) is None
    assert dname_target(RD(b"\x00")) == "."


async def test_backend_sees_the_rewritten_question() -> None:
    backend = Backend(TARGETS)
    plugin = rewrite_of(block("    rewrite continue name exact a.example.org b.example.org\n"
                              "    rewrite type A CNAME"))
    await ask(plugin, backend, Case("A.Example.Org.", "A"))
    await ask(plugin, backend, Case("Other.Example.Org.", "MX"))
    # Rewritten: the new name in lower case, the new type. Untouched: the query as the client spelled it.
    assert backend.asked == [("b.example.org.", "CNAME", "b.example.org."),
                             ("Other.Example.Org.", "MX", "Other.Example.Org.")]


CNAME_ZONE: Zone = {
    ("www.example.org.", "A"): (["www.example.org. 300 IN CNAME www.old-cdn.net.",
                                 "www.old-cdn.net. 30 IN A 192.0.2.1"], [], []),
    ("www.example.org.", "AAAA"): (["www.example.org. 300 IN CNAME www.old-cdn.net.",
                                    "www.old-cdn.net. 30 IN AAAA 2001:db8::1"], [], []),
    ("chain.example.org.", "A"): (["chain.example.org. 300 IN CNAME www.example.org.",
                                   "www.example.org. 300 IN CNAME www.old-cdn.net.",
                                   "www.old-cdn.net. 30 IN A 192.0.2.1"], [], []),
    ("www.new-cdn.net.", "A"): (["www.new-cdn.net. 60 IN A 198.51.100.1", "www.new-cdn.net. 60 IN A 198.51.100.2"],
                                [], []),
    ("www.new-cdn.net.", "AAAA"): (["www.new-cdn.net. 60 IN AAAA 2001:db8::2"], [], []),
    ("plain.example.org.", "A"): (["plain.example.org. 300 IN A 192.0.2.9"], [], []),
}
NEW_A = ["www.new-cdn.net. 60 IN A 198.51.100.1", "www.new-cdn.net. 60 IN A 198.51.100.2"]
CNAME_CASES = [
    ("exact", "rewrite cname exact www.old-cdn.net www.new-cdn.net",
     Case("www.example.org.", answer=["www.example.org. 300 IN CNAME www.new-cdn.net.", *NEW_A])),
    ("exact, same type (AAAA)", "rewrite cname www.old-cdn.net. www.new-cdn.net.",
     Case("www.example.org.", "AAAA", answer=["www.example.org. 300 IN CNAME www.new-cdn.net.",
                                               "www.new-cdn.net. 60 IN AAAA 2001:db8::2"])),
    ("prefix, as written", "rewrite cname prefix www.old www.new",
     Case("www.example.org.", answer=["www.example.org. 300 IN CNAME www.new-cdn.net.", *NEW_A])),
    ("suffix", "rewrite cname suffix old-cdn.net. new-cdn.net.",
     Case("www.example.org.", answer=["www.example.org. 300 IN CNAME www.new-cdn.net.", *NEW_A])),
    ("substring", "rewrite cname substring old new",
     Case("www.example.org.", answer=["www.example.org. 300 IN CNAME www.new-cdn.net.", *NEW_A])),
    ("regex", r"rewrite cname regex ^(.*)\.old-(cdn)\.net\.$ {1}.new-{2}.net.",
     Case("www.example.org.", answer=["www.example.org. 300 IN CNAME www.new-cdn.net.", *NEW_A])),
    ("a chain keeps its head", "rewrite cname exact www.old-cdn.net www.new-cdn.net",
     Case("chain.example.org.", answer=["chain.example.org. 300 IN CNAME www.example.org.",
                                        "www.example.org. 300 IN CNAME www.new-cdn.net.", *NEW_A])),
    ("no CNAME, no change", "rewrite cname exact www.old-cdn.net www.new-cdn.net",
     Case("plain.example.org.", answer=["plain.example.org. 300 IN A 192.0.2.9"])),
    ("target not matching", "rewrite cname exact other.net www.new-cdn.net",
     Case("www.example.org.", answer=["www.example.org. 300 IN CNAME www.old-cdn.net.",
                                      "www.old-cdn.net. 30 IN A 192.0.2.1"])),
    ("new target unknown: the rewritten CNAME alone", "rewrite cname exact www.old-cdn.net gone.example.",
     Case("www.example.org.", answer=["www.example.org. 300 IN CNAME gone.example."])),
]


@pytest.mark.parametrize(("name", "rules", "case"), CNAME_CASES, ids=[c[0] for c in CNAME_CASES])
async def test_cname_target(name: str, rules: str, case: Case) -> None:
    backend = Backend(CNAME_ZONE)
    plugin = rewrite_of(block("    " + rules))
    case.ordered = True
    check(case, await ask(plugin, backend, case))


async def test_cname_rule_matches_every_query_so_stop_ends_the_list() -> None:
    backend = Backend(CNAME_ZONE)
    plugin = rewrite_of(block("    rewrite cname exact www.old-cdn.net www.new-cdn.net\n"
                              "    rewrite name exact www.example.org plain.example.org"))
    check(Case("www.example.org.", answer=["www.example.org. 300 IN CNAME www.new-cdn.net.", *NEW_A]),
          await ask(plugin, backend, Case("www.example.org.")))


async def test_rcode_rule_with_stub() -> None:
    backend = Backend(TARGETS)
    plugin = rewrite_of(block("    rewrite rcode suffix example.org NXDOMAIN SERVFAIL"))
    check(Case("nope.example.org.", rcode="SERVFAIL"), await ask(plugin, backend, Case("nope.example.org.")))
    check(Case("nope.example.net.", rcode="NXDOMAIN"), await ask(plugin, backend, Case("nope.example.net.")))


def test_docstring_examples_build() -> None:
    blocks = re.findall(r"```corefile\n(.*?)```", rewriteplugin.__doc__ or "", re.S)
    assert len(blocks) == 3
    for text in blocks:
        assert rewrite_of(text).rules


async def test_docstring_examples_answer() -> None:
    first, second, _ = re.findall(r"```corefile\n(.*?)```", rewriteplugin.__doc__ or "", re.S)
    async with serve(first) as s:
        await s.run([Case("foo.example.com.", answer=["foo.example.com. 3600 IN A 10.96.0.10"])])
    async with serve(second) as s:
        # whoami answers for foo.default.svc.cluster.local; auto maps it back, the ttl rule raises TTL 0 to 30.
        await s.run([Case("foo.my.domain.", extra=["foo.my.domain. 30 IN A 10.240.0.1",
                                                   "_udp.foo.my.domain. 30 IN SRV 0 0 40212 ."])])
