"""UDP read in batches (recvmmsg/sendmmsg) and the plain recvfrom loop kept where those are missing."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest
from dnslib import DNSRecord

from dnsserver.listeners import Listener, client_address
from dnsserver.mmsg import Batch, decode_sockaddr
from tests.dnstest import serve


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_decode_sockaddr_matches_the_socket_module(family: int, host: str) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as a, socket.socket(family, socket.SOCK_DGRAM) as b:
        a.bind((host, 0))
        b.bind((host, 0))
        b.sendto(b"x", a.getsockname())
        _, addr = a.recvfrom(16)
        # What recvmmsg leaves in a slot is the raw sockaddr; build the same from the address itself.
        raw = _raw_sockaddr(family, addr)
        assert decode_sockaddr(raw) == addr


def _raw_sockaddr(family: int, addr: tuple) -> bytes:
    port = addr[1].to_bytes(2, "big")
    fam = family.to_bytes(2, sys.byteorder)
    if family == socket.AF_INET:
        return fam + port + socket.inet_pton(family, addr[0]) + bytes(8)
    return (fam + port + addr[2].to_bytes(4, "big") + socket.inet_pton(family, addr[0])
            + addr[3].to_bytes(4, sys.byteorder))


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_batch_answers_fast_defers_slow_and_sends_oversized_alone(family: int, host: str) -> None:
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    server.setblocking(False)
    clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for c in clients:
            c.bind((host, 0))
            c.settimeout(2)
        batch = Batch(server, slots=4, size=64, client=client_address)
        # Six datagrams from three clients: more than one batch of four.
        sent = [(clients[k % 3], f"{kind}{k}".encode()) for k, kind in
                enumerate(["fast", "slow", "big", "fast", "fast", "slow"])]
        for c, payload in sent:
            c.sendto(payload, server.getsockname())
        deferred: list[tuple[bytes, tuple, tuple[str, int]]] = []

        def fast(data: bytes, client: tuple[str, int], proto: str) -> bytes | None:
            assert proto == "udp"
            assert client[0] == host
            if data.startswith(b"slow"):
                return None
            return (b"R" * 100 if data.startswith(b"big") else b"re:") + data

        def submit(data: bytes, client: tuple[str, int], proto: str, send: object, raw: bytes) -> bytes | None:
            # Dispatcher.submit as the batch calls it: what is not answered at once is deferred.
            out = fast(data, client, proto)
            if out is None:
                deferred.append((data, batch.address(raw), client))
            return out

        got = [batch.serve(submit, lambda out, raw: None) for _ in range(3)]
        assert got == [4, 2, 0]
        assert [d for d, _, _ in deferred] == [b"slow1", b"slow5"]
        assert [a[1] for _, a, _ in deferred] == [clients[1].getsockname()[1], clients[2].getsockname()[1]]
        replies = {k: [] for k in range(3)}
        for k in range(3):
            c = clients[k]
            c.settimeout(0.5)
            try:
                while True:
                    replies[k].append(c.recv(200))
            except TimeoutError:
                pass
        assert sorted(replies[0]) == [b"re:fast0", b"re:fast3"]  # each reply to its own sender
        assert replies[1] == [b"re:fast4"]
        assert replies[2] == [b"R" * 100 + b"big2"]  # larger than a slot: sent on its own
    finally:
        server.close()
        for c in clients:
            c.close()


@pytest.mark.parametrize("batched", [True, False])
async def test_listener_answers_bursts_from_many_clients(tmp_path: Path, batched: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if not batched:
        monkeypatch.setattr(Batch, "available", staticmethod(lambda: False))
    hosts = tmp_path / "hosts"
    hosts.write_text("".join(f"10.0.0.{i} h{i}.example.org\n" for i in range(1, 21)))
    async with serve(f".:53 {{\n    hosts {hosts}\n}}\n") as s:
        for host, family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
            listener = Listener(host, 0, s.dispatcher)
            await listener.open()
            assert (listener.udp.batch is not None) == batched  # type: ignore[union-attr]
            try:
                await _burst(listener.port, host, family)
            finally:
                await listener.close(0.1)


async def _burst(port: int, host: str, family: int) -> None:
    """Eight clients send 20 names each, twice (slow path then hot path); every answer must be right."""
    loop = asyncio.get_running_loop()
    socks = []
    for _ in range(8):
        c = socket.socket(family, socket.SOCK_DGRAM)
        c.bind((host, 0))
        c.setblocking(False)
        socks.append(c)
    try:
        for _ in range(2):
            for k, c in enumerate(socks):
                for i in range(1, 21):
                    q = DNSRecord.question(f"h{i}.example.org")
                    q.header.id = k * 100 + i
                    c.sendto(q.pack(), (host, port))
            for k, c in enumerate(socks):
                seen = set()
                while len(seen) < 20:
                    data = await asyncio.wait_for(loop.sock_recv(c, 512), 5)
                    reply = DNSRecord.parse(data)
                    i = reply.header.id - k * 100
                    assert str(reply.q.qname) == f"h{i}.example.org."
                    assert [str(r.rdata) for r in reply.rr] == [f"10.0.0.{i}"]
                    seen.add(i)
    finally:
        for c in socks:
            c.close()



def test_replies_written_before_a_failing_slow_path_still_go_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        client.bind(("127.0.0.1", 0))
        client.settimeout(2)
        batch = Batch(server, slots=4, size=64, client=client_address)
        for payload in (b"fast1", b"slow2", b"fast3"):
            client.sendto(payload, server.getsockname())

        def submit(data: bytes, client_: tuple[str, int], proto: str, send: object, raw: bytes) -> bytes | None:
            if data.startswith(b"fast"):
                return b"re:" + data
            raise RuntimeError("a bug on the slow path")

        # Loopback delivers on sendto: all three are waiting, and one batch reads them.
        with pytest.raises(RuntimeError):
            batch.serve(submit, lambda out, raw: None)
        assert client.recv(64) == b"re:fast1"  # written before the slow path raised, sent all the same
