"""DNS over TLS (RFC 7858): a tls:// server block answered through real `dig +tls`."""

from __future__ import annotations

import socket
import ssl
import struct
from pathlib import Path

from dnslib import DNSRecord

from tests.certs import make_cert
from tests.server import DnsServer, dig


def test_dig_over_tls(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    srv = DnsServer(f"tls://.:{{port}} {{\n bind 127.0.0.1\n tls {cert} {key}\n whoami\n}}\n", tmp_path)
    try:
        d = dig("127.0.0.1", srv.port, "+tls", "www.example.org", "A")
        assert d.status == "NOERROR"
        assert "aa" in d.flags
        assert any(x.startswith("_tcp.www.example.org. 0 IN SRV") for x in d.additional), d.raw
        # Verified like a stub resolver would: the server name checked against our CA.
        ctx = ssl.create_default_context(cafile=str(cert))
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="dns.test") as s:
            q = DNSRecord.question("tls.example.org", "A").pack()
            s.sendall(struct.pack("!H", len(q)) + q)
            (n,) = struct.unpack("!H", s.recv(2))
            data = b""
            while len(data) < n:
                data += s.recv(n - len(data))
            assert str(DNSRecord.parse(data).ar[0].rdata) == "127.0.0.1"
        # No plain UDP listener on a tls:// block.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(0.5)
            u.sendto(DNSRecord.question("x.org", "A").pack(), ("127.0.0.1", srv.port))
            try:
                u.recv(512)
                raise AssertionError("a tls:// block answered plain UDP")
            except (TimeoutError, ConnectionRefusedError):
                pass
    finally:
        assert srv.stop() == 0
