"""TCP and UDP services through nginx's stream module with real traffic: loopback echo
backends stand in for pods; each answers with its name and what it received."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import pytest

from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import free_ports, metric, nginx_workers, until

STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
END = b"END\n"


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.name + b":" + data, addr)


@contextlib.asynccontextmanager
async def echo_backends(*names: str, first: int = 100) -> AsyncIterator[tuple[list[str], int]]:
    """TCP and UDP echo servers on 127.0.0.{first..}, all on one port number."""
    addrs = [f"127.0.0.{first + i}" for i in range(len(names))]
    closers = []

    async def serve(name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = await reader.readuntil(END)
            writer.write(name.encode() + b":" + data)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    for _ in range(20):
        port = free_ports(1, addrs[0])[0]
        try:
            for name, addr in zip(names, addrs, strict=True):
                server = await asyncio.start_server(lambda r, w, n=name: serve(n, r, w), addr, port)
                closers.append(server.close)
                loop = asyncio.get_running_loop()
                transport, _ = await loop.create_datagram_endpoint(lambda n=name: _Udp(n), local_addr=(addr, port))
                closers.append(transport.close)
            break
        except OSError:
            for close in closers:
                close()
            closers.clear()
    else:
        raise RuntimeError("no common free port for the echo backends")
    try:
        yield addrs, port
    finally:
        for close in closers:
            close()


async def tcp_exchange(port: int, payload: bytes, prefix: bytes = b"") -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        writer.write(prefix + payload + END)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def closed_without_reply(port: int) -> bool:
    """Whether nginx accepts a connection to ``port`` and closes it without a byte: a clean close,
    or a reset when our payload was still unread (the port itself listens: refusal is False)."""
    try:
        return await tcp_exchange(port, b"probe\n") == b""
    except ConnectionResetError:
        return True


async def reaches(port: int, name: bytes) -> bool:
    """For polling: whether a connection to ``port`` is passed to the backend ``name`` now (a
    port nginx does not listen on yet is not a failure)."""
    try:
        return (await tcp_exchange(port, b"probe\n")).startswith(name + b":")
    except OSError:  # refused, reset, or timed out (TimeoutError is an OSError)
        return False


async def udp_exchange(port: int, payload: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(payload)
        return await asyncio.wait_for(got, 5)
    finally:
        transport.close()


@pytest.fixture(autouse=True)
def _needs_stream_module() -> None:
    import os

    # scripts/test installs libnginx-mod-stream: its absence is a broken set-up, never a reason to skip.
    assert os.path.exists(STREAM_MODULE), f"{STREAM_MODULE} is missing: apt-get install libnginx-mod-stream"


async def test_tcp_and_udp_services(start_controller) -> None:
    tcp_port, udp_port, proxy_port = free_ports(3)
    async with echo_backends("e1", "e2") as (addrs, port):
        store = Store()
        o.put(
            store,
            o.ingress_class(),
            o.service("echo", ("tcp", 7000, port)),
            o.endpoint_slice("echo", addrs, port, port_name="tcp"),
            o.service("dns", ("dns", 53, port), protocol="UDP"),
            o.endpoint_slice("dns", addrs[:1], port, port_name="dns", protocol="UDP"),
            o.config_map("tcp", {str(tcp_port): "default/echo:7000", str(proxy_port): "default/echo:tcp:PROXY:PROXY",
                                 "443": "default/echo:7000"}),
            o.config_map("udp", {str(udp_port): "default/dns:dns"}),
        )  # fmt: skip
        controller = await start_controller(
            store, tcp_services_configmap=("default", "tcp"), udp_services_configmap=("default", "udp"),
            stream_module=STREAM_MODULE,
        )  # fmt: skip
        conf = controller.layout.conf.read_text()
        assert conf.count("ngx_stream_module.so") == 1
        assert "stream {" in conf
        assert f"127.0.0.1:{udp_port} udp;" in conf
        # The reserved port refused: no ":443" that is not the start of another port (a free
        # port such as 44393 may appear in a listen or server line).
        assert not re.search(r":443(?!\d)", conf.split("stream {")[1])

        seen = set()
        for i in range(12):
            reply = await tcp_exchange(tcp_port, f"hello {i}\n".encode())
            name, _, echoed = reply.partition(b":")
            assert echoed == f"hello {i}\n".encode() + END
            seen.add(name)
        assert seen == {b"e1", b"e2"}  # both ready endpoints get connections

        for i in range(5):
            assert await udp_exchange(udp_port, f"query {i}".encode()) == f"e1:query {i}".encode()

        # PROXY in and PROXY out: nginx reads the client's header and sends its own.
        header = b"PROXY TCP4 192.0.2.1 127.0.0.1 40000 80\r\n"
        reply = await tcp_exchange(proxy_port, b"payload\n", prefix=header)
        name, _, echoed = reply.partition(b":")
        assert echoed.startswith(b"PROXY TCP4 ")
        assert echoed.endswith(b"\r\npayload\n" + END)


async def test_tcp_services_follow_changes(start_controller) -> None:
    tcp_port, later_port = free_ports(2)
    async with echo_backends("a1", first=110) as (a_addrs, a_port), echo_backends("b1", first=120) as (b_addrs, b_port):
        store = Store()
        o.put(
            store,
            o.ingress_class(),
            o.service("a", ("tcp", 7000, a_port)),
            o.endpoint_slice("a", a_addrs, a_port, port_name="tcp"),
            o.service("b", ("tcp", 7000, b_port)),
            o.endpoint_slice("b", [], b_port, port_name="tcp"),
            o.config_map("tcp", {str(tcp_port): "default/a:7000", str(later_port): "default/b:7000"}),
        )
        controller = await start_controller(store, tcp_services_configmap=("default", "tcp"),
                                            stream_module=STREAM_MODULE)  # fmt: skip
        assert (await tcp_exchange(tcp_port, b"x\n")).startswith(b"a1:")
        # No ready endpoints for b: its port listens, and closes each connection.
        assert f":{later_port};" in controller.layout.conf.read_text()
        assert await closed_without_reply(later_port)

        # Endpoints appear for b: live, no reload.
        reloads, workers = metric(controller, "portolan_ingress_reloads_total"), nginx_workers(controller)
        o.put(store, o.endpoint_slice("b", b_addrs, b_port, port_name="tcp"))
        await until(lambda: reaches(later_port, b"b1"))
        # a's endpoints move to b's backend: the next connections follow, still without a reload.
        o.put(store, o.endpoint_slice("a", b_addrs, b_port, port_name="tcp"))
        await until(lambda: reaches(tcp_port, b"b1"))
        assert metric(controller, "portolan_ingress_reloads_total") == reloads
        assert nginx_workers(controller) == workers
        assert str(b_port) not in controller.layout.conf.read_text()  # peers never reach nginx.conf

        # The ConfigMap moves tcp_port to b: a reload.
        o.put(store, o.endpoint_slice("a", a_addrs, a_port, port_name="tcp"),
              o.config_map("tcp", {str(tcp_port): "default/b:7000", str(later_port): "default/b:7000"}))  # fmt: skip

        await until(lambda: reaches(tcp_port, b"b1"))
        assert (await tcp_exchange(later_port, b"z\n")).startswith(b"b1:")

        # The ConfigMap gone: the stream block (and the module) go with it.
        o.remove(store, o.config_map("tcp", {}))

        await until(lambda: "stream {" not in controller.layout.conf.read_text())
        assert "ngx_stream_module.so" not in controller.layout.conf.read_text()

        # And back: the module is loaded again by a reload of a running nginx.
        o.put(store, o.config_map("tcp", {str(later_port): "default/a:7000"}))

        await until(lambda: reaches(later_port, b"a1"))
