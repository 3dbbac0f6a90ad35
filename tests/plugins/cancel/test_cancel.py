"""cancel: the deadline through the server (a slow upstream cut short), the paths it may skip, the parse table."""

from __future__ import annotations

import asyncio
import time

import pytest
from dnslib import QTYPE, DNSQuestion, DNSRecord

from corefile import CorefileError
from dnsplugins.cancel import Cancel, DeadlineExceeded
from dnsserver.request import Request
from tests.dnstest import plugin_in, serve
from tests.upstreams import FakeUpstream


def query(name: str) -> bytes:
    out: bytes = DNSRecord(q=DNSQuestion(name, QTYPE.A)).pack()
    return out


@pytest.mark.parametrize(("timeout", "delay", "rcode"), [("200ms", 1.0, 2), ("2s", 0.1, 0)])
async def test_deadline_through_the_server(timeout: str, delay: float, rcode: int) -> None:
    async with (
        FakeUpstream(mode="slow", delay=delay) as up,
        serve(f". {{\n cancel {timeout}\n forward . {up.addr}\n}}") as s,
    ):
        start = time.monotonic()
        out = await s.wire(query("slow.example."))
        assert out is not None
        assert DNSRecord.parse(out).header.rcode == rcode
        if rcode:
            assert time.monotonic() - start < delay  # cut short, not waited out
        assert not s.last_relay  # a deadline shorter than forward's own keeps the relay path off


async def test_the_rest_of_the_chain_is_cancelled() -> None:
    cancelled = asyncio.Event()
    msg = DNSRecord(q=DNSQuestion("x.example.", QTYPE.A))
    req = Request(msg, msg.pack(), ("127.0.0.1", 1), "udp", "127.0.0.1", "dns://:53")

    async def slow(_: Request) -> DNSRecord | None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return None

    with pytest.raises(DeadlineExceeded, match="context deadline exceeded"):
        await Cancel(0.05).serve(req, slow)
    assert cancelled.is_set()


async def test_an_inner_timeout_is_not_the_deadline() -> None:
    msg = DNSRecord(q=DNSQuestion("x.example.", QTYPE.A))
    req = Request(msg, msg.pack(), ("127.0.0.1", 1), "udp", "127.0.0.1", "dns://:53")

    async def times_out(_: Request) -> DNSRecord | None:
        raise TimeoutError("upstream")

    with pytest.raises(TimeoutError, match="upstream"):
        await Cancel(5).serve(req, times_out)


def cancel_of(body: str) -> Cancel:
    return plugin_in(Cancel, f". {{\n{body}\n}}")


@pytest.mark.parametrize(
    ("body", "timeout", "fast_safe"),
    [("cancel", 5.001, True), ("cancel 1s", 1.0, False), ("cancel 1m", 60.0, True), ("cancel 250ms", 0.25, False)],
)
def test_parse(body: str, timeout: float, fast_safe: bool) -> None:
    c = cancel_of(body)
    assert (c.timeout, c.fast_safe) == (timeout, fast_safe)


C = "Corefile:2 - plugin/cancel: "
PARSE_ERRORS = [
    ("cancel 1s 2s", C + "Wrong argument count or unexpected line ending after '2s'"),
    ("cancel soon", C + 'invalid duration: "soon"'),
    ("cancel -1s", C + 'invalid negative duration: "-1s"'),
    ("cancel 0s", C + 'invalid negative duration: "0s"'),
]


@pytest.mark.parametrize(("body", "message"), PARSE_ERRORS)
def test_parse_errors(body: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        cancel_of(body)
    assert str(e.value).startswith(message)


async def test_the_default_deadline_keeps_the_hot_path() -> None:
    async with serve("example.org {\n cancel\n hosts {\n 192.0.2.1 www.example.org\n }\n}") as s:
        for _ in range(2):
            assert await s.wire(query("www.example.org.")) is not None
        assert s.last_fast
