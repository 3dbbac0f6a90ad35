"""template: the parse table and its errors, the Go template subset (render table, load-time errors),
record text, and the answer table (regex groups, classes and types, fallthrough, rcode, ederror,
.Remote, var/expr, failures), and the hot path kept from standing in for template's answers."""

from __future__ import annotations

import logging

import pytest
from dnslib import DNSRecord

from corefile import CorefileError, parse
from dnsplugins.template import Template
from dnsplugins.template.config import FIELDS, FUNCS
from dnsplugins.template.gotemplate import TemplateError, parse_template
from dnsplugins.template.rr import RRError, parse_rr
from dnsserver.config import build
from dnsserver.metrics import REGISTRY
from dnsserver.respond import EDNS_EDE
from tests.dnstest import Case, check, plugin_in, rr_text, serve


def template_of(text: str) -> Template:
    return plugin_in(Template, text)


# (Corefile, [(class, type, zones, regexes, rcode, ederror, fallthrough zones, #answer, #additional, #authority)])
PARSE_CASES = [
    ("example.org {\n template IN A\n}", [(1, 1, ["example.org."], [".*"], 0, None, [], 0, 0, 0)]),
    (
        '. {\n template ANY ANY invalid 10.0.0.0/24 {\n  rcode NXDOMAIN\n  ederror 21 "RFC 2606"\n'
        '  authority "invalid. 60 IN SOA a. b. (1 60 60 60 60)"\n  upstream\n }\n}',
        [(255, 255, ["invalid.", "0.0.10.in-addr.arpa."], [".*"], 3, (21, "RFC 2606"), [], 0, 0, 1)],
    ),
    (
        '. {\n template CH TXT {\n  match ^a[.]$ ^b[.]$\n  match (?<x>c)\n  answer "a. TXT x" "b. TXT y"\n'
        '  additional "c. A 1.2.3.4"\n  fallthrough example.org\n }\n template IN MX\n}',
        [
            (3, 16, ["."], ["^a[.]$", "^b[.]$", "(?P<x>c)"], 0, None, ["example.org."], 2, 1, 0),
            (1, 15, ["."], [".*"], 0, None, [], 0, 0, 0),
        ],
    ),
    (". {\n template IN A {\n  ederror 6\n  fallthrough\n }\n}", [(1, 1, ["."], [".*"], 0, (6, ""), ["."], 0, 0, 0)]),
]


@pytest.mark.parametrize(("corefile", "want"), PARSE_CASES)
def test_parse(corefile: str, want: list[tuple[object, ...]]) -> None:
    got = [
        (
            t.qclass,
            t.qtype,
            t.zones,
            [r.pattern for r in t.regexes],
            t.rcode,
            t.ederror,
            t.fall.zones,
            len(t.answer),
            len(t.additional),
            len(t.authority),
        )
        for t in template_of(corefile).specs
    ]
    assert got == want


