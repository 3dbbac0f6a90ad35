"""template as a user sees it: a real `portolan dns`, real `dig`: regex groups, the client's address,
a CNAME followed through the server itself, NXDOMAIN with an extended error, and a load-time error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import DnsServer, load_error

COREFILE = """
.:{port} {
    bind 127.0.0.1
    template IN A example {
        match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
    template IN A example {
        match ^me[.]example[.]$
        answer "{{ .Name }} 0 IN A {{ .Remote }}"
    }
    template IN ANY foogle.test {
        match "^foogle[.]test[.]$"
        answer "foogle.test 60 IN CNAME target.test"
    }
    template ANY ANY invalid {
        rcode NXDOMAIN
        authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
        ederror 21 "Blocked according to RFC2606"
    }
    hosts {
        10.0.0.7 target.test
    }
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    srv = DnsServer(COREFILE, tmp_path_factory.mktemp("template"))
    yield srv
    assert srv.stop() == 0


@pytest.mark.parametrize("proto", ["+notcp", "+tcp"])
def test_groups_and_remote(server: DnsServer, proto: str) -> None:
    d = server.dig("ip-10-1-2-3.example", "A", proto)
    assert (d.status, d.answer) == ("NOERROR", ["ip-10-1-2-3.example. 60 IN A 10.1.2.3"])
    assert "aa" in d.flags
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.2"):
        d = server.dig("-b", source, "me.example", "A", proto)
        assert d.answer == [f"me.example. 0 IN A {source}"]


def test_cname_is_followed_through_the_server(server: DnsServer) -> None:
    d = server.dig("foogle.test", "A")
    assert d.answer == ["foogle.test. 60 IN CNAME target.test.", "target.test. 3600 IN A 10.0.0.7"]


def test_nxdomain_with_extended_error(server: DnsServer) -> None:
    d = server.dig("anything.invalid", "TXT")
    assert (d.status, d.authority) == ("NXDOMAIN", ["invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"])
    assert "; EDE: 21 (Not Supported): (Blocked according to RFC2606)" in d.raw


def test_bad_template_fails_before_any_socket(tmp_path: Path) -> None:
    out = load_error('. {\n    template IN A {\n        answer "{{ if .Name }}x{{ end }}"\n    }\n}\n', tmp_path)
    assert f"{tmp_path / 'Corefile'}:3 - plugin/template: could not compile template" in out
