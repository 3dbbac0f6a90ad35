"""DNS over HTTPS (RFC 8484): https:// server blocks of a real `portolan dns`, asked by real `dig +https`
and `curl` over HTTP/2 and HTTP/1.1, on loopback."""

from __future__ import annotations

import base64
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
from dnslib import DNSRecord

from dnsserver.doh import MAX_CONNECTIONS
from tests.certs import make_cert
from tests.server import DnsServer, dig, free_port, metric

MIME = "application/dns-message"
BIG = 1500  # A records of big.example.org: a reply of ~24 KB, more than one HTTP/2 frame (16 KB)
HTTP_VERSIONS = [("--http2", "2"), ("--http1.1", "1.1")]


@dataclass
class Server:
    """The DoH server of this module's tests, with its certificate and metrics port."""

    dns: DnsServer
    cert: Path
    metrics_port: int

    @property
    def port(self) -> int:
        return self.dns.port

    def url(self, target: str) -> str:
        return f"https://dns.test:{self.port}{target}"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("doh")
    cert, key = make_cert(tmp)
    (tmp / "big.hosts").write_text("".join(f"10.1.{i // 256}.{i % 256} big.example.org\n" for i in range(BIG)))
    metrics_port = free_port()
    corefile = f"""
https://example.org:{{port}} {{
    bind 127.0.0.1
    tls {cert} {key}
    hosts big.hosts {{
        10.0.0.1 app.example.org
        ttl 60
    }}
    prometheus 127.0.0.1:{metrics_port}
}}
https://.:{{port}} {{
    bind 127.0.0.1
    tls {cert} {key}
    whoami
}}
"""
    dns = DnsServer(corefile, tmp)
    yield Server(dns, cert, metrics_port)
    assert dns.stop() == 0


@dataclass
class Response:
    """One HTTP response as curl saw it."""

    status: int
    version: str
    headers: dict[str, str]
    body: bytes
    num_connects: int


def curl(srv: Server, *args: str, tmp: Path) -> list[Response]:
    """Run curl against the server (its certificate verified); one Response per transfer, in order. Each
    transfer's URL follows its `transfer(n)` options."""
    for old in tmp.glob("b*"):
        old.unlink()
    out = subprocess.run(
        [
            "curl",
            "-s",
            "--max-time",
            "10",
            "--cacert",
            str(srv.cert),
            "--resolve",
            f"dns.test:{srv.port}:127.0.0.1",
            "-D",
            "headers",
            "-w",
            "%{http_code} %{http_version} %{num_connects}\\n",
            *args,
        ],
        capture_output=True,
        timeout=30,
        check=False,
        cwd=tmp,
    )
    assert out.returncode == 0, out.stderr.decode()
    # -D is one file for all transfers: their header blocks, in order, each opened by its status line.
    heads: list[dict[str, str]] = []
    for line in (tmp / "headers").read_text("latin-1").splitlines():
        if line.startswith("HTTP/"):
            heads.append({})
        elif ":" in line:
            k, _, v = line.partition(":")
            heads[-1][k.strip().lower()] = v.strip()
    responses = []
    for n, line in enumerate(out.stdout.decode().splitlines()):
        status, version, connects = line.split()
        body = (tmp / f"b{n}").read_bytes() if (tmp / f"b{n}").exists() else b""
        responses.append(Response(int(status), version, heads[n], body, int(connects)))
    return responses


def transfer(n: int) -> list[str]:
    """curl options that keep transfer n's body apart from the others'."""
    return ["-o", f"b{n}"]


def query(name: str, qtype: str = "A", qid: int = 0) -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = qid  # RFC 8484 asks for ID 0, so that HTTP caches see equal queries as equal
    return bytes(q.pack())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def ask(srv: Server, tmp: Path, version_flag: str, method: str, msg: bytes) -> Response:
    (tmp / "q.bin").write_bytes(msg)
    if method == "GET":
        return curl(srv, version_flag, *transfer(0), srv.url(f"/dns-query?dns={b64(msg)}"), tmp=tmp)[0]
    return curl(
        srv,
        version_flag,
        *transfer(0),
        "-H",
        f"content-type: {MIME}",
        "--data-binary",
        "@q.bin",
        srv.url("/dns-query"),
        tmp=tmp,
    )[0]


