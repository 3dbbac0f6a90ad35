"""log: the parse table, the line it writes (Common/Combined/custom formats), class filters, scopes."""

from __future__ import annotations

import logging
import re

import pytest
from dnslib import QTYPE, RR, SOA, A, DNSHeader, DNSQuestion, DNSRecord

from corefile import CorefileError, parse
from dnsplugins import log as logplugin
from dnsplugins.log import COMBINED_FORMAT, COMMON_FORMAT, Rule, go_seconds, reply_class, reply_type
from dnsplugins.whoami import Whoami
from dnsserver.config import build
from dnsserver.request import Request
from tests.dnstest import Case, serve

DURATION = r"\d+(\.\d+)?s"
ME = r"10\.240\.0\.1:40212 - 4321 "  # the default test client and query ID
ALL = frozenset({"all"})


def log_rules(text: str) -> list[Rule]:
    cfg = build(parse(text, "Corefile"), 53)
    return next(p for p in cfg.blocks[0].plugins if p.name == "log").rules  # type: ignore[attr-defined]


# (Corefile, expected rules as (scope, format, classes))
PARSE_CASES = [
    (". {\n log\n}", [(".", COMMON_FORMAT, ALL)]),
    (". {\n log example.org\n}", [("example.org.", COMMON_FORMAT, ALL)]),
    (". {\n log Example.ORG. {common}\n}", [("example.org.", COMMON_FORMAT, ALL)]),
    (". {\n log a.org b.org {combined}\n}",
     [("a.org.", COMBINED_FORMAT, ALL), ("b.org.", COMBINED_FORMAT, ALL)]),
    # A lone format is a format (CoreDNS would read it as a name and never log).
    (". {\n log {combined}\n}", [(".", COMBINED_FORMAT, ALL)]),
    ('. {\n log . "{proto} Request: {name}"\n}', [(".", "{proto} Request: {name}", ALL)]),
    (". {\n log . {\n  class denial error\n }\n}", [(".", COMMON_FORMAT, frozenset({"denial", "error"}))]),
    (". {\n log . {\n  class denial\n  class success\n }\n}",
     [(".", COMMON_FORMAT, frozenset({"denial", "success"}))]),
    (". {\n log a.org b.org {\n  class error\n }\n}",
     [("a.org.", COMMON_FORMAT, frozenset({"error"})), ("b.org.", COMMON_FORMAT, frozenset({"error"}))]),
    # Several log lines: rules in Corefile order, each with its own classes.
    (". {\n log a.org {\n  class error\n }\n log\n}",
     [("a.org.", COMMON_FORMAT, frozenset({"error"})), (".", COMMON_FORMAT, ALL)]),
]


@pytest.mark.parametrize(("corefile", "want"), PARSE_CASES)
def test_parse(corefile: str, want: list[tuple[str, str, frozenset[str]]]) -> None:
    assert [(r.scope, r.format, r.classes) for r in log_rules(corefile)] == want


PARSE_ERRORS = [
    (". {\n log . {\n  class\n }\n}",
     "Corefile:3 - plugin/log: Wrong argument count or unexpected line ending after 'class'"),
    (". {\n log . {\n  class success nope\n }\n}", "Corefile:3 - plugin/log: invalid Class: nope"),
    (". {\n log {\n  level debug\n }\n}", "Corefile:3 - plugin/log: unknown property 'level'"),
]


@pytest.mark.parametrize(("corefile", "message"), PARSE_ERRORS)
def test_parse_errors(corefile: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        log_rules(corefile)
    assert str(e.value) == message


HOSTS = """    hosts {
        10.0.0.1 www.example.org
        fallthrough
    }
"""


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "portolan" and r.levelno == logging.INFO]


