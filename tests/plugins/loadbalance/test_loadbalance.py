"""loadbalance: the parse table, shuffling that really happens, CNAMEs first, prefer, weighted."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, DNSQuestion, DNSRecord

from corefile import CorefileError, parse
from dnsplugins import loadbalance as lbplugin
from dnsplugins.loadbalance import LoadBalance, LoadBalanceConfig, parse_weights
from dnsserver.config import build
from dnsserver.request import Request
from tests.dnstest import Case, check, plugin_in, rr, rr_text, serve


def lb_of(text: str, filename: str = "Corefile") -> LoadBalance:
    return plugin_in(LoadBalance, text, filename)


def net(*cidrs: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c) for c in cidrs]


PARSE_CASES = [
    (". {\n loadbalance\n}", LoadBalanceConfig()),
    (". {\n loadbalance round_robin\n}", LoadBalanceConfig()),
    (". {\n loadbalance {\n  prefer 10.0.0.0/8 fd00::/8\n  prefer 192.0.2.1/24\n }\n}",
     LoadBalanceConfig(prefer=net("10.0.0.0/8", "fd00::/8", "192.0.2.0/24"))),
    (". {\n loadbalance round_robin {\n  prefer\n }\n}", LoadBalanceConfig()),
]


@pytest.mark.parametrize(("corefile", "want"), PARSE_CASES)
def test_parse(corefile: str, want: LoadBalanceConfig) -> None:
    assert lb_of(corefile).config == want


def test_parse_weighted(tmp_path: Path) -> None:
    (tmp_path / "w.txt").write_text("www.example.org\n10.0.0.1 3\n")
    corefile = tmp_path / "Corefile"
    lb = lb_of(". {\n loadbalance weighted w.txt {\n  reload 10s\n  prefer 10.0.0.0/8\n }\n}", str(corefile))
    assert lb.config == LoadBalanceConfig("weighted", str(tmp_path / "w.txt"), 10.0, net("10.0.0.0/8"))
    assert lb.weights == {"www.example.org.": {"10.0.0.1": 3}}


L2, L3 = "Corefile:2 - plugin/loadbalance: ", "Corefile:3 - plugin/loadbalance: "
PARSE_ERRORS = [
    (". {\n loadbalance round_robin x\n}", L2 + "unknown property for round_robin"),
    (". {\n loadbalance random\n}", L2 + "unknown policy: random"),
    (". {\n loadbalance weighted\n}", L2 + "missing weight file argument"),
    (". {\n loadbalance weighted a b\n}", L2 + "unexpected argument(s)"),
    (". {\n loadbalance {\n  prefer 10.0.0.0/33\n }\n}", L3 + 'invalid CIDR "10.0.0.0/33"'),
    (". {\n loadbalance {\n  reload 10s\n }\n}", L3 + "unknown property 'reload'"),
    (". {\n loadbalance {\n  limit 2\n }\n}", L3 + "unknown property 'limit'"),
    (". {\n loadbalance weighted /nonexistent/w {\n  reload\n }\n}",
     L3 + "reload duration value is missing"),
    (". {\n loadbalance weighted /nonexistent/w {\n  reload 1s 2s\n }\n}",
     L3 + "unexpected argument"),
    (". {\n loadbalance weighted /nonexistent/w {\n  reload soon\n }\n}",
     L3 + "invalid reload duration 'soon'"),
    # A missing file is an error only when it will never be looked at again.
    (". {\n loadbalance weighted /nonexistent/w {\n  reload 0\n }\n}",
     L2 + "cannot open weight file"),
]


@pytest.mark.parametrize(("corefile", "message"), PARSE_ERRORS)
def test_parse_errors(corefile: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        lb_of(corefile)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize(("content", "message"), [
    ("10.0.0.1 3\n", "missing domain name in weight file"),
    ("www.example.org\n10.0.0.1\n", 'wrong domain name:"10.0.0.1"'),
    ("www.example.org\nnot-an-ip 3\n", 'wrong IP address:"not-an-ip"'),
    ("www.example.org\n10.0.0.1 0\n", 'wrong weight value:"0"'),
    ("www.example.org\n10.0.0.1 256\n", 'wrong weight value:"256"'),
    ("www.example.org\n10.0.0.1 1 2\n", 'could not parse weight line:"10.0.0.1 1 2"'),
])
def test_weight_file_errors(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "w").write_text(content)
    with pytest.raises(CorefileError) as e:
        lb_of(f". {{\n whoami\n loadbalance weighted {tmp_path / 'w'}\n}}")
    assert str(e.value).startswith(f"Corefile:3 - plugin/loadbalance: {message}")


def test_weight_file_parse() -> None:
    text = "# comment\n\nwww.Example.org.\n10.0.0.1 3\n 10.0.0.2   200 \nother.org\nfd00::1 7\n"
    assert parse_weights(text, "w") == {"www.example.org.": {"10.0.0.1": 3, "10.0.0.2": 200},
                                        "other.org.": {"fd00::1": 7}}


HOSTS = "".join(f"        10.0.0.{i} www.example.org\n" for i in range(1, 5))
COREFILE = ". {\n    loadbalance\n    hosts {\n" + HOSTS + "    }\n}"
WWW = [f"www.example.org. 3600 IN A 10.0.0.{i}" for i in range(1, 5)]


async def test_shuffles_through_the_server() -> None:
    orders = set()
    async with serve(COREFILE) as s:
        for _ in range(60):
            reply = await s.query(Case("www.example.org."))
            check(Case("www.example.org.", answer=WWW, aa=True), reply)  # same records, any order
            orders.add(tuple(rr_text(r) for r in reply.rr))
    assert len(orders) > 1


def request(qtype: str = "A", name: str = "www.example.org.") -> Request:
    msg = DNSRecord(q=DNSQuestion(name, getattr(QTYPE, qtype)))
    return Request(msg, msg.pack(), ("10.240.0.1", 40212), "udp", "127.0.0.1", "dns://:53")


def reply_with(answer: list[str], auth: list[str] | None = None, extra: list[str] | None = None,
               rcode: int = 0, qtype: str = "A") -> DNSRecord:
    r = request(qtype).reply(rcode)
    r.rr = [rr(x) for x in answer]
    r.auth = [rr(x) for x in auth or []]
    r.ar = [rr(x) for x in extra or []]
    return r


async def run(lb: LoadBalance, reply: DNSRecord, qtype: str = "A") -> DNSRecord:
    async def next_(req: Request) -> DNSRecord:
        # A fresh copy each time: the plugin reorders the reply it is given.
        return DNSRecord.parse(reply.pack())

    out = await lb.serve(request(qtype), next_)
    assert out is not None
    return out


MIXED = [
    "www.example.org. 60 IN A 192.0.2.1",
    "www.example.org. 60 IN MX 10 mx1.example.org.",
    "www.example.org. 60 IN CNAME real.example.org.",
    "www.example.org. 60 IN AAAA 2001:db8::1",
    'www.example.org. 60 IN TXT "t"',
    "www.example.org. 60 IN A 192.0.2.2",
    "www.example.org. 60 IN MX 20 mx2.example.org.",
    "www.example.org. 60 IN A 192.0.2.3",
]


def types(records: list[RR]) -> list[str]:
    return [QTYPE.get(r.rtype) for r in records]


async def test_round_robin_order_in_every_section() -> None:
    lb = LoadBalance(LoadBalanceConfig())
    seen: dict[str, set[tuple[str, ...]]] = {"rr": set(), "auth": set(), "ar": set()}
    for _ in range(60):
        out = await run(lb, reply_with(MIXED, MIXED, MIXED))
        for section in seen:
            records = getattr(out, section)
            # CNAME first, then the other types as they came, then addresses, then MX.
            t = types(records)
            assert t[:2] == ["CNAME", "TXT"]
            assert t[6:] == ["MX", "MX"]
            assert sorted(t[2:6]) == ["A", "A", "A", "AAAA"]
            assert sorted(map(rr_text, records)) == sorted(rr_text(rr(x)) for x in MIXED)
            seen[section].add(tuple(map(rr_text, records)))
    assert all(len(orders) > 1 for orders in seen.values()), {k: len(v) for k, v in seen.items()}


# (reply, qtype): replies that are passed on untouched
UNTOUCHED = [
    (reply_with(MIXED, rcode=3), "A"),
    (reply_with(MIXED, rcode=2), "A"),
    (reply_with(MIXED), "AXFR"),
    (reply_with(MIXED), "IXFR"),
]


@pytest.mark.parametrize(("reply", "qtype"), UNTOUCHED)
async def test_untouched(reply: DNSRecord, qtype: str) -> None:
    lb = LoadBalance(LoadBalanceConfig())
    for _ in range(20):
        out = await run(lb, reply, qtype)
        assert [rr_text(r) for r in out.rr] == [rr_text(r) for r in reply.rr]


async def test_single_record_and_empty_sections() -> None:
    lb = LoadBalance(LoadBalanceConfig())
    out = await run(lb, reply_with(["a.org. 60 IN A 192.0.2.1"]))
    assert types(out.rr) == ["A"]
    assert out.auth == []
    assert out.ar == []


async def test_prefer() -> None:
    lb = LoadBalance(LoadBalanceConfig(prefer=net("172.16.0.0/12", "10.0.0.0/8")))
    answer = ["x.org. 60 IN A 192.0.2.1", "x.org. 60 IN A 10.1.1.1", "x.org. 60 IN AAAA fd00::1",
              "x.org. 60 IN A 172.16.0.1", "x.org. 60 IN A 10.2.2.2", "x.org. 60 IN CNAME y.org.",
              "x.org. 60 IN MX 1 mx.org.", 'x.org. 60 IN TXT "t"']
    fronts = set()
    for _ in range(60):
        out = await run(lb, reply_with(answer, extra=answer))
        for records in (out.rr, out.ar):
            got = [rr_text(r).split()[-1] for r in records]
            assert got[0] == "y.org."
            assert got[1] == "172.16.0.1"
            assert set(got[2:4]) == {"10.1.1.1", "10.2.2.2"}
            assert set(got[4:6]) == {"192.0.2.1", "fd00::1"}
            assert got[6:] == ["mx.org.", '"t"']
            fronts.add(tuple(got[2:6]))
    assert len(fronts) > 1  # still shuffled inside each group


async def test_weighted(tmp_path: Path) -> None:
    path = tmp_path / "weights"
    path.write_text("www.example.org\n192.0.2.1 255\n192.0.2.2 1\n")
    lb = LoadBalance(LoadBalanceConfig("weighted", str(path)), rng=random.Random(7))
    assert lb.load_weights() is True
    answer = ["www.example.org. 60 IN A 192.0.2.2", "www.example.org. 60 IN CNAME z.org.",
              "www.example.org. 60 IN A 192.0.2.3", "www.example.org. 60 IN A 192.0.2.1"]
    tops: Counter[str] = Counter()
    for _ in range(300):
        out = await run(lb, reply_with(answer))
        got = [rr_text(r).split()[-1] for r in out.rr]
        assert got[0] == "z.org."
        assert sorted(got[1:]) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        tops[got[1]] += 1
    # 255 : 1 : 1 (an address not in the file weighs 1)
    assert tops["192.0.2.1"] > 270

    # Other query types are left alone.
    out = await run(lb, reply_with(answer, qtype="MX"), "MX")
    assert [rr_text(r) for r in out.rr] == [rr_text(rr(x)) for x in answer]

    # Reloading: unchanged contents are not parsed again; new ones replace the weights.
    assert lb.load_weights() is False
    path.write_text("www.example.org\n192.0.2.3 255\n")
    assert lb.load_weights() is True
    tops.clear()
    for _ in range(100):
        out = await run(lb, reply_with(answer))
        tops[rr_text(out.rr[1]).split()[-1]] += 1
    assert tops.most_common(1)[0][0] == "192.0.2.3"


async def test_weighted_file_reloaded_in_the_background(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "weights"
    path.write_text("www.example.org\n192.0.2.1 3\n")
    async with serve(f". {{\n loadbalance weighted {path} {{\n  reload 10ms\n }}\n whoami\n}}") as s:
        lb = next(p for p in s.config.plugins if isinstance(p, LoadBalance))
        assert lb.weights == {"www.example.org.": {"192.0.2.1": 3}}
        path.write_text("www.example.org\n192.0.2.1 3\n192.0.2.2 9\n")
        for _ in range(200):
            if "192.0.2.2" in lb.weights["www.example.org."]:
                break
            await asyncio.sleep(0.01)
        assert lb.weights == {"www.example.org.": {"192.0.2.1": 3, "192.0.2.2": 9}}
        # A broken file is logged and the weights in use are kept. Wait for the log line: it proves the
        # broken file was really read, which a fixed sleep would not.
        path.write_text("www.example.org\nnot-an-ip 3\n")
        broken = '[ERROR] plugin/loadbalance: wrong IP address:"not-an-ip"'
        for _ in range(200):
            if any(m.startswith(broken) for m in caplog.messages):
                break
            await asyncio.sleep(0.01)
        assert any(m.startswith(broken) for m in caplog.messages), caplog.messages
        assert lb.weights == {"www.example.org.": {"192.0.2.1": 3, "192.0.2.2": 9}}
    assert lb._periodic.task is None


async def test_weighted_missing_file_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    lb = lb_of(". {\n loadbalance weighted /nonexistent/weights\n whoami\n}")
    assert lb.config.reload == 30.0
    assert lb.weights == {}
    assert "Failed to open weight file" in caplog.text


def test_docstring_examples_build() -> None:
    blocks = re.findall(r"```corefile\n(.*?)```", lbplugin.__doc__ or "", re.S)
    assert blocks
    for text in blocks:
        build(parse(text, "Corefile"), 53)