def test_dig_over_https_post_and_get(srv: Server) -> None:
    for mode, shown in (("+https", "(HTTPS)"), ("+https-get", "(HTTPS-GET)")):
        # dig verifies the certificate against our CA and name; BIND's DoH client speaks HTTP/2 only.
        d = dig("127.0.0.1", srv.port, mode, f"+tls-ca={srv.cert}", "+tls-hostname=dns.test", "app.example.org", "A")
        assert d.status == "NOERROR", d.raw
        assert d.answer == ["app.example.org. 60 IN A 10.0.0.1"], d.raw
        assert shown in d.raw
        d = dig("127.0.0.1", srv.port, mode, f"+tls-ca={srv.cert}", "+tls-hostname=dns.test", "www.example.net", "A")
        assert d.status == "NOERROR", d.raw
        # whoami reports the transport as CoreDNS does for DoH: the query came over a TCP connection.
        assert any(x.startswith("_tcp.www.example.net. 0 IN SRV") for x in d.additional), d.raw


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(("version_flag", "version"), HTTP_VERSIONS, ids=["h2", "http1.1"])
def test_curl(srv: Server, tmp_path: Path, version_flag: str, version: str, method: str) -> None:
    r = ask(srv, tmp_path, version_flag, method, query("app.example.org", qid=0x4242))
    assert (r.status, r.version) == (200, version)
    assert r.headers["content-type"] == MIME
    assert r.headers["cache-control"] == "max-age=60"
    assert int(r.headers["content-length"]) == len(r.body)
    reply = DNSRecord.parse(r.body)
    assert reply.header.id == 0x4242
    assert [str(rr.rdata) for rr in reply.rr] == ["10.0.0.1"]


@pytest.mark.parametrize(
    ("name", "rcode", "max_age"),
    [
        ("app.example.org", 0, "60"),  # the answer's TTL
        ("www.example.net", 0, "0"),  # whoami's records have TTL 0
        ("missing.example.org", 2, "5"),  # hosts without fallthrough: SERVFAIL, CoreDNS's minimum
    ],
)
def test_cache_control_is_the_smallest_ttl(srv: Server, tmp_path: Path, name: str, rcode: int, max_age: str) -> None:
    r = ask(srv, tmp_path, "--http2", "POST", query(name))
    assert r.status == 200
    assert DNSRecord.parse(r.body).header.rcode == rcode
    assert r.headers["cache-control"] == f"max-age={max_age}"


@pytest.mark.parametrize(("version_flag", "version"), HTTP_VERSIONS, ids=["h2", "http1.1"])
def test_reply_larger_than_a_frame(srv: Server, tmp_path: Path, version_flag: str, version: str) -> None:
    r = ask(srv, tmp_path, version_flag, "POST", query("big.example.org"))
    assert (r.status, r.version) == (200, version)
    assert len(r.body) > 16384
    reply = DNSRecord.parse(r.body)
    assert not reply.header.tc
    assert len(reply.rr) == BIG


GOOD = b64(query("app.example.org"))
NOT_DNS = b64(b"\x00\x00\x01\x00\x00\x01\x00")  # shorter than a DNS header


@pytest.mark.parametrize(
    ("args", "status"),
    [
        ([f"/dns-query?dns={NOT_DNS}"], 400),
        (["/dns-query?dns=%%%"], 400),
        ([f"/dns-query?dns={GOOD}=="], 400),  # padding: RFC 8484 says without
        (["/dns-query"], 400),
        (["/dns-query?name=app.example.org&type=A"], 400),  # the JSON API's parameters are not served
        (["-H", "content-type: application/dns-message", "--data-binary", "not a dns message", "/dns-query"], 400),
        (["-H", "content-type: application/json", "--data-binary", "@q.bin", "/dns-query"], 415),
        (["--data-binary", "@q.bin", "/dns-query"], 415),  # curl's default, a form
        ([f"/resolve?dns={GOOD}"], 404),
        (["/"], 404),
        (["-X", "PUT", "-H", "content-type: application/dns-message", "--data-binary", "@q.bin", "/dns-query"], 405),
        (["-X", "DELETE", f"/dns-query?dns={GOOD}"], 405),
    ],
)
@pytest.mark.parametrize(("version_flag", "version"), HTTP_VERSIONS, ids=["h2", "http1.1"])
def test_refused_requests(
    srv: Server, tmp_path: Path, version_flag: str, version: str, args: list[str], status: int
) -> None:
    (tmp_path / "q.bin").write_bytes(query("app.example.org"))
    *opts, target = args
    before = https_responses(srv, status)
    r = curl(srv, version_flag, *transfer(0), *opts, srv.url(target), tmp=tmp_path)[0]
    assert (r.status, r.version) == (status, version)
    if status == 405:
        assert r.headers["allow"] == "GET, POST"
    assert https_responses(srv, status) == before + 1


