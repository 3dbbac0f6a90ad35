"""The invariant of the way through the server (see dnsserver's docstring): whatever path a query takes
from `Dispatcher.submit`, the client gets the bytes the whole chain (`Dispatcher.handle`) gives it.

Checked for every plugin with a wire store (the hot path) or a relay (the relay path), over a table of
queries: plain, EDNS, DO, mixed case, TCP, TC-sized (with and without EDNS), malformed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from dnslib import EDNS0, QTYPE, RR, A, DNSRecord

from dnsplugins import PLUGINS
from dnsplugins.cache import Cache
from dnsserver.plugin import Plugin
from tests.dnstest import Served, serve

BIG = 90  # addresses of the big name: more than fit in 512 bytes, or in 1232


def question(name: str, edns: int | None = None, do: bool = False) -> bytes:
    q = DNSRecord.question(name)
    q.header.id = 4321
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns, flags="do" if do else ""))
    return bytes(q.pack())


@dataclass
class Query:
    """One row of the table: the query's bytes, its transport, and whether the store or relay path must
    take it (False: it may go to the chain)."""

    label: str
    data: bytes
    proto: str = "udp"
    path: bool = True


def table(name: str, big: str) -> list[Query]:
    plain = question(name)
    mixed = name[:1].upper() + name[1:3] + name[3:].upper()
    return [
        Query("plain", plain),
        Query("edns", question(name, 1232)),
        Query("do", question(name, 1232, do=True)),
        Query("mixed case", question(mixed)),
        Query("tcp", plain, "tcp"),
        Query("tc-sized", question(big), path=False),
        Query("tc-sized edns", question(big, 1232), path=False),
        Query("cut short", plain[:15], path=False),
        Query("a response", plain[:2] + bytes([plain[2] | 0x80]) + plain[3:], path=False),
        Query("opcode status", plain[:2] + bytes([plain[2] | 0x10]) + plain[3:], path=False),
        Query("edns version 1", plain[:11] + b"\x01" + plain[12:] + b"\x00\x00\x29\x04\xd0\x00\x01\x00\x00\x00\x00",
              path=False),
    ]


class Upstream(asyncio.DatagramProtocol):
    """An upstream that answers from a table, as dnslib packs it (the chain re-packs what it parses, so the
    relay's bytes and the chain's can be compared), with its own OPT when asked with EDNS. It answers in
    full whatever the client's size: the server's truncation is what is under test."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.transport: asyncio.DatagramTransport | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    def reply(self, data: bytes) -> bytes:
        q = DNSRecord.parse(data)
        r = q.reply()
        for ip in self.answers.get(str(q.q.qname).lower(), []):
            r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(ip), ttl=60))
        opt = next((rr for rr in q.ar if rr.rtype == 41), None)
        if opt is not None:
            r.add_ar(EDNS0(udp_len=4096, flags="do" if opt.ttl & 0x8000 else ""))
        return bytes(r.pack())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.reply(data), addr)

    async def stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            while True:
                n = int.from_bytes(await reader.readexactly(2), "big")
                out = self.reply(await reader.readexactly(n))
                writer.write(len(out).to_bytes(2, "big") + out)
        writer.close()


@contextlib.asynccontextmanager
async def upstream(answers: dict[str, list[str]]) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    up = Upstream(answers)
    for _ in range(20):  # UDP's port, for TCP too: another one if TCP's is taken
        transport, _ = await loop.create_datagram_endpoint(lambda: up, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            server = await asyncio.start_server(up.stream, "127.0.0.1", port)
        except OSError:
            transport.close()
            continue
        break
    else:
        raise OSError("no port free for UDP and TCP")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        for w in up.writers:
            w.close()
        transport.close()


def hosts_file(tmp_path: Path) -> Path:
    hosts = tmp_path / "hosts"
    hosts.write_text("10.0.0.1 app.example.org\n" + "".join(f"10.0.1.{i} big.example.org\n" for i in range(BIG)))
    return hosts


def manifests(tmp_path: Path) -> Path:
    """A headless service with BIG ready endpoints and one with a single endpoint."""
    def service(name: str, ips: list[str]) -> str:
        endpoints = "".join(f"- addresses: [{ip}]\n  conditions: {{ready: true}}\n" for ip in ips)
        return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\n"
                f"spec:\n  clusterIP: None\n  ports: [{{name: http, port: 80, protocol: TCP}}]\n---\n"
                f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n"
                f"  namespace: ns\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\n"
                f"endpoints:\n{endpoints}ports:\n- {{name: http, port: 80, protocol: TCP}}\n---\n")
    path = tmp_path / "cluster.yaml"
    path.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n---\n"
                    + service("app", ["172.17.0.6"]) + service("big", [f"172.17.1.{i}" for i in range(BIG)]))
    return path


