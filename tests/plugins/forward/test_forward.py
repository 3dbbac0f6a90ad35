"""forward: parse tables, then answers through the real Dispatcher from real upstreams on loopback.

Upstreams: a dnsmasq serving example.test, a closed port (dead), and FakeUpstream, which truncates,
mismatches, stalls or fails on purpose. Time-dependent behaviour uses short intervals and an
injected clock, never long sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dnslib import DNSRecord

from corefile import CorefileError
from dnsplugins.forward import Forward, Stanza, upstream_query
from dnsplugins.forward.config import ForwardConfig, UpstreamSpec
from dnsplugins.forward.metrics import METRICS
from dnsplugins.forward.policy import RoundRobin, make_policy, random_order, sequential
from dnsplugins.forward.upstream import IDS, Upstream, probe_query
from dnsserver.metrics import REGISTRY
from dnsserver.request import Request
from dnsserver.wire.reply import question_checked, same_question
from tests.certs import make_cert
from tests.dnstest import Case, Served, plugin_in, serve
from tests.upstreams import Dnsmasq, FakeUpstream, dead_address, query_bytes

pytestmark = pytest.mark.timeout(30)


def configs_of(text: str, filename: str = "Corefile") -> list[ForwardConfig]:
    return plugin_in(Forward, text, filename).configs


def U(host: str, port: int = 53, transport: str = "dns", server_name: str = "") -> UpstreamSpec:
    return UpstreamSpec(host, port, transport, server_name)


def F(*ups: UpstreamSpec, **kw: object) -> ForwardConfig:
    return ForwardConfig(upstreams=list(ups), **kw)  # type: ignore[arg-type]


# -- parsing --------------------------------------------------------------------------------------

PARSE_CASES = [
    ("forward . 10.0.0.1", [F(U("10.0.0.1"))]),
    (
        "forward . 10.0.0.1:1053 dns://10.0.0.2 dns://10.0.0.3:5353 [2001:db8::1]:53 2001:db8::2",
        [F(U("10.0.0.1", 1053), U("10.0.0.2"), U("10.0.0.3", 5353), U("2001:db8::1"), U("2001:db8::2"))],
    ),
    ("forward Example.ORG 10.0.0.1", [F(U("10.0.0.1"), from_zone="example.org.")]),
    ("forward 10.0.0.0/24 10.0.0.1", [F(U("10.0.0.1"), from_zone="0.0.10.in-addr.arpa.")]),
    (
        "forward . tls://10.0.0.1 tls://10.0.0.2:8853 tls://10.0.0.3%dns.example tls://10.0.0.4%dns.example:9953",
        [
            F(
                U("10.0.0.1", 853, "tls"),
                U("10.0.0.2", 8853, "tls"),
                U("10.0.0.3", 853, "tls", "dns.example"),
                U("10.0.0.4", 9953, "tls", "dns.example"),
            )
        ],
    ),
    (
        "forward . 10.0.0.1 {\n  except a.example B.example.\n  force_tcp\n  prefer_udp\n  expire 30s\n"
        "  max_age 1m\n  max_idle_conns 4\n  read_timeout 500ms\n  max_fails 3\n  max_connect_attempts 5\n"
        "  policy round_robin\n  health_check 2s no_rec domain Probe.Example\n  max_concurrent 100\n"
        "  next nxdomain SERVFAIL\n  next_on_nodata\n  failover servfail REFUSED\n"
        "  failfast_all_unhealthy_upstreams\n  source_address 127.0.0.2\n }",
        [
            F(
                U("10.0.0.1"),
                ignored=["a.example.", "b.example."],
                force_tcp=True,
                prefer_udp=True,
                expire=30.0,
                max_age=60.0,
                max_idle_conns=4,
                read_timeout=0.5,
                max_fails=3,
                max_connect_attempts=5,
                policy="round_robin",
                hc_interval=2.0,
                hc_recursion_desired=False,
                hc_domain="probe.example.",
                max_concurrent=100,
                next_rcodes=[3, 2],
                next_on_nodata=True,
                failover_rcodes=[2, 5],
                failfast_all_unhealthy=True,
                source_address="127.0.0.2",
            )
        ],
    ),
    (
        "forward . 10.0.0.1 {\n max_fails 0\n max_connect_attempts 0\n expire 0\n health_check 0s\n}",
        [F(U("10.0.0.1"), max_fails=0, max_connect_attempts=0, expire=0.0, hc_interval=0.0)],
    ),
    (
        "forward . 10.0.0.1 {\n tls_servername dns.example\n policy sequential\n}",
        [F(U("10.0.0.1"), tls_servername="dns.example", policy="sequential")],
    ),
    # Several stanzas, kept in Corefile order.
    (
        "forward example.org 10.0.0.1 {\n next NXDOMAIN\n}\nforward . 10.0.0.2",
        [F(U("10.0.0.1"), from_zone="example.org.", next_rcodes=[3]), F(U("10.0.0.2"))],
    ),
    ("forward . " + " ".join(f"10.0.0.{i}" for i in range(1, 16)), [F(*(U(f"10.0.0.{i}") for i in range(1, 16)))]),
]


@pytest.mark.parametrize(("directive", "want"), PARSE_CASES)
def test_parse(directive: str, want: list[ForwardConfig]) -> None:
    assert configs_of(f". {{\n{directive}\n}}") == want


def test_defaults() -> None:
    (cfg,) = configs_of(". {\n forward . 10.0.0.1 10.0.0.2\n}")
    assert (cfg.expire, cfg.max_fails, cfg.read_timeout, cfg.hc_interval, cfg.policy, cfg.connect_attempts) == (
        10.0,
        2,
        2.0,
        0.5,
        "random",
        4,
    )
    assert cfg.tls_context is None


def test_resolv_conf_upstreams_and_relative_path(tmp_path: Path) -> None:
    (tmp_path / "resolv.conf").write_text(
        "# comment\nsearch example.org\nnameserver 10.0.0.1\n"
        "nameserver fd00::53\nnameserver not-an-ip\noptions ndots:5\n"
    )
    cfgs = configs_of(". {\n forward . resolv.conf 10.0.0.9:99\n}", str(tmp_path / "Corefile"))
    assert cfgs[0].upstreams == [U("10.0.0.1"), U("fd00::53"), U("10.0.0.9", 99)]


def test_tls_material_is_loaded(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    (cfg,) = configs_of(
        f". {{\n forward . tls://127.0.0.1 {{\n  tls {cert.name} {key.name} {cert.name}\n"
        f"  tls_servername dns.test\n }}\n}}",
        str(tmp_path / "Corefile"),
    )
    assert cfg.tls_args == [str(cert), str(key), str(cert)]
    assert cfg.tls_context is not None
    assert cfg.tls_context.verify_mode.name == "CERT_REQUIRED"


E2, E3 = "Corefile:2 - plugin/forward: ", "Corefile:3 - plugin/forward: "
PARSE_ERRORS = [
    ("forward", E2 + "Wrong argument count or unexpected line ending after 'forward'"),
    ("forward .", E2 + "Wrong argument count or unexpected line ending after '.'"),
    ("forward . " + " ".join(f"10.0.0.{i}" for i in range(1, 17)), E2 + "more than 15 TOs configured: 16"),
    ("forward . example.invalid", E2 + 'not an IP address or file: "example.invalid"'),
    ("forward . 10.0.0.1:http", E2 + 'not an IP address or file: "10.0.0.1:http"'),
    (
        "forward . https://10.0.0.1",
        E2 + "'https' is not supported as a destination protocol in forward: https://10.0.0.1",
    ),
    ("forward . 10.0.0.1 {\n policy fastest\n}", E3 + "unknown policy 'fastest'"),
    ("forward . 10.0.0.1 {\n policy\n}", E3 + "Wrong argument count or unexpected line ending after 'policy'"),
    ("forward . 10.0.0.1 {\n bogus 1\n}", E3 + "unknown property 'bogus'"),
    ("forward . 10.0.0.1 {\n except\n}", E3 + "Wrong argument count or unexpected line ending after 'except'"),
    ("forward . 10.0.0.1 {\n force_tcp yes\n}", E3 + "Wrong argument count or unexpected line ending after 'yes'"),
    ("forward . 10.0.0.1 {\n max_fails -1\n}", E3 + 'strconv.ParseUint: parsing "-1": invalid syntax'),
    (
        "forward . 10.0.0.1 {\n max_fails 4294967296\n}",
        E3 + 'strconv.ParseUint: parsing "4294967296": value out of range',
    ),
    ("forward . 10.0.0.1 {\n max_connect_attempts x\n}", E3 + 'strconv.ParseUint: parsing "x": invalid syntax'),
    ("forward . 10.0.0.1 {\n max_concurrent -5\n}", E3 + "max_concurrent can't be negative: -5"),
    ("forward . 10.0.0.1 {\n max_concurrent many\n}", E3 + 'strconv.Atoi: parsing "many": invalid syntax'),
    ("forward . 10.0.0.1 {\n max_idle_conns -1\n}", E3 + "max_idle_conns can't be negative: -1"),
    ("forward . 10.0.0.1 {\n expire 5x\n}", E3 + 'time: invalid duration "5x"'),
    ("forward . 10.0.0.1 {\n expire -1s\n}", E3 + "expire can't be negative: -1s"),
    ("forward . 10.0.0.1 {\n read_timeout -2s\n}", E3 + "read_timeout can't be negative: -2s"),
    ("forward . 10.0.0.1 {\n max_age 5s\n}", E2 + "max_age (5s) must not be less than expire (10s)"),
    ("forward . 10.0.0.1 {\n health_check -1s\n}", E3 + "health_check can't be negative: -1000000000"),
    ("forward . 10.0.0.1 {\n health_check 1s sometimes\n}", E3 + "health_check: unknown option sometimes"),
    (
        "forward . 10.0.0.1 {\n health_check 1s domain\n}",
        E3 + "Wrong argument count or unexpected line ending after 'domain'",
    ),
    ("forward . 10.0.0.1 {\n health_check 1s domain a..b\n}", E3 + "health_check: invalid domain name a..b"),
    ("forward . 10.0.0.1 {\n next\n}", E3 + "Wrong argument count or unexpected line ending after 'next'"),
    ("forward . 10.0.0.1 {\n next NXDOMAIN NOPE\n}", E3 + "NOPE is not a valid rcode"),
    ("forward . 10.0.0.1 {\n failover NOERROR\n}", E3 + "NoError cannot be used in failover"),
    ("forward . 10.0.0.1 {\n failover\n}", E3 + "Wrong argument count or unexpected line ending after 'failover'"),
    ("forward . 10.0.0.1 {\n tls a b c d\n}", E3 + "Wrong argument count or unexpected line ending after 'd'"),
    (
        "forward . 10.0.0.1 {\n tls /nonexistent/ca.pem\n}",
        E3 + "error reading /nonexistent/ca.pem: no such file or directory",
    ),
    (
        "forward . 10.0.0.1 {\n tls /nonexistent/c.pem /nonexistent/k.pem\n}",
        E3 + "could not load TLS cert: no such file or directory",
    ),
    (
        "forward . tls://10.0.0.1%a.example {\n tls_servername b.example\n}",
        E2 + "both forward ('b.example') and proxy level ('a.example') TLS servernames are set for upstream "
        "proxy 'tls://10.0.0.1:853'",
    ),
    ("forward . 10.0.0.1 {\n source_address nowhere\n}", E3 + "source_address: invalid IP address 'nowhere'"),
    (
        "forward . 10.0.0.1 {\n failfast_all_unhealthy_upstreams now\n}",
        E3 + "Wrong argument count or unexpected line ending after 'now'",
    ),
]


@pytest.mark.parametrize(("directive", "message"), PARSE_ERRORS)
def test_parse_errors(directive: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        configs_of(f". {{\n{directive}\n}}")
    assert str(e.value) == message


def test_not_a_root_ca_file(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(CorefileError) as e:
        configs_of(". {\n forward . tls://10.0.0.1 {\n  tls junk.pem\n }\n}", str(tmp_path / "Corefile"))
    assert str(e.value) == f"{tmp_path}/Corefile:3 - plugin/forward: could not read root certs from {tmp_path}/junk.pem"


# -- helpers for serving ------------------------------------------------------------------------------


def forward_in(s: Served) -> Forward:
    return next(p for p in s.config.plugins if isinstance(p, Forward))


def passed_on(name: str, qtype: str = "A", proto: str = "udp") -> Case:
    """The reply of whoami, the plugin after forward in these blocks: proof forward passed it on."""
    return Case(name, qtype, proto=proto, extra=[f"{name} 0 IN A 10.240.0.1", f"_{proto}.{name} 0 IN SRV 0 0 40212 ."])


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
def dnsmasq() -> Iterator[Dnsmasq]:
    d = Dnsmasq()
    yield d
    d.stop()


WWW = "www.example.test."
DNSMASQ_CASES = [
    Case(WWW, answer=[f"{WWW} 0 IN A 192.0.2.10"]),
    Case(WWW, proto="tcp", answer=[f"{WWW} 0 IN A 192.0.2.10"]),
    Case("WwW.Example.TEST.", answer=[f"{WWW} 0 IN A 192.0.2.10"]),
    Case(WWW, "AAAA", answer=[f"{WWW} 0 IN AAAA 2001:db8::10"]),
    Case(
        "alias.example.test.",
        answer=[f"alias.example.test. 0 IN CNAME {WWW}", f"{WWW} 0 IN A 192.0.2.10"],
        ordered=True,
    ),
    Case("txt.example.test.", "TXT", answer=['txt.example.test. 0 IN TXT "hello world"']),
    Case("a.wild.example.test.", answer=["a.wild.example.test. 0 IN A 192.0.2.20"]),
    # Upstream rcodes are passed on as they are: NXDOMAIN stays NXDOMAIN, REFUSED stays REFUSED.
    Case("nope.example.test.", rcode="NXDOMAIN"),
    Case("elsewhere.invalid.", rcode="REFUSED"),
    Case(WWW, do=True, bufsize=1232, answer=[f"{WWW} 0 IN A 192.0.2.10"]),
]


async def test_answers_from_dnsmasq(dnsmasq: Dnsmasq) -> None:
    async with serve(f". {{\n forward . {dnsmasq.addr}\n}}") as s:
        await s.run(DNSMASQ_CASES)


async def test_reply_id_is_the_clients_and_question_kept(dnsmasq: Dnsmasq) -> None:
    async with serve(f". {{\n forward . {dnsmasq.addr}\n}}") as s:
        fwd = forward_in(s)
        for qid in (0, 1, 4321, 65535):
            msg = DNSRecord.question("www.example.test", "A")
            msg.header.id = qid
            data = msg.pack()
            req = Request(msg, data, ("127.0.0.1", 5353), "udp", "127.0.0.1", "dns://:53")
            reply = await fwd.serve(req, _unreachable)
            assert reply is not None
            assert reply.header.id == qid
            assert str(reply.q.qname) == "www.example.test."
            assert reply.header.qr == 1


async def _unreachable(req: Request) -> DNSRecord | None:
    raise AssertionError("forward passed the query on")


async def test_big_reply_truncated_by_dnsmasq_is_passed_on(dnsmasq: Dnsmasq) -> None:
    async with serve(f". {{\n forward . {dnsmasq.addr}\n}}") as s:
        r = await s.query(Case("big.example.test.", "TXT"))
        assert r.header.tc == 1
        r = await s.query(Case("big.example.test.", "TXT", proto="tcp"))
        assert r.header.tc == 0
        assert len(r.rr) == 1


# -- transports and the misbehaving upstream ----------------------------------------------------------

TRANSPORT_CASES = [
    # (options, client transport, transports the upstream saw)
    ("", "udp", ["udp"]),
    ("", "tcp", ["tcp"]),
    ("force_tcp", "udp", ["tcp"]),
    ("prefer_udp", "tcp", ["udp"]),
    ("force_tcp\n prefer_udp", "udp", ["tcp"]),  # force_tcp wins
]


@pytest.mark.parametrize(("options", "client", "seen"), TRANSPORT_CASES)
async def test_transport(options: str, client: str, seen: list[str]) -> None:
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr} {{\n {options}\n }}\n}}") as s:
        await s.run([Case("ok.example.", proto=client, answer=["ok.example. 60 IN A 192.0.2.1"])])
        assert [x.proto for x in up.seen] == seen


TRUNCATION_CASES = [
    # A TC reply is passed on unchanged; prefer_udp asks again over TCP.
    ("", "udp", Case("tc.example.", tc=True), ["udp"]),
    ("prefer_udp", "udp", Case("tc.example.", tc=False, answer=["tc.example. 60 IN A 192.0.2.1"]), ["udp", "tcp"]),
    ("prefer_udp", "tcp", Case("tc.example.", proto="tcp", answer=["tc.example. 60 IN A 192.0.2.1"]), ["udp", "tcp"]),
    ("", "tcp", Case("tc.example.", proto="tcp", answer=["tc.example. 60 IN A 192.0.2.1"]), ["tcp"]),
]


@pytest.mark.parametrize(("options", "client", "case", "seen"), TRUNCATION_CASES)
async def test_truncated_replies(options: str, client: str, case: Case, seen: list[str]) -> None:
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr} {{\n {options}\n }}\n}}") as s:
        await s.run([case])
        assert [x.proto for x in up.seen] == seen


BAD_REPLY_CASES = [
    # A reply for another question, or one that is not a reply: FORMERR, and no other upstream is asked.
    ("mismatch.example.", "FORMERR", 1),
    ("noqr.example.", "FORMERR", 1),
    # A reply with a stray ID first: ignored, the right one is used.
    ("wrongid.example.", "NOERROR", 1),
    # Junk: an upstream failure; both tries fail, SERVFAIL.
    ("garbage.example.", "SERVFAIL", 2),
    # Upstream errors are the client's answer, never turned into something else.
    ("servfail.example.", "SERVFAIL", 1),
    ("nxdomain.example.", "NXDOMAIN", 1),
    ("refused.example.", "REFUSED", 1),
]


async def via_chain(s: Served, case: Case) -> DNSRecord:
    """The reply of the chain (Forward.serve), as a block with a plugin before forward (cache) gets it;
    `s.query` takes the relay path (Forward.relay) for a block that only forwards."""
    out = await s.dispatcher.handle(case.message().pack(), case.client, case.proto, "127.0.0.1")
    assert out is not None
    return DNSRecord.parse(out)


@pytest.mark.parametrize("path", ["relay", "chain"])
@pytest.mark.parametrize(("name", "rcode", "asked"), BAD_REPLY_CASES)
async def test_bad_replies(name: str, rcode: str, asked: int, path: str) -> None:
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr}\n}}") as s:
        r = await (s.query(Case(name)) if path == "relay" else via_chain(s, Case(name)))
        assert s.last_relay == (path == "relay")
        assert (r.header.rcode, str(r.q.qname)) == (
            {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "REFUSED": 5}[rcode],
            name,
        )
        assert up.asked() == asked


EDNS_CASES = [
    # The upstream's EDNS size is max(client's, 512); a client without EDNS sends none upstream.
    (Case("ok.example."), None),
    (Case("ok.example.", bufsize=100), 512),
    (Case("ok.example.", bufsize=1232, do=True), 1232),
    (Case("ok.example.", bufsize=4096), 4096),
]


@pytest.mark.parametrize(("case", "size"), EDNS_CASES)
async def test_upstream_edns_size(case: Case, size: int | None) -> None:
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr}\n}}") as s:
        r = await s.query(case)
        assert r.header.rcode == 0
        assert len(r.rr) == 1
        assert up.seen[0].edns_size == size


def test_query_bytes_are_the_clients_own() -> None:
    msg = DNSRecord.question("ok.example", "A")
    data = msg.pack()
    req = Request(msg, data, ("127.0.0.1", 1), "udp", "127.0.0.1", "dns://:53")
    assert upstream_query(req) is data  # relayed as received, not re-packed
    assert same_question(data, DNSRecord.parse(data).reply().pack())
    assert same_question(data, DNSRecord.question("OK.Example", "A").reply().pack())
    assert not same_question(data, DNSRecord.question("ok.example", "AAAA").reply().pack())
    assert not same_question(data, data)  # no QR bit


@pytest.mark.parametrize(("reply", "want"), [
    (DNSRecord.question("ok.example", "A").reply(), 12 + len(b"\x02ok\x07example\x00") + 4),  # echoed as sent
    (DNSRecord.question("OK.Example", "A").reply(), 12 + len(b"\x02ok\x07example\x00") + 4),  # other case
    (DNSRecord.question("ok.example", "AAAA").reply(), -1),
    (DNSRecord.question("other.example", "A").reply(), -1),
])
def test_question_checked_tells_where_the_question_ends(reply: DNSRecord, want: int) -> None:
    assert question_checked(bytes(DNSRecord.question("ok.example", "A").pack()), bytes(reply.pack())) == want


def test_question_checked_folds_the_case_of_the_name_only() -> None:
    query = bytes(DNSRecord.question("OK.example", "HTTPS").pack())  # type 65 = 0x0041, an upper-case "A"
    reply = bytearray(DNSRecord.question("ok.example", "HTTPS").reply().pack())
    end = 12 + len(b"\x02ok\x07example\x00") + 4
    assert question_checked(query, bytes(reply)) == end
    reply[end - 3] = 0x61  # type 97: the same bytes once lower-cased, another question
    assert question_checked(query, bytes(reply)) == -1


def test_ids_are_random_16_bit() -> None:
    ids = {IDS.next() for _ in range(3000)}
    assert len(ids) > 2800
    assert all(0 <= i < 65536 for i in ids)


# -- failures, timeouts and the deadline --------------------------------------------------------------


async def test_dead_upstream_gives_servfail_at_once() -> None:
    async with serve(f". {{\n forward . {dead_address()}\n}}") as s:
        start = time.monotonic()
        await s.run([Case("a.example.", rcode="SERVFAIL"), Case("a.example.", proto="tcp", rcode="SERVFAIL")])
        assert time.monotonic() - start < 1.0


async def test_dead_upstream_is_skipped_for_a_live_one() -> None:
    async with FakeUpstream() as up:
        text = f". {{\n forward . {dead_address()} {up.addr} {{\n policy sequential\n }}\n}}"
        async with serve(text) as s:
            await s.run([Case("ok.example.", answer=["ok.example. 60 IN A 192.0.2.1"])] * 3)


async def test_slow_upstream_times_out_and_the_next_one_answers() -> None:
    async with FakeUpstream(mode="slow", delay=2.0) as slow, FakeUpstream() as good:
        text = f". {{\n forward . {slow.addr} {good.addr} {{\n policy sequential\n read_timeout 200ms\n }}\n}}"
        async with serve(text) as s:
            start = time.monotonic()
            await s.run([Case("ok.example.", answer=["ok.example. 60 IN A 192.0.2.1"])])
            assert 0.2 <= time.monotonic() - start < 1.0
            assert slow.asked() == 1
            assert good.asked() == 1


async def test_silent_upstreams_servfail_within_the_deadline(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeUpstream(mode="drop") as a, FakeUpstream(mode="drop") as b:
        text = (
            f". {{\n errors\n forward . {a.addr} {b.addr} {{\n read_timeout 150ms\n max_connect_attempts 0\n"
            f" max_fails 0\n }}\n}}"
        )
        async with serve(text) as s:
            forward_in(s).stanzas[0].deadline = 0.8  # the 5s deadline, scaled down
            start = time.monotonic()
            await s.run([Case("a.example.", rcode="SERVFAIL")])
            took = time.monotonic() - start
            assert 0.75 <= took < 1.5
            # No attempt cap: upstreams tried in turn until the deadline.
            assert a.asked() + b.asked() >= 5
    assert any("plugin/forward: read udp" in m and "i/o timeout" in m for m in caplog.messages)


async def test_connect_attempts_cap() -> None:
    async with FakeUpstream(mode="drop") as a:
        async with serve(f". {{\n forward . {a.addr} {{\n read_timeout 100ms\n }}\n}}") as s:
            await s.run([Case("a.example.", rcode="SERVFAIL")])
            assert a.asked() == 2  # default: twice the number of upstreams
        async with serve(f". {{\n forward . {a.addr} {{\n read_timeout 100ms\n max_connect_attempts 3\n }}\n}}") as s:
            a.seen.clear()
            await s.run([Case("a.example.", rcode="SERVFAIL")])
            assert a.asked() == 3


FAILOVER_CASES = [
    # (first upstream's mode, options, expected rcode, queries each upstream got)
    ("servfail", "failover SERVFAIL", "NOERROR", (1, 1)),
    ("refused", "failover SERVFAIL REFUSED", "NOERROR", (1, 1)),
    ("servfail", "", "SERVFAIL", (1, 0)),
    ("nxdomain", "failover SERVFAIL", "NXDOMAIN", (1, 0)),
]


@pytest.mark.parametrize(("mode", "options", "rcode", "asked"), FAILOVER_CASES)
async def test_failover(mode: str, options: str, rcode: str, asked: tuple[int, int]) -> None:
    async with FakeUpstream(mode=mode) as first, FakeUpstream() as second:
        text = f". {{\n forward . {first.addr} {second.addr} {{\n policy sequential\n {options}\n }}\n}}"
        async with serve(text) as s:
            r = await s.query(Case("ok.example."))
            assert r.header.rcode == {"NOERROR": 0, "SERVFAIL": 2, "NXDOMAIN": 3}[rcode]
            assert (first.asked(), second.asked()) == asked


async def test_failover_when_every_upstream_fails_returns_the_last_reply() -> None:
    async with FakeUpstream(mode="servfail") as a, FakeUpstream(mode="refused") as b:
        text = f". {{\n forward . {a.addr} {b.addr} {{\n policy sequential\n failover SERVFAIL REFUSED\n }}\n}}"
        async with serve(text) as s:
            await s.run([Case("x.example.", rcode="REFUSED")])
            assert (a.asked(), b.asked()) == (1, 1)


# -- several stanzas: next, next_on_nodata, except ---------------------------------------------------


async def test_next_hands_over_to_the_following_forward(dnsmasq: Dnsmasq) -> None:
    async with FakeUpstream(mode="nxdomain") as first:
        text = f". {{\n forward . {first.addr} {{\n next NXDOMAIN\n }}\n forward . {dnsmasq.addr}\n whoami\n}}"
        async with serve(text) as s:
            await s.run([Case(WWW, answer=[f"{WWW} 0 IN A 192.0.2.10"]), Case("nope.example.test.", rcode="NXDOMAIN")])
            assert first.names() == [WWW, "nope.example.test."]
        # Without `next`, the first stanza's NXDOMAIN is the answer.
        text = f". {{\n forward . {first.addr}\n forward . {dnsmasq.addr}\n}}"
        async with serve(text) as s:
            await s.run([Case(WWW, rcode="NXDOMAIN")])


async def test_next_on_the_last_stanza_returns_the_reply() -> None:
    async with (
        FakeUpstream(mode="nxdomain") as up,
        serve(f". {{\n forward . {up.addr} {{\n next NXDOMAIN\n }}\n whoami\n}}") as s,
    ):
        await s.run([Case("a.example.", rcode="NXDOMAIN")])


async def test_next_on_nodata(dnsmasq: Dnsmasq) -> None:
    async with FakeUpstream(mode="nodata") as first:
        text = f". {{\n forward . {first.addr} {{\n next_on_nodata\n }}\n forward . {dnsmasq.addr}\n}}"
        async with serve(text) as s:
            await s.run([Case(WWW, answer=[f"{WWW} 0 IN A 192.0.2.10"])])
        text = f". {{\n forward . {first.addr}\n forward . {dnsmasq.addr}\n}}"
        async with serve(text) as s:
            await s.run([Case(WWW)])  # the empty NOERROR of the first stanza


async def test_stanzas_by_zone_and_except(dnsmasq: Dnsmasq) -> None:
    async with FakeUpstream(answer="192.0.2.77") as other:
        text = (
            f". {{\n forward example.test {dnsmasq.addr} {{\n  except www.example.test\n }}\n"
            f" forward other.example {other.addr} {{\n  except other.example\n }}\n whoami\n}}"
        )
        async with serve(text) as s:
            await s.run(
                [
                    # except: passed on (here to whoami), and so is all below it...
                    passed_on(WWW),
                    passed_on("x.www.example.test."),
                    Case("txt.example.test.", "TXT", answer=['txt.example.test. 0 IN TXT "hello world"']),
                    passed_on("a.other.example."),
                    # ...but FROM itself is always forwarded, even when listed in except.
                    Case("other.example.", answer=["other.example. 60 IN A 192.0.2.77"]),
                    passed_on("unrelated.example."),
                ]
            )


async def test_other_classes_are_forwarded() -> None:
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr}\n}}") as s:
        r = await s.query(Case("version.bind.", "TXT", qclass="CH"))
        assert r.header.rcode == 0
        assert up.names() == ["version.bind."]


# -- max_concurrent ------------------------------------------------------------------------------------


async def test_max_concurrent_refuses_the_excess() -> None:
    async with (
        FakeUpstream(mode="slow", delay=0.3) as up,
        serve(f". {{\n forward . {up.addr} {{\n max_concurrent 2\n }}\n}}") as s,
    ):
        before = METRICS.max_concurrent_rejects
        replies = await asyncio.gather(*(s.query(Case(f"q{i}.example.")) for i in range(5)))
        rcodes = sorted(r.header.rcode for r in replies)
        assert rcodes == [0, 0, 5, 5, 5]
        assert METRICS.max_concurrent_rejects - before == 3
        assert REGISTRY.get_sample_value("coredns_forward_max_concurrent_rejects_total") >= 3
        assert up.asked() == 2
        # Not a health failure, and the slots free up again.
        assert all(u.fails == 0 for u in forward_in(s).stanzas[0].upstreams)
        await s.run([Case("ok.example.", answer=["ok.example. 60 IN A 192.0.2.1"])])


# -- health checks ---------------------------------------------------------------------------------


async def test_down_upstream_is_skipped_until_a_probe_succeeds() -> None:
    dead = dead_address()
    dead_port = int(dead.rsplit(":", 1)[1])
    async with FakeUpstream() as good:
        text = f". {{\n forward . {dead} {good.addr} {{\n policy sequential\n health_check 50ms\n }}\n}}"
        async with serve(text) as s:
            st = forward_in(s).stanzas[0]
            bad = st.upstreams[0]
            before = (
                REGISTRY.get_sample_value(
                    "coredns_proxy_healthcheck_failures_total", {"proxy_name": "forward", "to": dead}
                )
                or 0
            )
            await s.run([Case("ok.example.", answer=["ok.example. 60 IN A 192.0.2.1"])])
            assert bad.health is not None
            assert bad.health.probes >= 1
            await until(lambda: bad.down(2))  # three failed probes in a row
            assert (
                REGISTRY.get_sample_value(
                    "coredns_proxy_healthcheck_failures_total", {"proxy_name": "forward", "to": dead}
                )
                - before
                >= 3
            )
            # Down: not tried at all any more, the good one answers straight away.
            good.seen.clear()
            await s.run([Case("ok.example.", answer=["ok.example. 60 IN A 192.0.2.1"])] * 3)
            assert good.names() == ["ok.example."] * 3
            # The dead address comes to life: the next probe finds it and it is back in rotation.
            async with FakeUpstream(port=dead_port) as revived:
                await until(lambda: bad.fails == 0)
                assert not bad.health.running
                probe = revived.seen[-1]
                assert (probe.name, probe.qtype, probe.rd) == (".", "NS", True)
                await s.run([Case("ok.example.", answer=["ok.example. 60 IN A 192.0.2.1"])])
                assert revived.names("udp")[-1] == "ok.example."


HEALTH_OPTION_CASES = [
    ("health_check 20ms", (".", "NS", True, "udp")),
    ("health_check 20ms no_rec", (".", "NS", False, "udp")),
    ("health_check 20ms domain probe.example", ("probe.example.", "NS", True, "udp")),
    ("health_check 20ms\n force_tcp", (".", "NS", True, "tcp")),
]


@pytest.mark.parametrize(("options", "probe"), HEALTH_OPTION_CASES)
async def test_health_probe_shape(options: str, probe: tuple[str, str, bool, str]) -> None:
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr} {{\n {options}\n }}\n}}") as s:
        bad = forward_in(s).stanzas[0].upstreams[0]
        assert await bad.health.check()  # type: ignore[union-attr]
        seen = up.seen[-1]
        assert (seen.name, seen.qtype, seen.rd, seen.proto) == probe


async def test_any_reply_counts_as_healthy() -> None:
    async with FakeUpstream(mode="servfail") as up, serve(f". {{\n forward . {up.addr}\n}}") as s:
        u = forward_in(s).stanzas[0].upstreams[0]
        u.fails = 5
        assert await u.health.check()  # type: ignore[union-attr]
        assert u.fails == 0


async def test_max_fails_zero_never_marks_down_nor_probes() -> None:
    async with serve(f". {{\n forward . {dead_address()} {{\n max_fails 0\n health_check 10ms\n }}\n}}") as s:
        await s.run([Case("a.example.", rcode="SERVFAIL")] * 2)
        u = forward_in(s).stanzas[0].upstreams[0]
        assert u.health is not None
        assert u.health.probes == 0
        assert not u.down(0)


async def test_all_down_tries_one_anyway_or_fails_fast() -> None:
    async with FakeUpstream() as a, FakeUpstream() as b:
        text = f". {{\n forward . {a.addr} {b.addr}\n}}"
        async with serve(text) as s:
            for u in forward_in(s).stanzas[0].upstreams:
                u.fails = 3  # both marked down (max_fails 2), but actually fine
            broken = METRICS.hc_broken
            await s.run([Case("ok.example.", answer=["ok.example. 60 IN A 192.0.2.1"])])
            assert METRICS.hc_broken > broken
            assert a.asked() + b.asked() == 1
        async with serve(f". {{\n forward . {a.addr} {b.addr} {{\n failfast_all_unhealthy_upstreams\n }}\n}}") as s:
            for u in forward_in(s).stanzas[0].upstreams:
                u.fails = 3
            await s.run([Case("ok.example.", rcode="SERVFAIL")])
            assert a.asked() + b.asked() == 1  # nobody asked this time


# -- policies ------------------------------------------------------------------------------------------


def test_policy_orders() -> None:
    items = ["a", "b", "c", "d"]
    assert sequential(items) == items
    rr = RoundRobin()
    assert [list(rr(items)) for _ in range(4)] == [
        ["b", "a", "c", "d"],
        ["c", "a", "b", "d"],
        ["d", "a", "b", "c"],
        ["a", "b", "c", "d"],
    ]
    orders = {tuple(random_order(items)) for _ in range(300)}
    assert all(sorted(o) == items for o in orders)
    assert len(orders) > 10
    assert {tuple(random_order(["a", "b"])) for _ in range(100)} == {("a", "b"), ("b", "a")}
    assert isinstance(make_policy("round_robin"), RoundRobin)
    assert make_policy("sequential") is sequential


POLICY_CASES = [("round_robin", [2, 2, 2]), ("sequential", [6, 0, 0])]


@pytest.mark.parametrize(("policy", "hits"), POLICY_CASES)
async def test_policy_spreads_queries(policy: str, hits: list[int]) -> None:
    async with FakeUpstream() as a, FakeUpstream() as b, FakeUpstream() as c:
        text = f". {{\n forward . {a.addr} {b.addr} {c.addr} {{\n policy {policy}\n }}\n}}"
        async with serve(text) as s:
            await s.run([Case("ok.example.", answer=["ok.example. 60 IN A 192.0.2.1"])] * 6)
            assert [len(a.seen), len(b.seen), len(c.seen)] == hits


# -- connection pooling --------------------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_tcp_connections_are_pooled_and_expire() -> None:
    async with FakeUpstream() as up:
        text = f". {{\n forward . {up.addr} {{\n force_tcp\n expire 10s\n max_age 30s\n }}\n}}"
        async with serve(text) as s:
            u = forward_in(s).stanzas[0].upstreams[0]
            clock = u.clock = Clock()
            labels = {"proxy_name": "forward", "to": up.addr, "proto": "tcp"}
            hits = REGISTRY.get_sample_value("coredns_proxy_conn_cache_hits_total", labels) or 0
            ok = Case("ok.example.", answer=["ok.example. 60 IN A 192.0.2.1"])
            await s.run([ok, ok, ok])
            assert up.tcp_connections == 1
            assert u.idle_connections == 1
            assert REGISTRY.get_sample_value("coredns_proxy_conn_cache_hits_total", labels) - hits == 2
            clock.now += 9.9  # idle for less than `expire`: reused
            await s.run([ok])
            assert up.tcp_connections == 1
            clock.now += 10.0  # idle for `expire`: closed, a new one is dialled
            await s.run([ok])
            assert up.tcp_connections == 2
            for _ in range(4):  # in use all the time, but older than max_age: replaced
                clock.now += 9.0
                await s.run([ok])
            assert up.tcp_connections == 3


async def test_connection_closed_by_the_upstream_is_replaced_quietly() -> None:
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr} {{\n force_tcp\n }}\n}}") as s:
        ok = Case("ok.example.", answer=["ok.example. 60 IN A 192.0.2.1"])
        await s.run([ok])
        up.close_connections()
        await asyncio.sleep(0.05)
        await s.run([ok])
        u = forward_in(s).stanzas[0].upstreams[0]
        assert up.tcp_connections == 2
        assert u.fails == 0
        assert not u.health.running


async def test_max_idle_conns_caps_the_pool() -> None:
    async with (
        FakeUpstream(mode="slow", delay=0.1) as up,
        serve(f". {{\n forward . {up.addr} {{\n force_tcp\n max_idle_conns 2\n }}\n}}") as s,
    ):
        replies = await asyncio.gather(*(s.query(Case(f"q{i}.example.")) for i in range(5)))
        assert all(r.header.rcode == 0 for r in replies)
        assert up.tcp_connections == 5
        assert forward_in(s).stanzas[0].upstreams[0].idle_connections == 2


async def test_udp_uses_one_socket_per_upstream() -> None:
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr}\n}}") as s:
        replies = await asyncio.gather(*(s.query(Case(f"q{i}.example.")) for i in range(50)))
        assert all(r.header.rcode == 0 and len(r.rr) == 1 for r in replies)
        assert len({x.client for x in up.seen}) == 1
        assert len({x.qid for x in up.seen}) == 50  # no two in-flight queries share an ID


async def test_source_address() -> None:
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr} {{\n source_address 127.0.0.2\n }}\n}}") as s:
        await s.run(
            [
                Case("ok.example.", answer=["ok.example. 60 IN A 192.0.2.1"]),
                Case("ok.example.", proto="tcp", answer=["ok.example. 60 IN A 192.0.2.1"]),
            ]
        )
        assert [x.client[0] for x in up.seen] == ["127.0.0.2", "127.0.0.2"]


# -- DNS over TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("tls"))


def _tls_server(cert: tuple[Path, Path]) -> FakeUpstream:
    from tests.upstreams import server_tls_context

    return FakeUpstream(tls=server_tls_context(*cert))


DOT_CASES = [
    # (TO, block options, expected rcode)
    ("tls://127.0.0.1:PORT", "tls CA\n tls_servername dns.test", "NOERROR"),
    ("tls://127.0.0.1%dns.test:PORT", "tls CA", "NOERROR"),
    ("tls://127.0.0.1:PORT", "tls CA", "NOERROR"),  # the IP is in the certificate
    ("tls://127.0.0.1:PORT", "tls CA\n tls_servername other.test", "SERVFAIL"),  # wrong name
    ("tls://127.0.0.1:PORT", "tls_servername dns.test", "SERVFAIL"),  # system CAs do not know it
    ("tls://127.0.0.1:PORT", "tls CA\n tls_servername dns.test\n force_tcp", "NOERROR"),
]


@pytest.mark.parametrize(("to", "options", "rcode"), DOT_CASES)
async def test_dns_over_tls(cert: tuple[Path, Path], to: str, options: str, rcode: str) -> None:
    async with _tls_server(cert) as up:
        text = (
            f". {{\n forward . {to.replace('PORT', str(up.tls_port))} {{\n "
            f"{options.replace('CA', str(cert[0]))}\n }}\n}}"
        )
        async with serve(text) as s:
            for proto in ("udp", "tcp"):
                r = await s.query(Case("ok.example.", proto=proto))
                assert r.header.rcode == {"NOERROR": 0, "SERVFAIL": 2}[rcode]
            if rcode == "NOERROR":
                assert [x.proto for x in up.seen] == ["tls", "tls"]
                assert up.tcp_connections == 1  # the TLS connection was reused
                labels = {"proxy_name": "forward", "to": f"127.0.0.1:{up.tls_port}", "proto": "tcp-tls"}
                assert REGISTRY.get_sample_value("coredns_proxy_conn_cache_hits_total", labels) >= 1


async def test_dns_over_tls_with_a_client_certificate(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    import ssl

    from tests.upstreams import server_tls_context
    client_cert, client_key = make_cert(tmp_path, "client.test")
    ctx = server_tls_context(*cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(str(client_cert))
    async with FakeUpstream(tls=ctx) as up:
        for tls, rcode in ((f"{client_cert} {client_key} {cert[0]}", 0), (f"{cert[0]}", 2)):
            text = f". {{\n forward . tls://127.0.0.1:{up.tls_port} {{\n tls {tls}\n tls_servername dns.test\n }}\n}}"
            async with serve(text) as s:
                assert (await s.query(Case("ok.example."))).header.rcode == rcode


# -- metrics and shutdown ----------------------------------------------------------------------------------


async def test_request_duration_metric(dnsmasq: Dnsmasq) -> None:
    async with serve(f". {{\n forward . {dnsmasq.addr}\n}}") as s:
        labels = {"proxy_name": "forward", "to": dnsmasq.addr, "rcode": "NXDOMAIN"}
        before = REGISTRY.get_sample_value("coredns_proxy_request_duration_seconds_count", labels) or 0
        await s.run([Case("nope.example.test.", rcode="NXDOMAIN")] * 2)
        assert REGISTRY.get_sample_value("coredns_proxy_request_duration_seconds_count", labels) - before == 2
        assert (
            REGISTRY.get_sample_value(
                "coredns_proxy_conn_cache_hits_total", {"proxy_name": "forward", "to": dnsmasq.addr, "proto": "udp"}
            )
            >= 1
        )


async def test_stop_closes_sockets_and_probes() -> None:
    async with FakeUpstream() as up:
        # The dead upstream first: its failure starts a probe loop, the live one leaves a pooled connection.
        async with serve(
            f". {{\n forward . {dead_address()} {up.addr} {{\n force_tcp\n health_check 10ms\n"
            f" policy sequential\n }}\n}}"
        ) as s:
            await s.run([Case("ok.example.", answer=["ok.example. 60 IN A 192.0.2.1"])])
            ups = forward_in(s).stanzas[0].upstreams
            assert ups[0].health is not None
            assert ups[0].health.running
            assert ups[1].idle_connections == 1
        assert all(u.closed and u.idle_connections == 0 for u in ups)
        assert all(u.health is not None and not u.health.running for u in ups)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
async def test_queries_in_flight_survive_a_reload(proto: str) -> None:
    """A reload stops the old configuration's forward while its queries may still wait on upstreams."""
    async with FakeUpstream(mode="slow", delay=0.3) as up, serve(f". {{\n forward . {up.addr}\n}}") as s:
        pending = asyncio.ensure_future(s.query(Case("ok.example.", proto=proto)))
        await until(lambda: up.asked() == 1)
        await forward_in(s).stop()
        r = await pending
        assert r.header.rcode == 0
        assert len(r.rr) == 1


