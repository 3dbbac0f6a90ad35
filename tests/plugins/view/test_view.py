"""view: the expression language's table, the parse errors, block selection per query (first admitting
block in Corefile order, a shorter zone when none admits) and the hot path kept from carrying one
client's block to another."""

from __future__ import annotations

import pytest

from corefile import CorefileError, parse
from dnsplugins.view import View
from dnsplugins.view.expression import Env, ExprError, compile_expr, truth
from dnsserver.config import build
from dnsserver.request import Request
from tests.dnsserver.test_paths import upstream
from tests.dnstest import Case, serve


def request(
    name: str = "www.Example.org.", qtype: str = "A", client: str = "10.1.2.3", proto: str = "udp", do: bool = False
) -> Request:
    msg = Case(name, qtype, do=do).message()
    return Request(msg, msg.pack(), (client, 5353), proto, "127.0.0.1", "dns://:1053")


# (expression, request, value)
EVAL = [
    ("incidr(client_ip(), '10.0.0.0/8')", request(), True),
    ("incidr(client_ip(), '192.168.0.0/16')", request(), False),
    ("incidr(client_ip(), '2001:db8::/32')", request(client="2001:db8::5"), True),
    ("incidr(client_ip(), '10.0.0.0/8')", request(client="2001:db8::5"), False),
    ("type() == 'A'", request(), True),
    ("type() == 'A'", request(qtype="AAAA"), False),
    ("type() in ['A', 'AAAA']", request(qtype="AAAA"), True),
    ("type() not in ['A', 'AAAA']", request(qtype="MX"), True),
    ("name() == 'www.example.org.'", request(), True),  # lower case, final dot
    ("name() != 'www.example.org.'", request(), False),
    ("(type() == 'MX' && name() == 'x.') || client_ip() == '10.1.2.3'", request(), True),
    ("type() == 'MX' && name() == 'x.' || client_ip() == '10.9.9.9'", request(), False),
    ("type() == 'A' and not (proto() == 'tcp')", request(), True),
    ("proto() == 'tcp'", request(proto="tls"), True),  # DNS over TLS is TCP to CoreDNS
    ("name() matches '^www\\\\.example\\\\.org\\\\.$'", request(), True),
    ('name() matches "^abc[.]"', request(), False),
    ("name() endsWith '.org.' && name() startsWith 'www' && name() contains 'example'", request(), True),
    ("port() == '5353' && server_port() == '1053' && server_ip() == '127.0.0.1'", request(), True),
    ("do() && bufsize() == 512", request(do=True), True),
    ("class() == 'IN' && opcode() == 0 && id() == 4321 && size() > 12", request(), True),
    ("any(['10.0.0.0/8', '192.168.0.0/16'], incidr(client_ip(), #))", request(), True),
    ("all(['10.0.0.0/8', '192.168.0.0/16'], incidr(client_ip(), #))", request(), False),
    ("replace('1-2-3-4', '-', '.') == '1.2.3.4' && lower('AB') == 'ab' && len([1, 2]) == 2", request(), True),
    ("1 + 2 * 3 == 7 && -1 < 0 && 7 % 4 == 3", request(), True),
    ("metadata('nothing') == ''", request(), True),
    ("type() == 'A' ? true : false", request(), True),
]


@pytest.mark.parametrize(("text", "req", "want"), EVAL)
def test_evaluate(text: str, req: Request, want: bool) -> None:
    assert compile_expr(text).eval(Env(req)) is want


# A failure while evaluating (a malformed address, a type mismatch) or a result that is not true: false.
@pytest.mark.parametrize(
    "text",
    [
        "incidr('nope', '10.0.0.0/8')",
        "incidr(client_ip(), 'x')",
        "type() == 1 || 1",
        "name()",
        "1 / 0 == 1",
        "[1][5] == 1",
    ],
)
def test_failure_is_false(text: str) -> None:
    assert truth(compile_expr(text), Env(request())) is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("client_ip() = '1.2.3.4'", "unexpected character '=' (column 13"),
        ("nosuch()", "unknown function nosuch (column 1"),
        ("type(1) == 'A'", "type() takes no arguments"),
        ("client == 'x'", "unknown name client"),
        ("(type() == 'A'", "expected ')', found 'the end'"),
        ("type() == 'A' &&", "unexpected 'end of the expression'"),
        ("'unclosed", 'unexpected character "\'"'),
        ("name() matches '('", "bad regular expression"),
        ("#", "# outside of a predicate"),
        ("", "empty expression"),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(ExprError) as e:
        compile_expr(text)
    assert message in str(e.value)


V3 = "Corefile:3 - plugin/view: "
PARSE_ERRORS = [
    (
        ". {\n view {\n  expr type() == 'A'\n }\n}",
        "Corefile:2 - plugin/view: Wrong argument count or unexpected line ending after 'view'",
    ),
    (". {\n view a b\n}", "Corefile:2 - plugin/view: Wrong argument count or unexpected line ending after 'b'"),
    (". {\n view a {\n  filter x\n }\n}", V3 + "unknown property 'filter'"),
    (". {\n view a {\n  expr type( == 'A'\n }\n}", V3 + "unexpected '==' (column 7 of \"type( == 'A'\")"),
    (". {\n view a\n view b\n}", V3 + "this plugin can only be used once per Server Block"),
    # Two blocks without a view still may not share a zone and port.
    (". {\n whoami\n}\n. {\n whoami\n}", "Corefile:4 - cannot serve dns://.:53 - it is already defined"),
]