E2, E3 = "Corefile:2 - plugin/template: ", "Corefile:3 - plugin/template: "
PARSE_ERRORS = [
    (". {\n template\n}", E2 + "Wrong argument count or unexpected line ending after 'template'"),
    (". {\n template IN\n}", E2 + "Wrong argument count or unexpected line ending after 'IN'"),
    (". {\n template XX A\n}", E2 + "invalid query class XX"),
    (". {\n template IN XX\n}", E2 + "invalid RR class XX"),
    (". {\n template IN A {\n  match\n }\n}", E3 + "Wrong argument count or unexpected line ending after 'match'"),
    (
        ". {\n template IN A {\n  match a(\n }\n}",
        E3 + "could not parse regex: a(, missing ), unterminated subpattern at position 1",
    ),
    (". {\n template IN A {\n  match " + "a" * 10001 + "\n }\n}", E3 + "regex pattern too long: 10001 > 10000"),
    (". {\n template IN A {\n  answer\n }\n}", E3 + "Wrong argument count or unexpected line ending after 'answer'"),
    ('. {\n template IN A {\n  answer "{{"\n }\n}', E3 + "could not compile template: {{, unclosed action"),
    (
        '. {\n template IN A {\n  answer "{{ notAFunction }}"\n }\n}',
        E3 + 'could not compile template: {{ notAFunction }}, function "notAFunction" not defined',
    ),
    (
        '. {\n template IN A {\n  answer "{{ if .Name }}x{{ end }}"\n }\n}',
        E3 + "could not compile template: {{ if .Name }}x{{ end }}, {{if}} is not supported here "
        "(only values and functions)",
    ),
    (
        '. {\n template IN A {\n  additional "{{ toLower .Name }}"\n }\n}',
        E3 + 'could not compile template: {{ toLower .Name }}, function "toLower" not defined',
    ),
    (
        '. {\n template IN A {\n  authority "{{ $x }}"\n }\n}',
        E3 + "could not compile template: {{ $x }}, variables ($x) are not supported",
    ),
    (". {\n template IN A {\n  rcode\n }\n}", E3 + "Wrong argument count or unexpected line ending after 'rcode'"),
    (". {\n template IN A {\n  rcode NOPE\n }\n}", E3 + "unknown rcode NOPE"),
    (". {\n template IN A {\n  ederror\n }\n}", E3 + "Wrong argument count or unexpected line ending after 'ederror'"),
    (
        ". {\n template IN A {\n  ederror x\n }\n}",
        E3 + 'error parsing extended DNS error code x, strconv.ParseUint: parsing "x": invalid syntax',
    ),
    (
        ". {\n template IN A {\n  ederror 65536\n }\n}",
        E3 + 'error parsing extended DNS error code 65536, strconv.ParseUint: parsing "65536": value out of range',
    ),
    (". {\n template IN A {\n  var x\n }\n}", E3 + "Wrong argument count or unexpected line ending after 'x'"),
    (". {\n template IN A {\n  var 1x 2\n }\n}", E3 + 'invalid variable name "1x"'),
    (". {\n template IN A {\n  var name 2\n }\n}", E3 + 'variable name "name" is reserved'),
    (
        ". {\n template IN A {\n  var x nope\n }\n}",
        E3 + "could not compile expression: x, unknown name nope (column 1 of 'nope')",
    ),
    (
        ". {\n template IN A {\n  expr type( == 'A'\n }\n}",
        E3 + "could not compile expression: unexpected '==' (column 7 of \"type( == 'A'\")",
    ),
    (". {\n template IN A {\n  bogus\n }\n}", E3 + "Wrong argument count or unexpected line ending after 'bogus'"),
]


@pytest.mark.parametrize(("corefile", "message"), PARSE_ERRORS)
def test_parse_errors(corefile: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        template_of(corefile)
    assert str(e.value) == message


DATA: dict[str, object] = {
    "Name": "ip-1-2.example.",
    "Match": ["ip-1-2.example.", "1", "2"],
    "Group": {"a": "1", "b": "7b"},
    "Meta": lambda label: f"<{label}>",
    "Var": {"n": 3},
}
# (template, output)
RENDER = [
    ("{{ .Name }} A 10.0.0.1", "ip-1-2.example. A 10.0.0.1"),
    ("{{ index .Match 1 }}.{{ index .Match 2 }}", "1.2"),
    ("{{ .Group.a }}{{ .Group.missing }}", "1<no value>"),
    ('x{{- "  y" -}}  z', "x  yz"),
    ("a {{- /* a comment */ -}} b", "ab"),
    ('{{ .Meta "kubernetes/client-namespace" }}', "<kubernetes/client-namespace>"),
    ("{{ parseInt .Group.b 16 8 }}", "123"),
    ('{{ printf "%s-%03d-%x" .Name 7 255 }}', "ip-1-2.example.-007-ff"),
    ('{{ .Name | printf "%s." }}', "ip-1-2.example.."),
    ('{{ len .Match }} {{ eq .Group.a "1" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ not true }}', "3 true true true false"),
    ('{{ and 1 0 }} {{ or 0 "x" }} {{ print 1 2 "a" }} {{ slice .Name 0 2 }}', "0 x 1 2a ip"),
    ("{{ .Var.n }} {{ (index .Match 0) }} {{ `raw\\n` }}", "3 ip-1-2.example. raw\\n"),
]


@pytest.mark.parametrize(("text", "want"), RENDER)
def test_render(text: str, want: str) -> None:
    assert parse_template(text, FUNCS, FIELDS).render(DATA) == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ parseInt .Group.a 16 }}", "error calling parseInt"),
        ("{{ parseInt .Group.b 10 8 }}", 'parsing "7b": invalid syntax'),
        ("{{ index .Match 9 }}", "index out of range: 9"),
        ("{{ .Name.Foo }}", "can't evaluate field Foo in type str"),
        ("{{ .Meta }}", "wrong number of args for Meta: got 0"),
        ('{{ .Meta "a" "b" }}', "wrong number of args for Meta: got 2"),
        ("{{ slice .Name 3 1 }}", "error calling slice: index out of range"),
        ("{{ printf }}", "error calling printf"),
    ],
)
def test_render_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        parse_template(text, FUNCS, FIELDS).render(DATA)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ .Name", "unclosed action"),
        ("{{ }}", "missing value for command"),
        ("{{ (.Name }}", "unclosed left paren"),
        ('{{ "a" "b" }}', "can't give argument to non-function a"),
        ("{{ range .Match }}{{ end }}", "{{range}} is not supported"),
        ("{{ $x := 1 }}", "variables ($x) are not supported"),
    ],
)
def test_parse_template_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as e:
        parse_template(text, FUNCS, FIELDS)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("a.example. 60 IN A 10.0.0.1", "a.example. 60 IN A 10.0.0.1"),
        ("a.example A 10.0.0.1", "a.example. 3600 IN A 10.0.0.1"),  # relative to the root, TTL 3600, IN
        ('a.example CH 5 TXT "x y"', 'a.example. 5 CH TXT "x y"'),
        ("foo.com 60 IN CNAME google.com", "foo.com. 60 IN CNAME google.com."),
        ("x. 60 IN SOA ns.x. h.x. (1 60 60 60 60)", "x. 60 IN SOA ns.x. h.x. 1 60 60 60 60"),
    ],
)
def test_parse_rr(text: str, want: str) -> None:
    assert rr_text(parse_rr(text)) == rr_text(parse_rr(want)) == " ".join(want.lower().split())


