"""What nginx does with a request once routed: proxy fidelity, forwarded headers, HTTP/1.1
keep-alive upstream, WebSocket upgrades, ExternalName, long host names."""

from __future__ import annotations

import asyncio
import os

import aiohttp
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import services, until


async def test_request_is_passed_through_with_forwarded_headers(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, web=("w1",))
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "web"))))
    controller = await start_controller(store)
    client = client_for(controller)
    reply = await client.request(
        f"foo.com:{controller.options.http_port}",
        "/a/b%20c?x=1&y=%2F",
        headers={"User-Agent": "probe/1.0", "X-Custom": "kept", "X-Forwarded-For": "203.0.113.9"},
    )
    assert reply.status == 200
    assert reply.backend == "w1"
    seen = reply.data
    h = {k.lower(): v for k, v in seen["headers"].items()}
    assert seen["path"] == "/a/b%20c?x=1&y=%2F"  # URI untouched
    assert seen["version"] == "1.1"  # HTTP/1.1 upstream (nginx defaults to 1.0)
    assert h["host"] == f"foo.com:{controller.options.http_port}"  # Host as the client sent it
    assert h["user-agent"] == "probe/1.0"
    assert h["x-custom"] == "kept"
    assert h["x-real-ip"] == "127.0.0.1"
    # use-forwarded-headers is off: the client's X-Forwarded-For is replaced, not extended
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == f"foo.com:{controller.options.http_port}"
    assert h["x-forwarded-port"] == str(controller.options.http_port)
    assert "connection" not in h  # keep-alive: no "Connection: close" towards the upstream
    assert reply.headers.get("Server", "").startswith("nginx")


async def test_upstream_connections_are_kept_alive(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, web=("w1",))
    # One worker: with one per CPU ("auto"), a machine of 12 or more CPUs could see 12 source
    # ports without any reuse at all.
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "web"))), o.config_map("cfg", {"worker-processes": "1"}))
    controller = await start_controller(store, configmap=("default", "cfg"))
    assert "worker_processes 1;" in controller.layout.conf.read_text()
    client = client_for(controller)
    # A new client connection per request, but upstream connections are reused: the
    # backend sees at most one source port per nginx worker.
    peers, request_ids = set(), set()
    for _ in range(12):
        reply = await client.request("foo.com", "/")
        assert reply.status == 200
        peers.add(tuple(reply.data["peer"]))
        request_ids.add(reply.data["headers"].get("X-Request-ID"))
    assert len(request_ids) == 12
    assert len(peers) <= (os.cpu_count() or 1)
    assert len(peers) == 1  # the one worker kept its one upstream connection


async def test_websocket_upgrade(start_controller, backends) -> None:
    store = Store()
    await services(backends, store, web=("ws1",))
    o.put(store, o.ingress("i", o.rule("chat.com", o.path("/ws", "web"))))
    controller = await start_controller(store)
    url = f"http://127.0.0.1:{controller.options.http_port}/ws/room"
    async with aiohttp.ClientSession() as session:
        timeout = aiohttp.ClientWSTimeout(ws_close=5)
        async with session.ws_connect(url, headers={"Host": "chat.com"}, timeout=timeout) as ws:
            for text in ("hello", "again"):
                await ws.send_str(text)
                msg = await asyncio.wait_for(ws.receive(), 5)
                assert msg.data == f"ws1:{text}"


async def test_external_name_service(start_controller, backends, client_for) -> None:
    (ip,), port = await backends.start("outside")
    store = Store()
    o.put(
        store,
        o.ingress_class(),
        o.service("ext", ("http", port, port), type="ExternalName", external_name=ip),
        o.ingress("i", o.rule("foo.com", o.path("/", "ext", port=port))),
    )
    controller = await start_controller(store)
    reply = await client_for(controller).request("foo.com", "/x")
    assert reply.status == 200
    assert reply.backend == "outside"
    assert reply.data["headers"]["Host"] == "foo.com"


class _Dns(asyncio.DatagramProtocol):
    """A one-name DNS server: NAME -> IP (A), NXDOMAIN for the rest."""

    def __init__(self, name: str, ip: str) -> None:
        self.name, self.ip = name, ip
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = DNSRecord.parse(data)
        reply = query.reply()
        qname = str(query.q.qname).rstrip(".")
        if qname == self.name and query.q.qtype == QTYPE.A:
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(self.ip), ttl=30))
        elif qname != self.name:
            reply.header.rcode = RCODE.NXDOMAIN
        assert self.transport is not None
        self.transport.sendto(reply.pack(), addr)


async def test_dns_external_name_is_resolved_per_request(start_controller, backends, client_for) -> None:
    (ip,), port = await backends.start("named")
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Dns("backend.test", ip), local_addr=("127.0.0.1", 0))
    try:
        dns_port = transport.get_extra_info("sockname")[1]
        store = Store()
        o.put(
            store,
            o.ingress_class(),
            o.service("ext", type="ExternalName", external_name="backend.test"),
            o.ingress("i", o.rule("foo.com", o.path("/", "ext", port=port))),
        )
        controller = await start_controller(store, resolvers=(f"127.0.0.1:{dns_port}",))
        conf = controller.layout.conf.read_text()
        assert f"resolver 127.0.0.1:{dns_port} valid=30s;" in conf
        assert f'set $portolan_target "backend.test:{port}";' in conf
        client = client_for(controller)
        # nginx's first lookup may still be in flight on a loaded machine.
        await until(lambda: client.answers("foo.com", "/via-dns"))
        reply = await client.request("foo.com", "/via-dns")
        assert reply.status == 200
        assert reply.backend == "named"
        assert reply.data["path"] == "/via-dns"
    finally:
        transport.close()


async def test_long_host_names_fit_nginx_hash(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, web=("w1",))
    label = "a" * 63
    long_host = ".".join([label, label, label, "b" * 57, "com"])
    assert len(long_host) == 253
    hosts = [long_host] + [f"h{i}-{'x' * 50}.example.com" for i in range(300)]
    o.put(store, o.ingress("i", *[o.rule(h, o.path("/", "web")) for h in hosts]))
    controller = await start_controller(store)
    client = client_for(controller)
    for host in (long_host, hosts[150]):
        reply = await client.request(host, "/")
        assert reply.status == 200
        assert reply.backend == "w1"


async def test_default_backend_404_and_no_endpoints_503(start_controller, client_for) -> None:
    store = Store()
    o.put(store, o.ingress_class(), o.service("web", ("http", 80, "http")),
          o.ingress("i", o.rule("foo.com", o.path("/", "web"))))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    assert (await client.request("foo.com", "/")).status == 503
    assert (await client.request("unknown.com", "/")).status == 404
    assert (await client.request(None, "/")).status == 404
