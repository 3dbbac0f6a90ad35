"""acl: the parse table, its errors, the decision table (first match, rules in order, zones, types,
networks, v4 and v6) and the hot path: a blocked client never gets an answer stored for an allowed one."""

from __future__ import annotations

import ipaddress

import pytest
from dnslib import DNSRecord

from corefile import CorefileError, parse
from dnsplugins.acl import ALL_NETS, Acl, Action
from dnsserver.config import build
from dnsserver.respond import EDNS_EDE
from tests.dnstest import Case, check, plugin_in, serve


def acl_of(text: str) -> Acl:
    return plugin_in(Acl, text)


def nets(*texts: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(t) for t in texts)


A, AAAA, MX = 1, 28, 15
# (Corefile, [(zones, [(action, qtypes, nets)])])
PARSE_CASES = [
    ("example.org {\n acl {\n  block\n }\n}", [(["example.org."], [(Action.BLOCK, None, ALL_NETS)])]),
    (
        ". {\n acl Example.ORG a.net {\n  ALLOW type A AAAA net 10.0.0.0/8 fd00::1\n }\n}",
        [(["example.org.", "a.net."], [(Action.ALLOW, frozenset({A, AAAA}), nets("10.0.0.0/8", "fd00::1/128"))])],
    ),
    (
        ". {\n acl {\n  filter net 192.168.1.7 type MX\n  drop type * net *\n }\n}",
        [(["."], [(Action.FILTER, frozenset({MX}), nets("192.168.1.7/32")), (Action.DROP, None, ALL_NETS)])],
    ),
    # Host bits are allowed (Go's ParseCIDR); two sections of one kind add up.
    (
        ". {\n acl {\n  block net 10.1.2.3/8 net 11.0.0.0/8 type A type MX\n }\n}",
        [(["."], [(Action.BLOCK, frozenset({A, MX}), nets("10.0.0.0/8", "11.0.0.0/8"))])],
    ),
    (
        ". {\n acl 10.0.0.0/24 {\n  block\n }\n acl {\n  allow\n }\n}",
        [(["0.0.10.in-addr.arpa."], [(Action.BLOCK, None, ALL_NETS)]), (["."], [(Action.ALLOW, None, ALL_NETS)])],
    ),
    (". {\n acl\n}", [(["."], [])]),
]


@pytest.mark.parametrize(("corefile", "want"), PARSE_CASES)
def test_parse(corefile: str, want: list[tuple[list[str], list[tuple[Action, object, object]]]]) -> None:
    got = acl_of(corefile).rules
    assert [(r.zones, [(p.action, p.qtypes, p.nets) for p in r.policies]) for r in got] == want


E3 = "Corefile:3 - plugin/acl: "
PARSE_ERRORS = [
    (". {\n acl {\n  deny\n }\n}", E3 + "unexpected token \"deny\"; expect 'allow', 'block', 'filter' or 'drop'"),
    (". {\n acl {\n  block from 10.0.0.0/8\n }\n}", E3 + "unexpected token \"from\"; expect 'type | net'"),
    (". {\n acl {\n  block type\n }\n}", E3 + 'no token specified in "type" section'),
    (". {\n acl {\n  block type A net\n }\n}", E3 + 'no token specified in "net" section'),
    (". {\n acl {\n  block type BOGUS\n }\n}", E3 + 'unexpected token "BOGUS"; expect legal QTYPE'),
    (". {\n acl {\n  block type a\n }\n}", E3 + 'unexpected token "a"; expect legal QTYPE'),
    (". {\n acl {\n  block net 10.0.0.300\n }\n}", E3 + 'illegal CIDR notation "10.0.0.300/32"'),
    (". {\n acl {\n  block net 10.0.0.0/33\n }\n}", E3 + 'illegal CIDR notation "10.0.0.0/33"'),
]


