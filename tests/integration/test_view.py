"""view as a user sees it: split DNS by the client's loopback source address, real `dig`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import DnsServer, load_error

COREFILE = """
.:{port} {
    bind 127.0.0.1
    view inside {
        expr incidr(client_ip(), '127.0.0.2/32') || (type() == 'TXT' && name() == 'test.')
    }
    hosts {
        10.0.0.2 test
    }
}
.:{port} {
    bind 127.0.0.1
    cache
    hosts {
        10.0.0.9 test
        fallthrough
    }
    whoami
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    srv = DnsServer(COREFILE, tmp_path_factory.mktemp("view"))
    yield srv
    assert srv.stop() == 0


@pytest.mark.parametrize("proto", ["+notcp", "+tcp"])
def test_split_by_source_address(server: DnsServer, proto: str) -> None:
    # Alternating clients, each asking several times: a stored answer of one must never reach the other.
    for _ in range(3):
        for source, want in (("127.0.0.2", "10.0.0.2"), ("127.0.0.1", "10.0.0.9"), ("127.0.0.3", "10.0.0.9")):
            d = server.dig("-b", source, "test", "A", proto)
            assert (d.status, d.rdata()) == ("NOERROR", [want]), source


def test_view_on_type_and_name(server: DnsServer) -> None:
    # TXT test. goes to the first block from any client: hosts has no TXT, a NODATA; the catch-all's
    # whoami would have added the client's address.
    d = server.dig("-b", "127.0.0.1", "test", "TXT")
    assert (d.status, d.answer, d.additional) == ("NOERROR", [], [])
    d = server.dig("-b", "127.0.0.1", "other.test", "TXT")
    assert d.additional  # whoami's records: the catch-all served it


def test_bad_expression_fails_before_any_socket(tmp_path: Path) -> None:
    out = load_error(". {\n    view v {\n        expr client_ip() = '127.0.0.1'\n    }\n    whoami\n}\n", tmp_path)
    assert f"{tmp_path / 'Corefile'}:3 - plugin/view: unexpected character '='" in out