def edge_manifests(tmp_path: Path) -> Path:
    """Ingresses for k8s_gateway: one host with one address in its status, one with BIG."""
    def ingress(name: str, ips: list[str]) -> str:
        status = ", ".join(f"{{ip: {ip}}}" for ip in ips)
        return (f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: ns}}\n"
                f"spec:\n  rules: [{{host: {name}.example.org}}]\n"
                f"status:\n  loadBalancer: {{ingress: [{status}]}}\n---\n")
    path = tmp_path / "edge.yaml"
    path.write_text(ingress("app", ["192.0.2.1"]) + ingress("big", [f"192.0.3.{i}" for i in range(BIG)]))
    return path


@dataclass
class Setup:
    """A server block whose store or relay is under test, and the names it answers."""

    corefile: Callable[[Path, str], str]  # (tmp_path, upstream address) -> Corefile text
    name: str
    big: str
    relay: bool = False


SETUPS = {
    "cache": Setup(lambda tmp, up: f". {{\n cache 30\n hosts {hosts_file(tmp)}\n}}", "app.example.org.",
                   "big.example.org."),
    "hosts": Setup(lambda tmp, up: f". {{\n hosts {hosts_file(tmp)}\n}}", "app.example.org.", "big.example.org."),
    "kubernetes": Setup(lambda tmp, up: f"cluster.local {{\n kubernetes cluster.local {{\n"
                                        f"  manifests {manifests(tmp)}\n }}\n}}",
                        "app.ns.svc.cluster.local.", "big.ns.svc.cluster.local."),
    "k8s_gateway": Setup(lambda tmp, up: f"example.org {{\n k8s_gateway {{\n  manifests {edge_manifests(tmp)}\n }}\n}}",
                         "app.example.org.", "big.example.org."),
    "autopath": Setup(lambda tmp, up: f"cluster.local {{\n autopath @kubernetes\n cache 30\n kubernetes {{\n"
                                      f"  manifests {manifests(tmp)}\n  pods verified\n }}\n}}",
                      "app.ns.svc.cluster.local.", "big.ns.svc.cluster.local."),
    "k8s_external": Setup(lambda tmp, up: f". {{\n k8s_external example.org {{\n  headless\n }}\n"
                                          f" kubernetes cluster.local {{\n  manifests {manifests(tmp)}\n }}\n}}",
                          "app.ns.example.org.", "big.ns.example.org."),
    "forward": Setup(lambda tmp, up: f". {{\n forward . {up}\n}}", "app.example.org.", "big.example.org.",
                     relay=True),
}


def test_every_plugin_with_a_store_or_a_relay_is_checked() -> None:
    found = set()
    for spec in PLUGINS:
        for obj in vars(spec.module).values():
            if isinstance(obj, type) and issubclass(obj, Plugin) and obj.name == spec.name \
                    and (callable(getattr(obj, "fast_answer", None)) or callable(getattr(obj, "relay_starter", None))):
                found.add(spec.name)
    assert found == set(SETUPS)


@pytest.mark.parametrize("plugin", sorted(SETUPS))
async def test_every_path_gives_the_chains_bytes(plugin: str, tmp_path: Path) -> None:
    setup = SETUPS[plugin]
    answers = {"app.example.org.": ["192.0.2.1"], "big.example.org.": [f"192.0.3.{i}" for i in range(BIG)]}
    async with upstream(answers) as up, serve(setup.corefile(tmp_path, up)) as s:
        for p in s.config.plugins:
            if isinstance(p, Cache):
                p.clock = lambda: 1000.0  # TTLs must not tick between the two replies compared
        rows = table(setup.name, setup.big)
        for q in rows + rows[::-1]:  # and back: what one spelling stored must serve the others alike
            await _compare(s, q, setup.relay)


async def _compare(s: Served, q: Query, relay: bool) -> None:
    for _ in range(2):  # the first answer learns the route; the next may take it
        await s.wire(q.data, q.proto)
    got = await s.wire(q.data, q.proto)
    took = s.last_relay if relay else s.last_fast
    want = await s.chain(q.data, q.proto)
    assert got == want, f"{q.label}: the path's reply differs from the chain's"
    if q.path:
        assert took, f"{q.label}: not answered by the {'relay' if relay else 'store'}"