# (Corefile, query, the logged line as a regexp with {q}/{r} standing for query/reply sizes, or None)
LINE_CASES: list[tuple[str, Case, str | None]] = [
    (". {\n log\n" + HOSTS + "}", Case("www.example.org."),
     ME + r'"A IN www\.example\.org\. udp {q} false 512" NOERROR qr,aa,rd {r} ' + DURATION),
    # The name is logged lower-cased; EDNS0 shows DO and the buffer size.
    (". {\n log\n" + HOSTS + "}", Case("WWW.Example.ORG.", bufsize=1232, do=True),
     ME + r'"A IN www\.example\.org\. udp {q} true 1232" NOERROR qr,aa,rd {r} ' + DURATION),
    # TCP: the buffer is 64 KiB; an IPv6 client is bracketed.
    (". {\n log\n" + HOSTS + "}",
     Case("www.example.org.", "AAAA", proto="tcp", client=("2001:db8::1", 53000)),
     r'\[2001:db8::1\]:53000 - 4321 "AAAA IN www\.example\.org\. tcp {q} false 65535" NOERROR qr,aa,rd {r} '
     + DURATION),
    # Nothing answers: the server's SERVFAIL is logged, flags without aa.
    (". {\n log\n" + HOSTS + "}", Case("nope.example.org.", rcode="SERVFAIL"),
     ME + r'"A IN nope\.example\.org\. udp {q} false 512" SERVFAIL qr,rd {r} ' + DURATION),
    (". {\n log {combined}\n" + HOSTS + "}", Case("www.example.org."),
     ME + r'"A IN www\.example\.org\. udp {q} false 512" NOERROR qr,aa,rd {r} ' + DURATION + ' "0"'),
    ('. {\n log . "{type} {class} {name} {local} {>id} {>opcode} {/log/type} {/log/class} {/nope} {x} '
     '{rcode}"\n' + HOSTS + "}", Case("www.example.org."),
     r"A IN www\.example\.org\. 127\.0\.0\.1 4321 0 NOERROR success - \{x\} NOERROR"),
    ('. {\n log . "{/log/type} {/log/class}"\n' + HOSTS + "}", Case("www.example.org.", "MX"),
     "NOERROR success"),  # hosts' NODATA has no SOA: CoreDNS's rules call that a NOERROR
    ('. {\n log . "{/log/type} {/log/class}"\n' + HOSTS + "}", Case("nope.example.org.", rcode="SERVFAIL"),
     "SERVERERROR error"),
    # Scopes: only names under example.org are logged.
    (". {\n log example.org\n whoami\n}", Case("a.example.org."), r'.* "A IN a\.example\.org\. .*'),
    (". {\n log example.org\n whoami\n}", Case("example.net."), None),
    # Class filters.
    (". {\n log . {\n  class error\n }\n" + HOSTS + "}", Case("www.example.org."), None),
    (". {\n log . {\n  class error\n }\n" + HOSTS + "}", Case("nope.example.org.", rcode="SERVFAIL"),
     r".* SERVFAIL .*"),
    (". {\n log . {\n  class success\n }\n" + HOSTS + "}", Case("www.example.org."), r".* NOERROR .*"),
    (". {\n log . {\n  class denial\n }\n" + HOSTS + "}", Case("www.example.org."), None),
    # The first rule whose names cover the query decides, even if a later one would log it.
    (". {\n log example.org {\n  class error\n }\n log\n" + HOSTS + "}", Case("www.example.org."), None),
    (". {\n log example.org {\n  class error\n }\n log\n whoami\n}", Case("www.example.net."),
     r".*example\.net.*"),
]