async def test_upstream_exchange_directly() -> None:
    """The Upstream API on its own: our ID goes out, the reply comes back with it."""
    async with FakeUpstream() as up:
        u = Upstream(UpstreamSpec("127.0.0.1", up.port))
        try:
            for tcp in (False, True):
                data = await u.exchange(query_bytes("ok.example", qid=7), tcp, 1.0)
                reply = DNSRecord.parse(data)
                assert reply.header.id == up.seen[-1].qid
                assert len(reply.rr) == 1
            data = await u.exchange(probe_query(".", True), False, 1.0)
            assert DNSRecord.parse(data).q.qtype == 2
        finally:
            await u.close()


# -- the bytes-only path (Forward.relay) ------------------------------------------------------------

def _q(name: str, qtype: str = "A", bufsize: int | None = None, do: bool = False, extra: int = 0) -> bytes:
    msg = Case(name, qtype, bufsize=bufsize, do=do).message()
    data = bytearray(msg.pack())
    data[11] += extra  # claim more additional records than there are
    return bytes(data)


RELAYABLE_CASES = [
    (_q("www.Example.TEST"), ("www.example.test.", False)),
    (_q("."), (".", False)),
    (_q("www.example.test", bufsize=1232, do=True), ("www.example.test.", True)),
    (_q("www.example.test", bufsize=512), ("www.example.test.", True)),
    (_q("a_b-c!.example"), ("a_b-c!.example.", False)),
    # Left to the parsed path: EDNS size below 512, more records, odd names, responses, compression.
    (_q("www.example.test", bufsize=100), None),
    (_q("www.example.test", bufsize=1232, extra=1), None),
    (_q("a b.example"), None),
    (bytes([0, 1, 0x81, 0]) + _q("x.example")[4:], None),
    (_q("x.example")[:12] + b"\xc0\x0c\x00\x01\x00\x01", None),
    (b"\x00\x01", None),
    (_q("x.example")[:-2], None),
]


