"""Test helpers in the spirit of CoreDNS's test.Case tables.

`Case` describes a query and the reply expected; `serve()` builds a configuration from Corefile
text and runs queries through the real Dispatcher (zone selection, chain, scrub, metrics) without
opening sockets. Integration tests use real `dig` against a real listener instead (see `server.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, DNSQuestion, DNSRecord

from corefile import parse
from dnsserver.config import Config, build
from dnsserver.dispatch import Dispatcher, RelayState
from dnsserver.metrics import process_metrics

P = TypeVar("P")


def plugin_in(cls: type[P], corefile: str | Config | Served, filename: str = "Corefile") -> P:
    """The first `cls` plugin of the first block of `corefile`: Corefile text (built here), a built
    configuration or a served one."""
    if isinstance(corefile, str):
        corefile = build(parse(corefile, filename), 53)
    cfg = corefile.config if isinstance(corefile, Served) else corefile
    return next(p for p in cfg.blocks[0].plugins if isinstance(p, cls))


def rr(text: str) -> RR:
    """One record from zone-file text, e.g. rr("example.org. 5 IN A 1.2.3.4")."""
    records = RR.fromZone(text)
    assert len(records) == 1, text
    return records[0]


def rr_text(r: RR) -> str:
    """A record as canonical text for comparison: owner lower-cased, single spaces."""
    return " ".join(str(r).replace("\t", " ").split()).lower()


@dataclass
class Case:
    """A query and the reply a test expects: rcode and each section's records."""

    qname: str
    qtype: str = "A"
    rcode: str = "NOERROR"
    answer: list[str] = field(default_factory=list)
    ns: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    qclass: str = "IN"
    do: bool = False
    bufsize: int | None = None
    proto: str = "udp"
    client: tuple[str, int] = ("10.240.0.1", 40212)
    aa: bool | None = None
    tc: bool | None = None
    ordered: bool = False  # compare sections in order (loadbalance tests leave this False)

    def message(self) -> DNSRecord:
        q = DNSRecord(q=DNSQuestion(self.qname, getattr(QTYPE, self.qtype), getattr(CLASS, self.qclass)))
        q.header.id = 4321
        if self.bufsize is not None or self.do:
            q.add_ar(EDNS0(udp_len=self.bufsize or 512, flags="do" if self.do else ""))
        return q


def section(records: list[RR]) -> list[str]:
    return [rr_text(r) for r in records if r.rtype != QTYPE.OPT]


def check(case: Case, reply: DNSRecord) -> None:
    """Assert that `reply` is what `case` expects; the message names the case and the section."""
    got_rcode = RCODE.get(reply.header.rcode)
    assert got_rcode == case.rcode, f"{case.qname}/{case.qtype}: rcode {got_rcode}, want {case.rcode}\n{reply}"
    for name, want, got in (("answer", case.answer, reply.rr), ("ns", case.ns, reply.auth),
                            ("extra", case.extra, reply.ar)):
        want_t = [rr_text(rr(w)) for w in want]
        got_t = section(got)
        if not case.ordered:
            want_t, got_t = sorted(want_t), sorted(got_t)
        assert got_t == want_t, f"{case.qname}/{case.qtype}: {name} section\n got  {got_t}\n want {want_t}"
    if case.aa is not None:
        assert bool(reply.header.aa) == case.aa, f"{case.qname}: aa={reply.header.aa}"
    if case.tc is not None:
        assert bool(reply.header.tc) == case.tc, f"{case.qname}: tc={reply.header.tc}"


class _Tracing(Dispatcher):
    """The real Dispatcher, telling the harness which path answered the last query."""

    relayed = False

    def _relayed(self, state: RelayState, reply: bytes | Exception | None) -> None:
        self.relayed = reply is not None
        super()._relayed(state, reply)


def _settle(out: bytes | None, fut: asyncio.Future[bytes | None]) -> None:
    if not fut.done():
        fut.set_result(out)


class Served:
    """A configuration with its plugins started, queried through one listener's Dispatcher."""

    def __init__(self, config: Config) -> None:
        self.config = config
        key = next(iter(config.listeners))
        self.dispatcher: Dispatcher = _Tracing(f"{key[0]}://{key[1]}:{key[2]}", config.listeners[key],
                                               process_metrics(), "127.0.0.1")
        self.last_fast = False  # whether the last query was answered on the hot path
        self.last_relay = False  # ... or relayed as bytes (forward-only blocks)

    async def wire(self, data: bytes, proto: str = "udp", client: tuple[str, int] = ("10.240.0.1", 40212),
                   ) -> bytes | None:
        # As the listeners do: the one entry, whichever path it takes.
        d = self.dispatcher
        assert isinstance(d, _Tracing)
        d.relayed = False
        fut: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        out = d.submit(bytes(data), client, proto, _settle, fut)
        self.last_fast = out is not None
        if out is None:
            out = await fut
        self.last_relay = d.relayed
        return out

    async def chain(self, data: bytes, proto: str = "udp", client: tuple[str, int] = ("10.240.0.1", 40212),
                    ) -> bytes | None:
        """The whole chain, whatever the other paths could do: what every path must give."""
        return await self.dispatcher.handle(bytes(data), client, proto, "127.0.0.1")

    async def query(self, case: Case) -> DNSRecord:
        out = await self.wire(case.message().pack(), case.proto, case.client)
        assert out is not None, f"{case.qname}: no reply"
        return DNSRecord.parse(out)

    async def run(self, cases: list[Case]) -> None:
        for c in cases:
            check(c, await self.query(c))


@contextlib.asynccontextmanager
async def serve(corefile: str, filename: str = "Corefile") -> AsyncIterator[Served]:
    """Build `corefile` (text) and start its plugins; stop them afterwards."""
    cfg = build(parse(corefile, filename), 53)
    for p in cfg.plugins:
        await p.start()
    try:
        yield Served(cfg)
    finally:
        for p in reversed(cfg.plugins):
            await p.stop()