@pytest.mark.parametrize(("version_flag", "version"), HTTP_VERSIONS, ids=["h2", "http1.1"])
def test_bad_requests_leave_the_connection_serving(
    srv: Server, tmp_path: Path, version_flag: str, version: str
) -> None:
    urls = [f"/dns-query?dns={NOT_DNS}", f"/dns-query?dns={GOOD}", "/nowhere", f"/dns-query?dns={GOOD}"]
    args = [a for n, u in enumerate(urls) for a in (*transfer(n), srv.url(u))]
    rs = curl(srv, version_flag, *args, tmp=tmp_path)
    assert [r.status for r in rs] == [400, 200, 404, 200]
    assert [r.num_connects for r in rs] == [1, 0, 0, 0]  # one connection for all four
    assert all(r.version == version for r in rs)


def https_responses(srv: Server, status: int) -> float:
    text = scrape(srv)
    try:
        return metric(
            text, "coredns_dns_https_responses_total", server=f"https://127.0.0.1:{srv.port}", status=str(status)
        )
    except AssertionError:
        return 0.0


def scrape(srv: Server) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
    return text


def test_metrics_as_coredns_counts_doh(srv: Server, tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{srv.port}"
    labels = {"server": server, "zone": "example.org.", "proto": "tcp", "family": "1", "type": "AAAA"}
    try:
        before = metric(scrape(srv), "coredns_dns_requests_total", **labels)
    except AssertionError:
        before = 0.0
    ok = https_responses(srv, 200)
    for flag, _ in HTTP_VERSIONS:
        assert ask(srv, tmp_path, flag, "GET", query("app.example.org", "AAAA")).status == 200
    text = scrape(srv)
    assert metric(text, "coredns_dns_requests_total", **labels) == before + 2
    assert https_responses(srv, 200) == ok + 2
    assert metric(text, "coredns_plugin_enabled", server=f"https://:{srv.port}", zone="example.org.", name="hosts") == 1


def tls_socket(port: int, alpn: list[str]) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(alpn)
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="dns.test")