@pytest.mark.parametrize(("corefile", "case", "pattern"), LINE_CASES)
async def test_line(corefile: str, case: Case, pattern: str | None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    async with serve(corefile) as s:
        query = case.message().pack()
        out = await s.wire(query, case.proto, case.client)
        assert out is not None
        assert DNSRecord.parse(out).header.rcode == {"NOERROR": 0, "SERVFAIL": 2}[case.rcode]
    got = lines(caplog)
    if pattern is None:
        assert got == []
        return
    want = r"\[INFO\] " + pattern.replace("{q}", str(len(query))).replace("{r}", str(len(out)))
    assert len(got) == 1, got
    assert re.fullmatch(want, got[0]), (got[0], want)


async def test_exception_in_chain_is_logged_as_servfail(caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    async def boom(self: Whoami, req: Request, next: object) -> DNSRecord:
        raise RuntimeError("boom")

    monkeypatch.setattr(Whoami, "serve", boom)
    caplog.set_level(logging.INFO, logger="portolan")
    async with serve(". {\n log\n whoami\n}") as s:
        await s.run([Case("a.example.org.", rcode="SERVFAIL")])
    [line] = lines(caplog)
    want = r'\[INFO\] .* "A IN a\.example\.org\. udp \d+ false 512" SERVFAIL qr,rd \d+ ' + DURATION
    assert re.fullmatch(want, line), line


async def test_several_queries_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    async with serve(". {\n log\n log example.org\n" + HOSTS + "}") as s:
        for _ in range(3):
            await s.run([Case("www.example.org.", answer=["www.example.org. 3600 IN A 10.0.0.1"])])
    assert len(lines(caplog)) == 3


async def test_nothing_formatted_when_info_is_off(caplog: pytest.LogCaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.WARNING, logger="portolan")
    rendered: list[str] = []
    monkeypatch.setattr(Rule, "render", lambda self, *a: rendered.append("x") or "x")
    async with serve(". {\n log\n" + HOSTS + "}") as s:
        await s.run([Case("www.example.org.", answer=["www.example.org. 3600 IN A 10.0.0.1"])])
    assert rendered == []
    assert lines(caplog) == []


@pytest.mark.parametrize(("seconds", "text"), [
    (0.000123456, "0.000123456s"),
    (0.000162524, "0.000162524s"),
    (1.0, "1s"),
    (1.5, "1.5s"),
    (0.00001, "0.00001s"),
    (0.0, "0s"),
    (2.000000001, "2.000000001s"),
])
def test_duration_format(seconds: float, text: str) -> None:
    assert go_seconds(seconds) == text


@pytest.mark.parametrize(("fmt", "want"), [
    ("{type}", "A"),
    ("{ {type} }", "{ A }"),
    ("A } {type}", "A } A"),
    ("{foo} {name}", "{foo} x.org."),
    ("no placeholders", "no placeholders"),
    ("{>do}/{>bufsize}/{proto}/{size}/{port}/{remote}", "false/512/udp/23/9/192.0.2.1"),
    ("{/missing}", "-"),
])
def test_format(fmt: str, want: str) -> None:
    msg = DNSRecord(q=DNSQuestion("x.org.", QTYPE.A))
    req = Request(msg, msg.pack(), ("192.0.2.1", 9), "udp", "127.0.0.1", "dns://:53")
    assert Rule(".", fmt).render(req, msg.reply(), 40, 0.5) == want


def _reply(qtype: int, rcode: int = 0, answer: tuple[RR, ...] = (), auth: tuple[RR, ...] = (),
           opcode: int = 0) -> DNSRecord:
    r = DNSRecord(DNSHeader(qr=1, rcode=rcode, opcode=opcode), q=DNSQuestion("x.org.", qtype))
    for rr in answer:
        r.add_answer(rr)
    for rr in auth:
        r.add_auth(rr)
    return r


A_RR = RR("x.org.", QTYPE.A, rdata=A("192.0.2.1"))
CNAME_RR = RR.fromZone("x.org. 60 IN CNAME y.org.")[0]
SOA_RR = RR("org.", QTYPE.SOA, rdata=SOA("ns.org.", "h.org.", (1, 2, 3, 4, 5)))
NS_RR = RR.fromZone("x.org. 60 IN NS ns.x.org.")[0]

# (reply, CoreDNS response type, class)
TYPIFY_CASES = [
    (_reply(QTYPE.A, answer=(A_RR,)), "NOERROR", "success"),
    (_reply(QTYPE.A, answer=(CNAME_RR,)), "NODATA", "denial"),
    (_reply(QTYPE.TXT, answer=(CNAME_RR,)), "NOERROR", "success"),
    (_reply(QTYPE.A, auth=(SOA_RR,)), "NODATA", "denial"),
    (_reply(QTYPE.A, rcode=3, auth=(SOA_RR,)), "NXDOMAIN", "denial"),
    (_reply(QTYPE.A, rcode=3), "OTHERERROR", "error"),
    (_reply(QTYPE.A, rcode=2), "SERVERERROR", "error"),
    (_reply(QTYPE.A, rcode=4), "SERVERERROR", "error"),
    (_reply(QTYPE.A, rcode=5), "OTHERERROR", "error"),
    (_reply(QTYPE.A, rcode=1), "OTHERERROR", "error"),
    (_reply(QTYPE.A, auth=(NS_RR,)), "DELEGATION", "success"),
    (_reply(QTYPE.A), "NOERROR", "success"),
    (_reply(QTYPE.AXFR, answer=(A_RR,)), "META", "error"),
    (_reply(QTYPE.A, opcode=4), "META", "error"),
    (_reply(QTYPE.A, opcode=5), "UPDATE", "error"),
    (None, "OTHERERROR", "error"),
]


@pytest.mark.parametrize(("reply", "rtype", "rclass"), TYPIFY_CASES)
def test_reply_type_and_class(reply: DNSRecord | None, rtype: str, rclass: str) -> None:
    qtype = reply.q.qtype if reply is not None else QTYPE.A
    assert reply_type(qtype, reply) == rtype
    assert reply_class(rtype) == rclass


def test_docstring_examples_build() -> None:
    blocks = re.findall(r"```corefile\n(.*?)```", logplugin.__doc__ or "", re.S)
    assert blocks
    for text in blocks:
        build(parse(text, "Corefile"), 53)


async def test_hot_path_logs_what_the_slow_path_logs(caplog: pytest.LogCaptureFixture) -> None:
    # The second query is answered from stored bytes; its line (server IP included) must not differ.
    caplog.set_level(logging.INFO, logger="portolan")
    async with serve('. {\n log . "{remote} {local} {name} {type} {rcode} {size}"\n' + HOSTS + "}") as s:
        query = Case("www.example.org.").message().pack()
        await s.wire(query)
        assert not s.last_fast
        await s.wire(query)
        assert s.last_fast
    got = lines(caplog)
    assert len(got) == 2, got
    assert got[0] == got[1], got
    assert " 127.0.0.1 www.example.org. A NOERROR " in got[0]