@pytest.mark.parametrize("text", ["", "a.example. 60 IN", "a.example. 60 IN A 10.0.0", "a b c d e", "a. 60 IN BOGUS x"])
def test_parse_rr_errors(text: str) -> None:
    with pytest.raises(RRError):
        parse_rr(text)


COREFILE = """\
. {
    template IN A example {
        match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
    template IN A example {
        match ^remote[.]example[.]$
        answer "{{ .Name }} 0 IN A {{ .Remote }}"
        additional "{{ .Name }} 0 IN TXT \\"{{ .Meta \\"none\\" }}\\" \\"{{ .Type }}\\" \\"{{ .Zone }}\\""
    }
    template IN PTR in-addr.arpa {
        match ^(?P<d>[0-9]*)[.](?P<c>[0-9]*)[.](?P<b>[0-9]*)[.](?P<a>[0-9]*)[.]in-addr[.]arpa[.]$
        answer "{{ .Name }} 60 IN PTR ip-{{ .Group.a }}-{{ .Group.b }}-{{ .Group.c }}-{{ .Group.d }}.example."
    }
    template ANY ANY invalid {
        rcode NXDOMAIN
        authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
        ederror 21 "Blocked according to RFC2606"
    }
    template IN TXT dev {
        match ^(?P<ip>[0-9]{1,3}(-[0-9]{1,3}){3})[.]dev[.]$
        var ip replace(group('ip'), '-', '.')
        var hex group(1)
        expr "any(['10.0.0.0/8', '192.168.0.0/16'], incidr(ip, #))"
        answer "{{ .Name }} 60 IN TXT {{ .Var.ip }} {{ .Var.hex }} {{ .Type }}"
        fallthrough dev
    }
    template IN ANY cname.test {
        answer "cname.test 60 IN CNAME target.test"
    }
    template IN A bad.test {
        match ^x
        answer "{{ .Name }} 60 IN A not-an-address"
    }
    template IN A fail.test {
        rcode SERVFAIL
        answer "{{ .Name }} 60 IN A 10.0.0.1"
    }
    whoami
}
"""

WHOAMI = ["{q} 0 IN A 10.240.0.1", "_udp.{q} 0 IN SRV 0 0 40212 ."]


def whoami(q: str) -> list[str]:
    return [w.format(q=q) for w in WHOAMI]


ANSWERS = [
    Case("ip-10-1-2-3.example.", answer=["ip-10-1-2-3.example. 60 IN A 10.1.2.3"], aa=True),
    Case("a.IP-10-1-2-3.example.", answer=["a.ip-10-1-2-3.example. 60 IN A 10.1.2.3"]),  # the name is lower-cased
    # The first template falls through, the second does not match and has no fallthrough: SERVFAIL.
    Case("other.example.", rcode="SERVFAIL"),
    Case("ip-10-1-2-3.example.", "AAAA", extra=whoami("ip-10-1-2-3.example.")),  # another type: next plugin
    Case(
        "remote.example.",
        answer=["remote.example. 0 IN A 10.240.0.1"],
        extra=['remote.example. 0 IN TXT "" "A" "example."'],
    ),
    Case("3.2.1.10.in-addr.arpa.", "PTR", answer=["3.2.1.10.in-addr.arpa. 60 IN PTR ip-10-1-2-3.example."]),
    Case("x.invalid.", "MX", "NXDOMAIN", ns=["invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"]),
    Case("10-1-2-3.dev.", "TXT", answer=["10-1-2-3.dev. 60 IN TXT 10.1.2.3 10-1-2-3 TXT"]),
    Case("8-8-8-8.dev.", "TXT", extra=whoami("8-8-8-8.dev.")),  # expr false: fallthrough
    Case("cname.test.", "A", answer=["cname.test. 60 IN CNAME target.test."]),  # no server to ask for the target
    Case("cname.test.", "ANY", answer=["cname.test. 60 IN CNAME target.test."]),
    Case("x.bad.test.", rcode="SERVFAIL"),  # the record does not read: SERVFAIL
    Case("a.fail.test.", rcode="SERVFAIL"),
    Case("example.org.", extra=whoami("example.org.")),  # outside every template's zones
]


