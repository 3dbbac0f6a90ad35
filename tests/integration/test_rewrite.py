"""rewrite as a user sees it: a real `portolan dns` process, real `dig` (whose parser checks every reply)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import DnsServer

# Rules are tried in this order; each stops at its first match unless marked continue.
COREFILE = r"""
.:{port} {
    bind 127.0.0.1
    rewrite name exact foo.example.com svc.default.svc.cluster.local
    rewrite name regex (.*)\.my\.domain {1}.default.svc.cluster.local answer auto
    rewrite continue name exact short.example.com svc.default.svc.cluster.local
    rewrite continue ttl exact svc.default.svc.cluster.local 42
    rewrite name suffix .bad.test ..bad.test
    rewrite type TXT A
    hosts {
        10.96.0.10 svc.default.svc.cluster.local
        fallthrough
    }
    whoami
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    srv = DnsServer(COREFILE, Path(tmp_path_factory.mktemp("rewrite")))
    yield srv
    assert srv.stop() == 0


@pytest.mark.parametrize("proto", ["+notcp", "+tcp"])
def test_exact_rewrite_is_invisible(server: DnsServer, proto: str) -> None:
    d = server.dig("foo.example.com", "A", proto)
    assert d.status == "NOERROR", d.raw
    assert "aa" in d.flags, d.raw
    assert d.question == ["foo.example.com. IN A"]
    assert d.answer == ["foo.example.com. 3600 IN A 10.96.0.10"], d.raw


def test_regex_rewrite_maps_back_to_the_name_as_spelled(server: DnsServer) -> None:
    d = server.dig("SvC.My.DoMaIn", "A")
    assert d.status == "NOERROR", d.raw
    assert d.question == ["SvC.My.DoMaIn. IN A"]
    assert d.answer == ["SvC.My.DoMaIn. 3600 IN A 10.96.0.10"], d.raw


def test_continue_into_a_ttl_rule(server: DnsServer) -> None:
    d = server.dig("short.example.com", "A")
    assert d.answer == ["short.example.com. 42 IN A 10.96.0.10"], d.raw
    # The name the chain sees directly gets the TTL too; an unrelated one does not.
    assert server.dig("svc.default.svc.cluster.local", "A").answer == \
        ["svc.default.svc.cluster.local. 42 IN A 10.96.0.10"]
    assert server.dig("foo.example.com", "A").answer[0].split()[1] == "3600"


def test_type_rewrite_keeps_the_question(server: DnsServer) -> None:
    # The ttl rule matches first and goes on (continue) to the type rule.
    d = server.dig("svc.default.svc.cluster.local", "TXT")
    assert d.question == ["svc.default.svc.cluster.local. IN TXT"]
    assert d.answer == ["svc.default.svc.cluster.local. 42 IN A 10.96.0.10"], d.raw


def test_invalid_result_is_servfail_and_logged(server: DnsServer) -> None:
    d = server.dig("x.bad.test", "A")
    assert d.status == "SERVFAIL", d.raw
    assert d.question == ["x.bad.test. IN A"], d.raw
    server.wait_for(r"\[ERROR\] plugin/rewrite: invalid name after rewrite: x\.\.bad\.test\.", timeout=5)
    # The server is still fine afterwards.
    assert server.dig("foo.example.com", "A", "+tcp").status == "NOERROR"