@pytest.mark.parametrize(("corefile", "message"), PARSE_ERRORS)
def test_parse_errors(corefile: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        acl_of(corefile)
    assert str(e.value) == message


def ede(reply: DNSRecord) -> list[int]:
    """The INFO-CODEs of the extended DNS errors in `reply`'s OPT."""
    return [
        int.from_bytes(o.data[:2], "big") for rr in reply.ar if rr.rtype == 41 for o in rr.rdata if o.code == EDNS_EDE
    ]


HOSTS = """\
    hosts {
        10.0.0.1 www.example.org
        fd00::1 www.example.org
        10.0.0.2 a.example.org
        fallthrough
    }
    whoami
"""
COREFILE = (
    """\
example.org {
    acl a.example.org {
        drop net 192.168.1.0/24
    }
    acl {
        allow net 192.168.0.0/24
        block type A net 192.168.0.0/16 fd00::/8
        filter type AAAA net 192.168.0.0/16
    }
    acl {
        block net 172.16.0.0/12
    }
"""
    + HOSTS
    + "}\n"
)

OK_A = ["www.example.org. 3600 IN A 10.0.0.1"]
OK_AAAA = ["www.example.org. 3600 IN AAAA fd00::1"]
# (client, qname, qtype, rcode, answer, EDE codes); rcode None: no reply at all.
DECISIONS = [
    ("10.1.1.1", "www.example.org.", "A", "NOERROR", OK_A, []),  # no policy matches: allowed
    ("192.168.0.9", "www.example.org.", "A", "NOERROR", OK_A, []),  # allow comes first
    ("192.168.5.9", "www.example.org.", "A", "REFUSED", [], [15]),
    ("192.168.5.9", "www.example.org.", "AAAA", "NOERROR", [], [17]),
    ("192.168.5.9", "www.example.org.", "MX", "NOERROR", [], []),  # no type matches: passed on to hosts
    ("fd00::7", "www.example.org.", "A", "REFUSED", [], [15]),
    ("fd00::7", "www.example.org.", "AAAA", "NOERROR", OK_AAAA, []),
    ("::ffff:192.168.5.9", "www.example.org.", "A", "NOERROR", OK_A, []),  # an IPv6 address, not in v4 nets
    # The first rule drops a.example.org for 192.168.1.0/24; its allow of 192.168.0.0/24 is the second rule's.
    ("192.168.1.4", "a.example.org.", "A", None, [], []),
    ("192.168.0.4", "a.example.org.", "A", "NOERROR", ["a.example.org. 3600 IN A 10.0.0.2"], []),
    # An allow ends the evaluation: the third rule's block of 172.16/12 is reached only without one.
    ("172.16.0.1", "www.example.org.", "A", "REFUSED", [], [15]),
]


@pytest.mark.parametrize(("client", "qname", "qtype", "rcode", "answer", "codes"), DECISIONS)
async def test_decisions(
    client: str, qname: str, qtype: str, rcode: str | None, answer: list[str], codes: list[int]
) -> None:
    async with serve(COREFILE) as s:
        case = Case(qname, qtype, rcode or "NOERROR", answer, client=(client, 5353), bufsize=1232)
        out = await s.wire(case.message().pack(), client=case.client)
        if rcode is None:
            assert out is None
            return
        assert out is not None
        reply = DNSRecord.parse(out)
        check(case, reply)
        assert ede(reply) == codes
        assert not reply.header.aa or rcode == "NOERROR"


async def test_no_opt_for_a_client_that_sent_none() -> None:
    async with serve(COREFILE) as s:
        reply = await s.query(Case("www.example.org.", "A", "REFUSED", client=("192.168.5.9", 53)))
        assert [rr for rr in reply.ar if rr.rtype == 41] == []


@pytest.mark.parametrize("store", ["", "cache\n"])
async def test_blocked_client_never_gets_a_stored_answer(store: str) -> None:
    """Without acl the second query of a name takes the hot path (hosts' or cache's stored wire answer);
    with acl every query runs it, so the blocked client is refused although the allowed one was answered."""
    text = ". {\n" + store + "    acl {\n        block net 10.9.0.0/16\n    }\n" + HOSTS + "}\n"
    allowed, blocked = ("10.1.0.1", 40000), ("10.9.0.1", 40000)
    async with serve(text.replace("    acl {\n        block net 10.9.0.0/16\n    }\n", "")) as s:
        for _ in range(2):
            await s.query(Case("www.example.org.", client=allowed))
        assert s.last_fast, "the control: without acl the answer comes from the hot path"
    async with serve(text) as s:
        for _ in range(3):
            ok = await s.query(Case("www.example.org.", client=allowed))
            assert (ok.header.rcode, len(ok.rr)) == (0, 1)
            await s.run([Case("www.example.org.", rcode="REFUSED", client=blocked)])
            assert not s.last_fast
            assert not s.last_relay


def test_acl_takes_its_block_off_the_hot_and_relay_paths() -> None:
    for rest in ("hosts {\n  10.0.0.1 a.example.org\n }", "cache\n forward . 127.0.0.1:53"):
        block = build(parse(f". {{\n acl {{\n  block net 10.0.0.0/8\n }}\n {rest}\n}}", "Corefile"), 53).blocks[0]
        assert block.fast_store is None
        assert block.relay is None
