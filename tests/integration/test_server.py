"""The server as a user sees it: a real `portolan dns` process on loopback, real `dig` against it."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from dnslib import EDNS0, DNSRecord

from tests.server import PORTOLAN, DnsServer, Process, dig, free_port

AUTHORS = " ".join(f"author-number-{i:02d}@portolan.example" for i in range(40))

BASIC = """
.:{port} {
    bind 127.0.0.1
    whoami
    chaos v-root
    any
}
bind.:{port} {
    bind 127.0.0.1
    chaos v-bind AUTHORS
}
example.org:{port} {
    bind 127.0.0.1
    whoami
}
""".replace("AUTHORS", AUTHORS)


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> DnsServer:
    srv = DnsServer(BASIC, tmp_path_factory.mktemp("basic"))
    yield srv
    assert srv.stop() == 0


def test_udp_and_tcp_answer(basic: DnsServer) -> None:
    for proto in ("+notcp", "+tcp"):
        d = basic.dig("www.example.org", "A", proto)
        assert d.status == "NOERROR"
        assert "aa" in d.flags
        assert "qr" in d.flags
        assert any(line.startswith("www.example.org. 0 IN A 127.0.0.1") for line in d.additional), d.raw
        transport = "_tcp" if proto == "+tcp" else "_udp"
        assert any(line.startswith(f"{transport}.www.example.org. 0 IN SRV 0 0 ") for line in d.additional)


def test_question_echoed_as_spelled(basic: DnsServer) -> None:
    d = basic.dig("WwW.ExAmPlE.OrG", "A")
    assert d.question == ["WwW.ExAmPlE.OrG. IN A"], d.raw


def test_longest_zone_wins_and_fixed_plugin_order(basic: DnsServer) -> None:
    # version.bind. is in zone bind. (longest match), whose chaos says v-bind.
    assert basic.dig("version.bind", "TXT", "-c", "CH").rdata() == ['"v-bind"']
    # In the root block whoami is listed first, but chaos runs first (plugin.cfg order): it answers.
    assert basic.dig("version.server", "TXT", "-c", "CH").rdata() == ['"v-root"']
    # any (RFC 8482) sits before whoami as well.
    d = basic.dig("foo.test", "ANY")
    assert d.rdata() == ['"ANY obsoleted" "See RFC 8482"']
    assert d.answer[0].split()[1] == "8482"


def test_non_in_class_refused_without_chaos(basic: DnsServer) -> None:
    assert basic.dig("www.example.org", "TXT", "-c", "CH").status == "REFUSED"


def test_no_matching_zone_refused(tmp_path: Path) -> None:
    srv = DnsServer("example.org:{port} {\n bind 127.0.0.1\n whoami\n}\n", tmp_path)
    try:
        assert srv.dig("example.com", "A").status == "REFUSED"
        assert srv.dig("a.example.org", "A").status == "NOERROR"
    finally:
        srv.stop()


def test_edns_echo_bufsize_and_badvers(basic: DnsServer) -> None:
    d = basic.dig("version.bind", "TXT", "-c", "CH", "+bufsize=1400")
    assert "udp: 1400" in d.edns, d.raw
    assert basic.dig("version.bind", "TXT", "-c", "CH", "+noedns").edns == ""
    assert basic.dig("version.bind", "TXT", "-c", "CH", "+edns=1", "+noednsneg").status == "BADVERS"
    d = basic.dig("version.bind", "TXT", "-c", "CH", "+dnssec")
    assert "flags: do" in d.edns


def test_truncation_then_tcp_retry(basic: DnsServer) -> None:
    # 40 authors make an answer well over 512 bytes.
    small = basic.dig("authors.bind", "TXT", "-c", "CH", "+noedns", "+ignore")
    assert "tc" in small.flags, small.raw
    assert small.msg_size <= 512, small.raw
    assert len(small.answer) < 40, small.raw
    edns_small = basic.dig("authors.bind", "TXT", "-c", "CH", "+bufsize=512", "+ignore")
    assert "tc" in edns_small.flags
    assert edns_small.msg_size <= 512
    assert "udp: 512" in edns_small.edns  # the OPT survives truncation
    retried = basic.dig("authors.bind", "TXT", "-c", "CH", "+noedns")
    assert "Truncated, retrying in TCP mode" in retried.raw
    assert len(retried.answer) == 40
    big = basic.dig("authors.bind", "TXT", "-c", "CH", "+bufsize=4096")
    assert "tc" not in big.flags
    assert len(big.answer) == 40
    assert big.msg_size > 512


def test_dig_keepopen_several_queries_one_connection(basic: DnsServer) -> None:
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(basic.port), "+tcp", "+keepopen", "+short",
                          "version.bind", "CH", "TXT", "version.server", "CH", "TXT"],
                         capture_output=True, text=True, timeout=10).stdout.split()
    assert out == ['"v-bind"', '"v-root"'], out


def _framed(q: DNSRecord) -> bytes:
    w = q.pack()
    return struct.pack("!H", len(w)) + w


def _read_framed(sock: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            assert chunk, "connection closed early"
            buf += chunk
        return buf
    (n,) = struct.unpack("!H", exact(2))
    return exact(n)


def test_tcp_pipelined_in_one_write(basic: DnsServer) -> None:
    names = [f"host{i}.example.org" for i in range(20)]
    queries = [DNSRecord.question(n, "A") for n in names]
    for i, q in enumerate(queries):
        q.header.id = 1000 + i  # distinct IDs: random ones can collide and mismatch the check
    with socket.create_connection(("127.0.0.1", basic.port), timeout=5) as s:
        s.sendall(b"".join(_framed(q) for q in queries))  # all at once, before reading anything
        replies = [DNSRecord.parse(_read_framed(s)) for _ in queries]
    by_id = {r.header.id: r for r in replies}
    for q, name in zip(queries, names, strict=True):
        r = by_id[q.header.id]
        assert str(r.q.qname) == name + "."
        assert str(r.ar[0].rdata) == "127.0.0.1"


def test_malformed_packets(basic: DnsServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        addr = ("127.0.0.1", basic.port)
        # A readable header claiming a question that is not there: FORMERR with the same ID.
        s.sendto(struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0), addr)
        r = s.recv(512)
        assert struct.unpack("!HH", r[:4]) == (0xBEEF, 0x8101)
        # A label running past the end of the packet.
        s.sendto(struct.pack("!HHHHHH", 0x1234, 0, 1, 0, 0, 0) + b"\x3fabc", addr)
        assert DNSRecord.parse(s.recv(512)).header.rcode == 1
        # Too short for a header, and a response instead of a query: both dropped.
        s.sendto(b"\x01\x02\x03", addr)
        s.sendto(struct.pack("!HHHHHH", 0x4321, 0x8000, 0, 0, 0, 0), addr)
        with pytest.raises(socket.timeout):
            s.recv(512)
    assert basic.dig("www.example.org", "A").status == "NOERROR"


def test_random_garbage_does_not_stop_the_server(basic: DnsServer) -> None:
    import random

    rnd = random.Random(1234)
    valid = DNSRecord.question("x.example.org", "A")
    valid.add_ar(EDNS0(udp_len=1232))
    base = bytearray(valid.pack())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(2000):  # bounded: 2,000 datagrams
            if i % 2:
                pkt = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 80)))
            else:
                pkt = bytearray(base)
                for _ in range(rnd.randint(1, 6)):
                    pkt[rnd.randrange(len(pkt))] = rnd.getrandbits(8)
                pkt = bytes(pkt)
            s.sendto(pkt, ("127.0.0.1", basic.port))
    for _ in range(3):
        assert basic.dig("www.example.org", "A").status == "NOERROR"
    assert basic.proc.poll() is None


def test_dns_port_flag_and_pidfile(tmp_path: Path) -> None:
    port = free_port()
    pidfile = tmp_path / "portolan.pid"
    srv = DnsServer(". {\n bind 127.0.0.1\n whoami\n}\n", tmp_path, port=port,
                    args=("-dns.port", str(port), "-pidfile", str(pidfile)))
    try:
        assert srv.dig("a.b", "A").status == "NOERROR"
        assert int(pidfile.read_text()) == srv.proc.pid
        assert any(line == f".:{port} on 127.0.0.1" for line in srv.lines), srv.lines
    finally:
        assert srv.stop() == 0
    assert not pidfile.exists()


def test_version_and_plugins_flags() -> None:
    out = subprocess.run([PORTOLAN, "dns", "-version"], capture_output=True, text=True).stdout
    assert out.startswith("portolan-")
    out = subprocess.run([PORTOLAN, "dns", "-plugins"], capture_output=True, text=True).stdout
    for name in ("dns.whoami", "dns.hosts", "dns.reload", "dns.prometheus"):
        assert name in out.split()


def test_corefile_error_exits_before_listening(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "Corefile").write_text(f".:{port} {{\n  bind 127.0.0.1\n  whoami\n  nosuchplugin\n}}\n")
    res = subprocess.run([PORTOLAN, "dns", "-conf", str(tmp_path / "Corefile")], capture_output=True,
                         text=True, timeout=20)
    assert res.returncode != 0
    assert f"{tmp_path / 'Corefile'}:4 - " in res.stderr
    assert "nosuchplugin" in res.stderr
    assert res.stdout == ""  # nothing printed as started


def test_quiet_prints_no_banner(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "Corefile").write_text(f".:{port} {{\n bind 127.0.0.1\n whoami\n}}\n")
    p = Process([PORTOLAN, "dns", "-quiet", "-conf", str(tmp_path / "Corefile")])
    try:
        deadline = time.monotonic() + 15
        while True:  # no banner to wait on: poll with dig, bounded
            try:
                if dig("127.0.0.1", port, "a.", "A", timeout=3).status == "NOERROR":
                    break
            except (AssertionError, subprocess.TimeoutExpired):
                pass
            assert time.monotonic() < deadline, p.drain()
    finally:
        p.stop()
    assert not any(line.startswith("portolan-") for line in p.lines)


def test_sigterm_lameduck_keeps_answering(tmp_path: Path) -> None:
    hport = free_port()
    srv = DnsServer(f".:{{port}} {{\n bind 127.0.0.1\n health 127.0.0.1:{hport} {{\n  lameduck 2s\n }}\n whoami\n}}\n",
                    tmp_path)
    import signal as _signal

    srv.proc.send_signal(_signal.SIGTERM)
    srv.wait_for("lameduck")
    # During lameduck, DNS and /health still answer.
    assert srv.dig("a.b", "A").status == "NOERROR"
    assert urllib.request.urlopen(f"http://127.0.0.1:{hport}/health", timeout=3).read() == b"OK"
    assert srv.proc.wait(15) == 0