@pytest.mark.parametrize(("query", "want"), RELAYABLE_CASES)
def test_relayable(query: bytes, want: tuple[str, bool] | None) -> None:
    from dnsserver.wire.reply import relayable
    assert relayable(query) == want


def test_error_reply() -> None:
    from dnsserver.wire.reply import error_reply
    q = _q("www.example.test", bufsize=1232)
    r = DNSRecord.parse(error_reply(q, 5))
    assert (r.header.id, r.header.qr, r.header.rd, r.header.rcode, str(r.q.qname), len(r.ar)) == \
        (4321, 1, 1, 5, "www.example.test.", 0)


RELAY_CASES = [
    # (query name, rcode, answer rdata)
    ("www.example.test", 0, ["192.0.2.10"]),
    ("nope.example.test", 3, []),
    ("x.wild.example.test", 0, ["192.0.2.20"]),
    ("mismatch.fake.example", 1, []),  # FORMERR made from the query's bytes
    ("ok.fake.example", 0, ["192.0.2.1"]),
]


async def test_relay_gives_what_serve_gives(dnsmasq: Dnsmasq) -> None:
    async with FakeUpstream() as fake:
        text = f". {{\n forward fake.example {fake.addr}\n forward . {dnsmasq.addr}\n}}"
        async with serve(text) as s:
            fwd = forward_in(s)
            for name, rcode, rdata in RELAY_CASES:
                for proto in ("udp", "tcp"):
                    query = _q(name, bufsize=1232)
                    data = await fwd.relay(query, proto)
                    assert data is not None
                    r = DNSRecord.parse(data)
                    assert (r.header.id, r.header.rcode, [str(x.rdata) for x in r.rr]) == (4321, rcode, rdata)
                    # Through the chain itself (Forward.serve), not the harness, which would relay again.
                    chained = await via_chain(s, Case(name, proto=proto, bufsize=1232))
                    assert (chained.header.rcode, [str(x.rdata) for x in chained.rr]) == (rcode, rdata)


