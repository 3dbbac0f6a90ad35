"""secondary end to end, with real `dig` and two real servers on loopback: a primary (`file` and
`transfer to`) and a secondary that transfers its zone, follows a new serial, and keeps serving
while the primary is down until the SOA's EXPIRE, then answers SERVFAIL."""

from __future__ import annotations

import time
from pathlib import Path

from tests.server import DnsServer, free_port

ZONE = """$ORIGIN example.org.
$TTL 60
@ IN SOA ns1 hostmaster ( {serial} 1 1 3 30 )
  IN NS ns1
ns1 IN A 192.0.2.1
www IN A {www}
"""


def until_dig(srv: DnsServer, want: object, *args: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    got: object = None
    while time.monotonic() < deadline:
        d = srv.dig(*args)
        got = d.rdata() if isinstance(want, list) else d.status
        if got == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"dig {' '.join(args)}: still {got!r}, want {want!r}")


def test_secondary_follows_the_primary(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "s").mkdir()
    db = tmp_path / "p" / "db.example.org"
    db.write_text(ZONE.format(serial=1, www="192.0.2.80"))
    primary_port = free_port()
    primary = DnsServer(f"""example.org:{{port}} {{
    bind 127.0.0.1
    file {db} {{
        reload 100ms
    }}
    transfer {{
        to 127.0.0.0/8
    }}
}}
""", tmp_path / "p", port=primary_port)
    secondary = DnsServer(f"""example.org:{{port}} {{
    bind 127.0.0.1
    secondary {{
        transfer from 127.0.0.1:{primary_port}
    }}
    transfer {{
        to *
    }}
}}
""", tmp_path / "s")
    try:
        until_dig(secondary, ["192.0.2.80"], "www.example.org", "A")
        for proto in ("+notcp", "+tcp"):
            d = secondary.dig("www.example.org", "A", proto)
            assert "aa" in d.flags
            assert d.authority == ["example.org. 60 IN NS ns1.example.org."]
            assert secondary.dig("nope.example.org", "A", proto).status == "NXDOMAIN"
        # Re-exported: dig's own AXFR from the secondary.
        axfr = secondary.dig("example.org", "AXFR")
        assert [line.split()[3] for line in axfr.raw.splitlines() if line.startswith("example.org.")][:1] == ["SOA"]
        assert "www.example.org. 60 IN A 192.0.2.80" in " ".join(axfr.raw.split())
        # A new serial reaches the secondary at its next refresh.
        db.write_text(ZONE.format(serial=2, www="192.0.2.81"))
        until_dig(secondary, ["192.0.2.81"], "www.example.org", "A")
        # The primary stops: served until EXPIRE (3s), then SERVFAIL.
        primary.stop()
        assert secondary.dig("www.example.org", "A").rdata() == ["192.0.2.81"]
        until_dig(secondary, "SERVFAIL", "www.example.org", "A")
        out = "\n".join(secondary.drain())
        assert "Zone example.org. is expired" in out
    finally:
        secondary.stop()
        primary.stop()