@pytest.mark.parametrize("case", ANSWERS, ids=lambda c: f"{c.qname}/{c.qtype}")
async def test_answers(case: Case) -> None:
    async with serve(COREFILE) as s:
        await s.run([case])


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_field_the_data_lacks_loads_with_a_warning_and_fails_the_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CoreDNS's own tests load `{{ .Grup.d }}` (a typo): Go finds out only when the template runs."""
    caplog.set_level(logging.WARNING, logger="portolan")
    text = '. {\n template IN A example.com {\n  answer "{{ .Name }} A {{ .Grup.d }}"\n }\n}'
    labels = {
        "server": "dns://:53",
        "zone": "example.com.",
        "view": "",
        "class": "IN",
        "type": "A",
        "section": "answer",
        "template": "{{ .Name }} A {{ .Grup.d }}",
    }
    before = sample("coredns_template_template_failures_total", **labels)
    async with serve(text) as s:
        await s.run([Case("a.example.com.", rcode="SERVFAIL")])
    assert sample("coredns_template_template_failures_total", **labels) - before == 1
    assert any(
        "Corefile:3: template '{{ .Name }} A {{ .Grup.d }}' reads .Grup, which the data does not have" in m
        for m in caplog.messages
    )


@pytest.mark.parametrize("text", ["template ANY ANY (?P<x>", 'template ANY ANY {\n  answer "{{ parseInt }}"\n }'])
def test_loads_as_in_coredns(text: str) -> None:
    assert template_of(". {\n " + text + "\n}").specs


async def test_metrics_and_extended_error() -> None:
    rr_labels = {
        "server": "dns://:53",
        "zone": "bad.test.",
        "view": "",
        "class": "IN",
        "type": "A",
        "section": "answer",
        "template": "{{ .Name }} 60 IN A not-an-address",
    }
    before = (
        sample(
            "coredns_template_matches_total", server="dns://:53", zone="example.", view="", **{"class": "IN"}, type="A"
        ),
        sample("coredns_template_rr_failures_total", **rr_labels),
    )
    async with serve(COREFILE) as s:
        await s.query(Case("ip-10-1-2-3.example."))
        await s.query(Case("x.bad.test."))
        reply = await s.query(Case("x.invalid.", "A", "NXDOMAIN", bufsize=1232))
    after = (
        sample(
            "coredns_template_matches_total", server="dns://:53", zone="example.", view="", **{"class": "IN"}, type="A"
        ),
        sample("coredns_template_rr_failures_total", **rr_labels),
    )
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    opts = [o for rr in reply.ar if rr.rtype == 41 for o in rr.rdata]
    assert [(o.code, bytes(o.data)) for o in opts] == [(EDNS_EDE, b"\x00\x15Blocked according to RFC2606")]


HOSTS_AFTER = """\
. {
    template IN A example.org {
        match ^who[.]example[.]org[.]$
        answer "{{ .Name }} 0 IN A {{ .Remote }}"
        fallthrough
    }
    hosts {
        10.0.0.1 www.example.org
        10.0.0.2 who.example.org
    }
}
"""


async def test_stored_answers_never_stand_in_for_the_template() -> None:
    """hosts after template: were template skippable, the hot path would answer `who` from hosts' stored
    bytes (or one client's address to another). Every query runs the chain, and each client sees itself."""
    assert build(parse(HOSTS_AFTER, "Corefile"), 53).blocks[0].fast_store is None
    async with serve(HOSTS_AFTER) as s:
        for i in range(1, 4):
            client = (f"10.0.0.{100 + i}", 5353)
            reply: DNSRecord = await s.query(Case("who.example.org.", client=client))
            check(Case("who.example.org.", answer=[f"who.example.org. 0 IN A {client[0]}"]), reply)
            assert not s.last_fast
            await s.run([Case("www.example.org.", answer=["www.example.org. 3600 IN A 10.0.0.1"], client=client)])
            assert not s.last_fast
