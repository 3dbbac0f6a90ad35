"""file and transfer as a user sees them: a real `portolan dns` serving a zone file, real `dig`."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, DNSQuestion, DNSRecord

from tests.server import PORTOLAN, DnsServer, dig, free_port

ZONES = Path(__file__).resolve().parent.parent / "data" / "zones"
ORG = "example.org."

# 127.0.0.1 may transfer; the block on 127.0.0.2 serves the same zone but allows only 192.0.2.1.
COREFILE = """
example.org:{port} {
    bind 127.0.0.1
    file db.example.org
    transfer {
        to 127.0.0.1
    }
}
example.org:{port} {
    bind 127.0.0.2
    file db.example.org
    transfer {
        to 192.0.2.1
    }
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    workdir = tmp_path_factory.mktemp("file")
    shutil.copy(ZONES / "db.example.org", workdir / "db.example.org")
    srv = DnsServer(COREFILE, workdir)
    yield srv
    assert srv.stop() == 0


@pytest.mark.parametrize("proto", ["+notcp", "+tcp"])
def test_authoritative_answer(server: DnsServer, proto: str) -> None:
    d = server.dig(f"www.{ORG}", "A", proto)
    assert d.status == "NOERROR"
    assert "aa" in d.flags
    assert d.answer == [f"www.{ORG} 3600 IN A 192.0.2.80"]
    assert sorted(d.authority) == [f"{ORG} 3600 IN NS ns1.{ORG}", f"{ORG} 3600 IN NS ns2.other.net."]


def test_nxdomain_and_nodata_carry_the_soa(server: DnsServer) -> None:
    soa = f"{ORG} 300 IN SOA ns1.{ORG} hostmaster.{ORG} 2024010101 7200 3600 1209600 300"
    d = server.dig(f"nope.{ORG}", "A")
    assert (d.status, d.answer, d.authority) == ("NXDOMAIN", [], [soa])
    assert "aa" in d.flags
    d = server.dig(f"ent.{ORG}", "A")  # an empty non-terminal
    assert (d.status, d.answer, d.authority) == ("NOERROR", [], [soa])


def test_wildcard(server: DnsServer) -> None:
    d = server.dig(f"anything.wild.{ORG}", "A")
    assert d.status == "NOERROR"
    assert d.answer == [f"anything.wild.{ORG} 3600 IN A 192.0.2.99"]
    assert server.dig(f"exists.wild.{ORG}", "A").answer == [f"exists.wild.{ORG} 3600 IN A 192.0.2.100"]


def test_cname_chase(server: DnsServer) -> None:
    d = server.dig(f"chain.{ORG}", "A")
    assert d.answer == [
        f"chain.{ORG} 3600 IN CNAME alias.{ORG}",
        f"alias.{ORG} 3600 IN CNAME www.{ORG}",
        f"www.{ORG} 3600 IN A 192.0.2.80",
    ]


def test_referral(server: DnsServer) -> None:
    d = server.dig(f"host.sub.{ORG}", "A", "+norec")
    assert d.status == "NOERROR"
    assert "aa" not in d.flags
    assert d.answer == []
    assert d.authority == [f"sub.{ORG} 3600 IN NS ns.sub.{ORG}"]
    assert d.additional == [f"ns.sub.{ORG} 3600 IN A 192.0.2.53"]


def dig_axfr(server: str, port: int, *args: str) -> tuple[list[str], str]:
    """(records, raw output) of `dig AXFR`; dig speaks TCP for AXFR and prints only the records."""
    cmd = ["dig", f"@{server}", "-p", str(port), "+tries=1", "+time=5", *args, ORG, "AXFR"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    records = [" ".join(line.split()) for line in out.splitlines() if line.strip() and not line.startswith(";")]
    return records, out


def test_axfr_to_an_allowed_client(server: DnsServer) -> None:
    records, out = dig_axfr("127.0.0.1", server.port)
    soa = f"{ORG} 3600 IN SOA ns1.{ORG} hostmaster.{ORG} 2024010101 7200 3600 1209600 300"
    assert records[0] == records[-1] == soa, out
    assert len(records) == 29
    assert f"www.{ORG} 3600 IN A 192.0.2.80" in records
    assert "XFR size: 29 records (messages 1," in out
    server.wait_for(r'Outgoing transfer of 29 records of zone "example.org." to 127.0.0.1 for 2024010101')


def test_axfr_refused_to_anyone_else(server: DnsServer) -> None:
    # From another source address to the block that allows 127.0.0.1 ...
    records, out = dig_axfr("127.0.0.1", server.port, "-b", "127.0.0.2")
    assert records == []
    assert "Transfer failed" in out
    # ... and from 127.0.0.1 to the block on 127.0.0.2, which allows only 192.0.2.1.
    records, out = dig_axfr("127.0.0.2", server.port)
    assert records == []
    assert "Transfer failed" in out
    assert tcp_query("127.0.0.2", server.port, ORG, QTYPE.AXFR).header.rcode == 5  # REFUSED


def test_axfr_over_udp_is_refused(server: DnsServer) -> None:
    q = DNSRecord(q=DNSQuestion(ORG, QTYPE.AXFR))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(q.pack(), ("127.0.0.1", server.port))
        reply = DNSRecord.parse(s.recv(65535))
    assert reply.header.rcode == 5
    assert reply.rr == []


def tcp_query(host: str, port: int, name: str, qtype: int) -> DNSRecord:
    """One query over TCP, one message read back (what a refused transfer is)."""
    q = DNSRecord(q=DNSQuestion(name, qtype)).pack()
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(struct.pack("!H", len(q)) + q)
        head = _read(s, 2)
        return DNSRecord.parse(_read(s, struct.unpack("!H", head)[0]))


def _read(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def test_large_zone_transfer_spans_messages(tmp_path: Path) -> None:
    lines = ["@ 300 IN SOA ns hostmaster 99 7200 3600 1209600 60", "@ NS ns", "ns A 192.0.2.1"]
    lines += [f'host{i:05d} TXT "{"x" * 100}{i}"' for i in range(3000)]
    (tmp_path / "db.big").write_text("\n".join(lines) + "\n")
    srv = DnsServer("example.org:{port} {\n bind 127.0.0.1\n file db.big\n transfer {\n  to *\n }\n}\n", tmp_path)
    try:
        records, out = dig_axfr("127.0.0.1", srv.port)
        assert len(records) == 3000 + 2 + 2, out[-500:]
        assert records[0] == records[-1], out[-500:]
        assert records[0].split()[3] == "SOA"
        size = out[out.index("XFR size:") :].split("\n")[0]
        assert int(size.split("messages ")[1].split(",")[0]) > 3, size
    finally:
        srv.stop()


def test_reload_picks_up_a_new_serial(tmp_path: Path) -> None:
    zone = "@ 60 IN SOA ns hostmaster {serial} 1 1 1 60\n@ NS ns\nns A 192.0.2.1\nwww A {ip}\n"
    (tmp_path / "db.example.org").write_text(zone.format(serial=1, ip="192.0.2.10"))
    srv = DnsServer("example.org:{port} {\n bind 127.0.0.1\n file db.example.org {\n  reload 100ms\n }\n}\n", tmp_path)
    try:
        assert dig("127.0.0.1", srv.port, f"www.{ORG}").answer == [f"www.{ORG} 60 IN A 192.0.2.10"]
        (tmp_path / "db.example.org").write_text(zone.format(serial=2, ip="192.0.2.20"))
        srv.wait_for(r'Successfully reloaded zone "example.org." in "db.example.org" with serial 2', timeout=15)
        assert dig("127.0.0.1", srv.port, f"www.{ORG}").answer == [f"www.{ORG} 60 IN A 192.0.2.20"]
    finally:
        srv.stop()


def test_zone_file_error_stops_the_server_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "db.example.org").write_text("@ 60 IN SOA ns hostmaster 1 1 1 1 60\nwww A 192.0.2\n")
    (tmp_path / "Corefile").write_text(f"example.org:{free_port()} {{\n bind 127.0.0.1\n file db.example.org\n}}\n")
    res = subprocess.run(
        [PORTOLAN, "dns", "-conf", str(tmp_path / "Corefile")], capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert res.returncode != 0
    assert "db.example.org:2 - plugin/file: bad A record: bad IPv4 address '192.0.2'" in res.stdout + res.stderr
