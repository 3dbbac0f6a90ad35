"""acl as a user sees it: a real `portolan dns`, real `dig` from several loopback source addresses."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import DnsServer, dig, load_error

COREFILE = """
example.org:{port} {
    bind 127.0.0.1
    acl {
        allow net 127.0.0.1
        block net 127.0.0.2
        filter net 127.0.0.3
        drop net 127.0.0.4
    }
    cache
    hosts {
        10.0.0.1 www.example.org
    }
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    srv = DnsServer(COREFILE, tmp_path_factory.mktemp("acl"))
    yield srv
    assert srv.stop() == 0


@pytest.mark.parametrize("proto", ["+notcp", "+tcp"])
def test_allowed_blocked_filtered(server: DnsServer, proto: str) -> None:
    # The allowed client first, twice: its answer is then stored (cache, hosts), and must not reach others.
    for _ in range(2):
        ok = server.dig("-b", "127.0.0.1", "www.example.org", "A", proto)
        assert (ok.status, ok.rdata()) == ("NOERROR", ["10.0.0.1"])
    blocked = server.dig("-b", "127.0.0.2", "www.example.org", "A", proto)
    assert (blocked.status, blocked.answer) == ("REFUSED", [])
    assert "; EDE: 15 (Blocked)" in blocked.raw
    filtered = server.dig("-b", "127.0.0.3", "www.example.org", "A", proto)
    assert (filtered.status, filtered.answer) == ("NOERROR", [])
    assert "; EDE: 17 (Filtered)" in filtered.raw


def test_dropped_client_gets_no_reply(server: DnsServer) -> None:
    cmd = [
        "dig",
        "@127.0.0.1",
        "-p",
        str(server.port),
        "-b",
        "127.0.0.4",
        "+tries=1",
        "+time=1",
        "www.example.org",
        "A",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    assert "timed out" in res.stdout
    assert "status:" not in res.stdout
    # ... while the server still answers others.
    assert dig("127.0.0.1", server.port, "-b", "127.0.0.1", "www.example.org").status == "NOERROR"


def test_bad_policy_fails_before_any_socket(tmp_path: Path) -> None:
    out = load_error(". {\n    acl {\n        deny net 10.0.0.0/8\n    }\n}\n", tmp_path)
    assert f'{tmp_path / "Corefile"}:3 - plugin/acl: unexpected token "deny"' in out
