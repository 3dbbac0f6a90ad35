"""Small plugins as a user sees them: a real `portolan dns`, real `dig`, dnsmasq as the upstream."""

from __future__ import annotations

import shutil
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import DNSRecord

from tests.server import DnsServer
from tests.upstreams import READY_NAME, Dnsmasq, dead_address

ZONES = Path(__file__).resolve().parent.parent / "data" / "zones"

COREFILE = """
.:{port} {
    bind 127.0.0.1
    timeouts {
        read 1s
        idle 2s
        maxtcpqueries 2
    }
    local
    nsid Use The Force
    forward . 127.0.0.1:{upstream}
}
example.org:{port} {
    bind 127.0.0.1
    cache
    minimal
    header {
        response set ra
    }
    file db.example.org
}
cluster.local:{port} {
    bind 127.0.0.1
    metadata
    log . "META {name} {/kubernetes/kind} {/kubernetes/namespace} {/kubernetes/service}"
    kubernetes {
        manifests cluster.yaml
    }
}
broken.test:{port} {
    bind 127.0.0.1
    debug
    forward . {dead}
}
slow.test:{port} {
    bind 127.0.0.1
    cancel 300ms
    forward . 127.0.0.1:{blackhole}
}
example.test:{port} {
    bind 127.0.0.1
    dns64 {
        allow_ipv4
    }
    forward . 127.0.0.1:{upstream}
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    workdir = tmp_path_factory.mktemp("small")
    shutil.copy(ZONES / "db.example.org", workdir / "db.example.org")
    shutil.copy(ZONES.parent / "k8s" / "cluster.yaml", workdir / "cluster.yaml")
    # An upstream that never answers: a UDP socket nobody reads.
    with Dnsmasq() as upstream, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        text = COREFILE.replace("{upstream}", str(upstream.port))
        text = text.replace("{blackhole}", str(blackhole.getsockname()[1])).replace("{dead}", dead_address())
        srv = DnsServer(text, workdir)
        yield srv
        assert srv.stop() == 0


def test_local_answers_localhost(server: DnsServer) -> None:
    d = server.dig("localhost.", "A")
    assert (d.status, d.answer) == ("NOERROR", ["localhost. 604800 IN A 127.0.0.1"])
    d = server.dig("-x", "127.0.0.1")
    assert d.answer == ["1.0.0.127.in-addr.arpa. 604800 IN PTR localhost."]
    d = server.dig("2.0.0.127.in-addr.arpa.", "PTR")
    assert d.status == "NXDOMAIN"
    assert d.authority == ["127.in-addr.arpa. 604800 IN SOA localhost. root.localhost. 1 0 0 0 604800"]


@pytest.mark.parametrize("proto", ["+notcp", "+tcp"])
def test_nsid_only_when_asked(server: DnsServer, proto: str) -> None:
    # The root block forwards to dnsmasq, which answers its readiness name itself.
    d = server.dig("+nsid", proto, f"{READY_NAME}.", "A")
    assert d.answer == [f"{READY_NAME}. 0 IN A 192.0.2.254"]
    assert '("Use The Force")' in d.raw
    assert "NSID" not in server.dig(proto, f"{READY_NAME}.", "A").raw


def test_minimal_and_header_survive_the_cache(server: DnsServer) -> None:
    for _ in range(3):  # the first fills the cache; the others come from its stored answer
        d = server.dig("www.example.org.", "A")
        assert d.rdata() == ["192.0.2.80"]  # (the cache counts the TTL down)
        assert (d.authority, d.additional) == ([], [])
        assert {"ra", "aa"} <= d.flags
    d = server.dig("nope.example.org.", "A")  # a denial keeps its SOA
    assert d.status == "NXDOMAIN"
    assert len(d.authority) == 1


def test_dns64_synthesises_from_the_upstream_a_record(server: DnsServer) -> None:
    d = server.dig("other.example.test.", "AAAA")
    assert d.rdata() == ["64:ff9b::c000:20b"]
    d = server.dig("www.example.test.", "AAAA")  # it has an AAAA record: left alone
    assert d.rdata() == ["2001:db8::10"]


def test_timeouts_close_silent_and_spent_connections(server: DnsServer) -> None:
    query = DNSRecord.question("localhost.", "A").pack()
    frame = struct.pack("!H", len(query)) + query
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
        start = time.monotonic()
        assert silent.recv(1) == b""  # read 1s: a connection that asks nothing is closed
        assert 0.8 < time.monotonic() - start < 4
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as spent:
        spent.sendall(frame * 3)  # maxtcpqueries 2: two answers, then the server closes
        got = b""
        while chunk := spent.recv(4096):
            got += chunk
        answers = 0
        while got:
            (n,) = struct.unpack("!H", got[:2])
            assert DNSRecord.parse(got[2 : 2 + n]).rr
            got, answers = got[2 + n :], answers + 1
        assert answers == 2
    assert server.dig("+tcp", "localhost.", "A").answer == ["localhost. 604800 IN A 127.0.0.1"]


def test_cancel_answers_servfail_at_the_deadline(server: DnsServer) -> None:
    start = time.monotonic()
    d = server.dig("www.slow.test.", "A")
    assert d.status == "SERVFAIL"
    assert time.monotonic() - start < 2.0  # the upstream never answers; forward alone would wait 5s


def test_metadata_from_kubernetes_in_the_query_log(server: DnsServer) -> None:
    d = server.dig("my-svc.testns.svc.cluster.local.", "A")
    assert d.rdata() == ["10.96.0.11"]
    server.wait_for(r"META my-svc\.testns\.svc\.cluster\.local\. svc testns my-svc$", timeout=5)


def test_debug_logs_the_traceback_of_a_chain_error(server: DnsServer) -> None:
    d = server.dig("www.broken.test.", "A")  # forward to a closed port: its error is raised in the chain
    assert d.status == "SERVFAIL"
    server.wait_for(r"^\[ERROR\] SERVFAIL www\.broken\.test\. A: plugin/forward: ", timeout=5)
    server.wait_for(r"^Traceback \(most recent call last\):", timeout=5)
