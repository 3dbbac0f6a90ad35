"""forward and loop as a user sees them: real `portolan dns` processes, real dnsmasq upstreams, real dig."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import make_cert
from tests.server import DnsServer, free_port
from tests.upstreams import Dnsmasq, ThreadedUpstream, dead_address

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def dnsmasq() -> Iterator[Dnsmasq]:
    d = Dnsmasq()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def fake() -> Iterator[ThreadedUpstream]:
    t = ThreadedUpstream(answer="192.0.2.77")
    yield t
    t.stop()


SHARED = """
example.test:{port} {
    bind 127.0.0.1
    prometheus 127.0.0.1:METRICS
    forward . DNSMASQ
}
prefer.example.test:{port} {
    bind 127.0.0.1
    forward . DNSMASQ {
        prefer_udp
    }
}
seq.example.test:{port} {
    bind 127.0.0.1
    forward . DEAD DNSMASQ {
        policy sequential
    }
}
dead.test:{port} {
    bind 127.0.0.1
    forward . DEAD
}
fallback.example.test:{port} {
    bind 127.0.0.1
    forward . DNSMASQ {
        next NXDOMAIN
    }
    forward . FAKE
}
fake.test:{port} {
    bind 127.0.0.1
    forward . FAKE
}
"""


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    dnsmasq: Dnsmasq,
    fake: ThreadedUpstream,
) -> Iterator[DnsServer]:
    metrics = free_port()
    text = (
        SHARED.replace("DNSMASQ", dnsmasq.addr)
        .replace("DEAD", dead_address())
        .replace("FAKE", fake.addr)
        .replace("METRICS", str(metrics))
    )
    srv = DnsServer(text, tmp_path_factory.mktemp("forward"))
    srv.metrics_port = metrics  # type: ignore[attr-defined]
    yield srv
    assert srv.stop() == 0


@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_answers_through_dnsmasq(server: DnsServer, transport: str) -> None:
    d = server.dig("www.example.test", "A", transport)
    assert d.status == "NOERROR", d.raw
    assert d.rdata() == ["192.0.2.10"], d.raw
    d = server.dig("alias.example.test", "A", transport)
    assert d.rdata() == ["www.example.test.", "192.0.2.10"], d.raw
    d = server.dig("WWW.Example.Test", "AAAA", transport)
    assert d.rdata() == ["2001:db8::10"], d.raw
    assert d.question == ["WWW.Example.Test. IN AAAA"], d.raw
    assert server.dig("nope.example.test", "A", transport).status == "NXDOMAIN"


def test_truncated_reply_passed_on_or_retried_over_tcp(server: DnsServer) -> None:
    # No EDNS, over UDP: dnsmasq's reply does not fit, its TC reaches the client.
    d = server.dig("big.example.test", "TXT", "+notcp", "+noedns", "+ignore")
    assert "tc" in d.flags, d.raw
    # A TCP client: forward asks over TCP too, the whole answer arrives.
    d = server.dig("big.example.test", "TXT", "+tcp", "+noedns")
    assert "tc" not in d.flags, d.raw
    assert len(d.answer) == 1, d.raw
    # prefer_udp: the TCP client's query goes out over UDP, is truncated, and is asked again over TCP.
    d = server.dig("big.prefer.example.test", "TXT", "+tcp", "+noedns")
    assert "tc" not in d.flags, d.raw
    assert len(d.answer) == 1, d.raw


def test_dead_upstream_servfail_fast_never_nxdomain(server: DnsServer) -> None:
    for transport in ("+notcp", "+tcp"):
        start = time.monotonic()
        d = server.dig("www.dead.test", "A", transport)
        assert d.status == "SERVFAIL", d.raw
        assert time.monotonic() - start < 2.0


def test_dead_upstream_skipped(server: DnsServer) -> None:
    for _ in range(3):
        d = server.dig("www.seq.example.test", "A")
        assert d.status == "NOERROR", d.raw
        assert d.rdata() == ["192.0.2.30"], d.raw


def test_next_goes_to_the_second_forward(server: DnsServer) -> None:
    # dnsmasq says NXDOMAIN for names it does not know under example.test: `next` asks the fake upstream.
    d = server.dig("x.fallback.example.test", "A")
    assert d.status == "NOERROR", d.raw
    assert d.rdata() == ["192.0.2.77"], d.raw


@pytest.mark.parametrize(
    ("name", "status"),
    [("mismatch.fake.test", "FORMERR"), ("servfail.fake.test", "SERVFAIL"), ("tc.fake.test", "NOERROR")],
)
def test_misbehaving_upstream(server: DnsServer, name: str, status: str) -> None:
    d = server.dig(name, "A", "+ignore")
    assert d.status == status, d.raw
    assert d.question == [f"{name}. IN A"], d.raw


def test_metrics(server: DnsServer, dnsmasq: Dnsmasq) -> None:
    server.dig("www.example.test", "A")
    port = server.metrics_port  # type: ignore[attr-defined]
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert re.search(
        rf'coredns_proxy_request_duration_seconds_count{{proxy_name="forward",'
        rf'rcode="NOERROR",to="{re.escape(dnsmasq.addr)}"}} [1-9]',
        body,
    ), body[:2000]
    for name in (
        "coredns_proxy_conn_cache_hits_total",
        "coredns_proxy_conn_cache_misses_total",
        "coredns_proxy_healthcheck_failures_total",
        "coredns_forward_healthcheck_broken_total",
        "coredns_forward_max_concurrent_rejects_total",
    ):
        assert name in body


def test_dns_over_tls_between_two_servers(tmp_path: Path, dnsmasq: Dnsmasq) -> None:
    cert, key = make_cert(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = DnsServer(
        f"tls://.:{{port}} {{\n    bind 127.0.0.1\n    tls {cert} {key}\n    forward . {dnsmasq.addr}\n}}\n",
        tmp_path / "a",
    )
    try:
        b = DnsServer(
            f".:{{port}} {{\n    bind 127.0.0.1\n    forward . tls://127.0.0.1:{a.port} {{\n"
            f"        tls_servername dns.test\n        tls {cert}\n    }}\n}}\n",
            tmp_path / "b",
        )
        try:
            for transport in ("+notcp", "+tcp"):
                d = b.dig("www.example.test", "A", transport)
                assert d.status == "NOERROR", d.raw
                assert d.rdata() == ["192.0.2.10"], d.raw
            assert b.dig("nope.example.test", "A").status == "NXDOMAIN"
        finally:
            assert b.stop() == 0
    finally:
        assert a.stop() == 0


def test_loop_is_fatal(tmp_path: Path) -> None:
    port = free_port()
    with Dnsmasq(f"--server=127.0.0.1#{port}", zone=False) as back:
        srv = DnsServer(f".:{{port}} {{\n    loop\n    forward . {back.addr}\n}}\n", tmp_path, port=port)
        try:
            m = srv.wait_for(r"\[FATAL\] plugin/loop: .*", timeout=20)
            assert srv.proc.wait(10) == 1
        finally:
            srv.stop()
    assert re.fullmatch(
        rf'\[FATAL\] plugin/loop: Loop \(127\.0\.0\.1:\d+ -> :{port}\) detected for zone "\.", '
        r'see https://coredns\.io/plugins/loop#troubleshooting\. Query: "HINFO \d+\.\d+\."',
        m.group(0),
    ), m.group(0)


def test_no_loop_keeps_running(tmp_path: Path, dnsmasq: Dnsmasq) -> None:
    srv = DnsServer(
        f".:{{port}} {{\n    bind 127.0.0.1\n    log\n    loop\n    forward . {dnsmasq.addr}\n}}\n", tmp_path
    )
    try:
        # The probe went out, through forward, and dnsmasq answered it (REFUSED: not its zone).
        srv.wait_for(r'"HINFO IN \d+\.\d+\. udp .*" REFUSED', timeout=20)
        assert srv.dig("www.example.test", "A").rdata() == ["192.0.2.10"]
        assert srv.proc.poll() is None
    finally:
        assert srv.stop() == 0
    assert not any("FATAL" in line for line in srv.lines)