async def test_relay_next_refused_and_fallbacks(dnsmasq: Dnsmasq) -> None:
    async with FakeUpstream(mode="nxdomain") as first, FakeUpstream(mode="slow", delay=0.2) as slow:
        text = (f". {{\n forward . {first.addr} {{\n  next NXDOMAIN\n }}\n forward example.test {dnsmasq.addr}\n}}\n"
                f"slow.:53 {{\n forward . {slow.addr} {{\n  max_concurrent 1\n }}\n}}")
        async with serve(text) as s:
            fwd = forward_in(s)
            data = await fwd.relay(_q("www.example.test"), "udp")  # NXDOMAIN first, `next`: the second answers
            assert data is not None
            assert [str(x.rdata) for x in DNSRecord.parse(data).rr] == ["192.0.2.10"]
            # `next` past the last stanza that takes the name, odd queries: not for this path.
            assert await fwd.relay(_q("www.elsewhere.example"), "udp") is None
            assert await fwd.relay(_q("www.example.test", bufsize=100), "udp") is None
            slow_fwd = next(p for p in s.config.blocks[1].plugins if isinstance(p, Forward))
            replies = await asyncio.gather(*(slow_fwd.relay(_q(f"q{i}.slow"), "udp") for i in range(3)))
            assert sorted(DNSRecord.parse(r).header.rcode for r in replies if r is not None) == [0, 5, 5]


async def test_relay_raises_when_no_upstream_answers() -> None:
    from dnsplugins.forward.upstream import UpstreamError
    async with serve(f". {{\n forward . {dead_address()}\n}}") as s:
        with pytest.raises(UpstreamError):
            await forward_in(s).relay(_q("a.example"), "udp")


def test_stanza_matching() -> None:
    st = Stanza(ForwardConfig(from_zone="example.org.", upstreams=[U("10.0.0.1")], ignored=["a.example.org."]))
    table = {
        "example.org.": True,
        "b.example.org.": True,
        "a.example.org.": False,
        "x.a.example.org.": False,
        "badexample.org.": False,
        "org.": False,
    }
    assert {n: st.matches(n) for n in table} == table