@pytest.mark.parametrize(("corefile", "message"), PARSE_ERRORS)
def test_parse_errors(corefile: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        build(parse(corefile, "Corefile"), 53)
    assert str(e.value) == message


def test_parse() -> None:
    cfg = build(
        parse(
            ". {\n view inside {\n  expr type() == 'A'\n  expr incidr(client_ip(), '10.0.0.0/8')\n }\n"
            " whoami\n}\n. {\n whoami\n}\n",
            "Corefile",
        ),
        53,
    )
    view = cfg.blocks[0].view
    assert isinstance(view, View)
    assert (view.view_name, len(view.exprs)) == ("inside", 2)
    assert cfg.blocks[1].view is None
    assert cfg.listeners[("dns", "", 53)]["."] == cfg.blocks


SPLIT = """\
. {
    view internal {
        expr incidr(client_ip(), '127.0.0.0/24')
    }
    hosts {
        1.1.1.1 test
    }
}
. {
    view v6 {
        expr incidr(client_ip(), '2001:db8::/32') && type() == 'AAAA'
    }
    hosts {
        2001:db8::1 test
    }
}
. {
    hosts {
        3.3.3.3 test
        fallthrough
    }
    whoami
}
example.org {
    view nobody {
        expr name() == 'nothing.'
    }
    hosts {
        10.0.0.9 a.example.org
    }
}
example.net {
    hosts {
        10.0.0.1 www.example.net
    }
}
"""

# (client, qname, qtype, answer, extra); the last block for "." ends in whoami, whose records are extra.
SELECT = [
    ("127.0.0.9", "test.", "A", ["test. 3600 IN A 1.1.1.1"], []),
    ("127.0.1.9", "test.", "A", ["test. 3600 IN A 3.3.3.3"], []),
    ("2001:db8::7", "test.", "AAAA", ["test. 3600 IN AAAA 2001:db8::1"], []),
    ("2001:db8::7", "test.", "A", ["test. 3600 IN A 3.3.3.3"], []),  # the v6 view wants AAAA only
    # No block of example.org admits the query: the shorter zone "." serves it (whoami), not 10.0.0.9.
    (
        "10.0.0.1",
        "a.example.org.",
        "A",
        [],
        ["a.example.org. 0 IN A 10.0.0.1", "_udp.a.example.org. 0 IN SRV 0 0 5353 ."],
    ),
]


@pytest.mark.parametrize(("client", "qname", "qtype", "answer", "extra"), SELECT)
async def test_first_admitting_block_serves(
    client: str, qname: str, qtype: str, answer: list[str], extra: list[str]
) -> None:
    async with serve(SPLIT) as s:
        await s.run([Case(qname, qtype, answer=answer, extra=extra, client=(client, 5353))])


async def test_a_views_answer_is_never_stored_for_another_client() -> None:
    """hosts' stored answers would reach every client asking the same question: a zone with views never
    takes the hot path, while a zone without one (example.net) still does."""
    async with serve(SPLIT) as s:
        for _ in range(3):
            await s.run([Case("test.", answer=["test. 3600 IN A 1.1.1.1"], client=("127.0.0.9", 5353))])
            assert not s.last_fast
            await s.run([Case("test.", answer=["test. 3600 IN A 3.3.3.3"], client=("10.9.9.9", 5353))])
            assert not s.last_fast
        for _ in range(2):
            await s.run([Case("www.example.net.", answer=["www.example.net. 3600 IN A 10.0.0.1"])])
        assert s.last_fast


def test_view_name_is_metadata_of_the_queries_it_admits() -> None:
    view = build(parse(SPLIT, "Corefile"), 53).blocks[0].view
    assert view is not None
    inside, outside = request("test.", client="127.0.0.3"), request("test.", client="10.0.0.3")
    assert (view.admits(inside), view.admits(outside)) == (True, False)
    assert (inside.meta.get("view/name"), outside.meta.get("view/name")) == ("internal", None)


async def test_a_view_zone_is_never_relayed_by_a_route_learnt_for_another_client() -> None:
    """forward's relay path remembers, per question, which block relays it: for a zone with views the
    block depends on the client, so such queries run the selection and the chain every time."""
    async with upstream({"app.test.": ["192.0.2.1"]}) as inside, upstream({"app.test.": ["192.0.2.2"]}) as outside:
        text = (
            f". {{\n view inside {{\n  expr incidr(client_ip(), '127.0.0.0/24')\n }}\n forward . {inside}\n}}\n"
            f". {{\n forward . {outside}\n}}\n"
        )
        async with serve(text) as s:
            for _ in range(3):
                for client, ip in (("127.0.0.5", "192.0.2.1"), ("10.0.0.5", "192.0.2.2")):
                    await s.run([Case("app.test.", answer=[f"app.test. 60 IN A {ip}"], client=(client, 5353))])
                    assert not s.last_relay