def read_all(s: ssl.SSLSocket) -> bytes:
    """Everything the server sends until it closes (a reset, when it closes with our bytes unread, ends it too)."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_garbage_ends_only_its_own_connection(srv: Server) -> None:
    with tls_socket(srv.port, ["h2"]) as s:
        assert s.selected_alpn_protocol() == "h2"
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64)
        assert b"\x07" in read_all(s)  # a GOAWAY frame (type 7) before the close
    with tls_socket(srv.port, ["http/1.1"]) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert read_all(s).startswith(b"HTTP/1.1 400 ")
    d = dig("127.0.0.1", srv.port, "+https", "app.example.org", "A")
    assert d.answer == ["app.example.org. 60 IN A 10.0.0.1"], d.raw


def test_rapid_reset_ends_the_connection(srv: Server) -> None:
    """Streams reset as soon as they are sent no longer count against the stream limit, but their queries
    still cost: more in flight than streams may be open ends the connection (CVE-2023-44487)."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    target = f"/dns-query?dns={b64(query('reset.example.net'))}"  # whoami: answered by the chain, in a task
    for _ in range(300):
        stream = client.get_next_available_stream_id()
        client.send_headers(
            stream,
            [(":method", "GET"), (":scheme", "https"), (":authority", "dns.test"), (":path", target)],
            end_stream=True,
        )
        client.reset_stream(stream)
    with tls_socket(srv.port, ["h2"]) as s:
        s.sendall(client.data_to_send())
        events = client.receive_data(read_all(s))
    ended = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended, events
    assert ended[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert dig("127.0.0.1", srv.port, "+https", "after.example.net").status == "NOERROR"


def test_connections_beyond_the_limit_are_closed(srv: Server) -> None:
    opened = []
    try:
        for _ in range(MAX_CONNECTIONS):
            opened.append(tls_socket(srv.port, ["h2"]))
        with tls_socket(srv.port, ["h2"]) as extra:
            assert read_all(extra) == b""  # closed at once, not even the server's SETTINGS sent
    finally:
        for s in opened:
            s.close()
    assert dig("127.0.0.1", srv.port, "+https", "after.example.net").status == "NOERROR"


def test_a_request_that_never_ends_is_cut_off(srv: Server) -> None:
    with tls_socket(srv.port, ["http/1.1"]) as s:
        start = time.monotonic()
        s.sendall(
            b"POST /dns-query HTTP/1.1\r\nHost: dns.test\r\nContent-Type: application/dns-message\r\n"
            b"Content-Length: 40\r\n\r\n\x00\x00"
        )
        assert read_all(s) == b""
        assert 4.5 < time.monotonic() - start < 9  # REQUEST_TIMEOUT is 5 s


def test_plain_http_without_tls_plugin_and_dot_beside_doh(tmp_path: Path) -> None:
    """An https:// block without the tls plugin speaks plain HTTP (for a proxy that ends TLS), as CoreDNS's
    does; a block serving both tls:// and https:// offers HTTP in ALPN on its DoH port only."""
    cert, key = make_cert(tmp_path)
    plain, doh = free_port(), free_port()
    dns = DnsServer(
        f"""
tls://.:{{port}} https://.:{doh} {{
    bind 127.0.0.1
    tls {cert} {key}
    whoami
}}
https://.:{plain} {{
    bind 127.0.0.1
    whoami
}}
""",
        tmp_path,
    )
    try:
        (tmp_path / "q.bin").write_bytes(query("plain.example.org"))
        out = subprocess.run(
            [
                "curl",
                "-s",
                "--max-time",
                "10",
                "-o",
                "b0",
                "-w",
                "%{http_code} %{http_version}",
                "-H",
                f"content-type: {MIME}",
                "--data-binary",
                "@q.bin",
                f"http://127.0.0.1:{plain}/dns-query",
            ],
            capture_output=True,
            timeout=30,
            check=False,
            cwd=tmp_path,
        )
        assert out.stdout == b"200 1.1", out.stderr
        assert DNSRecord.parse((tmp_path / "b0").read_bytes()).ar[0].rdata.__str__() == "127.0.0.1"
        with tls_socket(dns.port, ["h2", "http/1.1"]) as s:
            assert s.selected_alpn_protocol() is None  # DoT: no HTTP offered
        with tls_socket(doh, ["h2", "http/1.1"]) as s:
            assert s.selected_alpn_protocol() == "h2"
        assert dig("127.0.0.1", dns.port, "+tls", "dot.example.org").status == "NOERROR"
        assert dig("127.0.0.1", doh, "+https", "doh.example.org").status == "NOERROR"
    finally:
        assert dns.stop() == 0


def h2_get(s: ssl.SSLSocket, client: h2.connection.H2Connection, msg: bytes) -> bytes:
    """One GET on an open HTTP/2 connection: the reply's body."""
    stream = client.get_next_available_stream_id()
    headers = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "dns.test"),
        (":path", f"/dns-query?dns={b64(msg)}"),
    ]
    client.send_headers(stream, headers, end_stream=True)
    s.sendall(client.data_to_send())
    body = b""
    while True:
        data = s.recv(65536)
        assert data, "the server closed the connection"
        for event in client.receive_data(data):
            if isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                body += event.data
                client.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                return body
        s.sendall(client.data_to_send())


def test_reload_keeps_open_connections_serving_the_new_config(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    text = f"""https://.:{{port}} {{
    bind 127.0.0.1
    tls {cert} {key}
    chaos VERSION
}}
"""
    dns = DnsServer(text.replace("VERSION", "version-one"), tmp_path)
    try:
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        chaos = bytes(DNSRecord.question("version.bind", "TXT", "CH").pack())
        with tls_socket(dns.port, ["h2"]) as s:
            s.sendall(client.data_to_send())
            assert str(DNSRecord.parse(h2_get(s, client, chaos)).rr[0].rdata) == '"version-one"'
            dns.corefile.write_text(text.replace("VERSION", "version-two").replace("{port}", str(dns.port)))
            dns.proc.send_signal(signal.SIGUSR1)
            dns.wait_for(r"Reloading complete", timeout=20)
            # The same connection: the listener kept its socket and its connections, with the new chain.
            assert str(DNSRecord.parse(h2_get(s, client, chaos)).rr[0].rdata) == '"version-two"'
    finally:
        assert dns.stop() == 0
