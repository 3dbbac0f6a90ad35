"""The relay path without a task (Dispatcher.submit -> Stanza.relay_start): every outcome the task
path has, reached through callbacks, including retries that carry on in a task after a failed first try."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from dnslib import RCODE, DNSRecord

from dnsplugins.forward import Forward
from tests.dnstest import Case, Served, serve
from tests.upstreams import FakeUpstream


def forward_of(s: Served) -> Forward:
    return next(p for p in s.config.plugins if isinstance(p, Forward))


def start(s: Served, case: Case, proto: str = "udp") -> tuple[bool, asyncio.Future[bytes]]:
    """Submit the query as a listener does: (whether it was relayed without a task, the reply to come).

    A query that needs a task (to open a channel, for TCP, for `next`) is relayed in one of forward's own."""
    fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    before = len(asyncio.all_tasks())
    out = s.dispatcher.submit(bytes(case.message().pack()), case.client, proto,
                              lambda out, dest: fut.set_result(out), None)
    assert out is None  # a forward-only block has no hot path
    return len(asyncio.all_tasks()) == before, fut


async def relay_now(s: Served, case: Case) -> DNSRecord:
    started, fut = start(s, case)
    assert started, case.qname
    reply = DNSRecord.parse(await asyncio.wait_for(fut, 10))
    assert reply.header.id == 4321
    assert str(reply.q.qname) == case.qname
    return reply


@dataclass
class RelayCase:
    """A query on the relay path and what the client and each upstream should see."""

    qname: str
    rcode: str
    answer: list[str] = field(default_factory=list)
    asked: tuple[int, int] = (1, 0)  # how many times each upstream saw the name
    bufsize: int | None = 1232


CASES = [
    RelayCase("Ok.Example.", "NOERROR", ["192.0.2.1"]),
    RelayCase("plain.example.", "NOERROR", ["192.0.2.1"], bufsize=None),
    RelayCase("mismatch.example.", "FORMERR"),  # a reply for another question
    RelayCase("noqr.example.", "FORMERR"),  # not a response at all
    RelayCase("wrongid.example.", "NOERROR", ["192.0.2.1"]),  # a stray ID is ignored, the right one taken
    RelayCase("servfail.example.", "SERVFAIL", asked=(1, 0)),  # the upstream's own rcode, relayed
    RelayCase("garbage.example.", "NOERROR", ["192.0.2.9"], asked=(1, 1)),  # malformed: the next upstream
    RelayCase("drop.example.", "NOERROR", ["192.0.2.9"], asked=(1, 1)),  # timed out: the next upstream
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.qname)
async def test_outcomes(case: RelayCase) -> None:
    async with FakeUpstream() as first, FakeUpstream(mode="ok", answer="192.0.2.9") as second, \
            serve(f". {{\n forward . {first.addr} {second.addr} {{\n policy sequential\n }}\n}}") as s:
        forward_of(s).stanzas[0].read_timeout = 0.3
        await s.query(Case("warm.example.", "A"))  # the task path opens the UDP channels
        reply = await relay_now(s, Case(case.qname, "A", bufsize=case.bufsize))
        assert RCODE.get(reply.header.rcode) == case.rcode
        assert [str(r.rdata) for r in reply.rr] == case.answer
        assert [(r.rtype, r.rclass) for r in reply.ar] == ([(41, case.bufsize)] if case.bufsize else [])
        low = case.qname.lower().rstrip(".") + "."
        assert (first.names().count(low), second.names().count(low)) == case.asked


# The upstream's additional records -> what the client gets there: the upstream's OPT never, ours when
# it sent one (its size echoed), other records kept. (upstream's additional, client's EDNS size, want)
ADDITIONAL = [
    ([], 1232, [(41, 1232)]),
    (["opt"], 1232, [(41, 1232)]),  # the usual: the upstream echoes EDNS, with its own size
    (["opt"], None, []),
    (["glue", "opt"], 1232, [(1, 1), (41, 1232)]),
    (["glue", "opt"], None, [(1, 1)]),
    (["opt", "glue"], 1232, [(1, 1), (41, 1232)]),  # OPT not last: found by the server's own walk
    (["glue"], 1232, [(1, 1), (41, 1232)]),
]


@pytest.mark.parametrize(("additional", "bufsize", "want"), ADDITIONAL)
async def test_the_client_sees_our_opt_and_the_upstreams_other_records(additional: list[str], bufsize: int | None,
                                                                      want: list[tuple[int, int]]) -> None:
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr}\n}}") as s:
        await s.query(Case("warm.example.", "A"))
        up.additional = additional
        reply = await relay_now(s, Case("ok.example.", "A", bufsize=bufsize))
        assert [str(r.rdata) for r in reply.rr] == ["192.0.2.1"]
        assert [(r.rtype, r.rclass) for r in reply.ar] == want
        assert all(str(r.rdata) == "192.0.2.53" for r in reply.ar if r.rtype == 1)


async def test_every_upstream_down_is_servfail_within_the_deadline() -> None:
    async with FakeUpstream(mode="drop") as a, FakeUpstream(mode="drop") as b, \
            serve(f". {{\n errors\n forward . {a.addr} {b.addr}\n}}") as s:
        st = forward_of(s).stanzas[0]
        st.read_timeout, st.deadline = 0.2, 0.2
        a.mode = b.mode = "ok"
        for i in range(100):  # random policy: warm until both UDP channels are open
            await s.query(Case(f"warm{i}.example.", "A"))
            if a.asked() and b.asked():
                break
        a.mode = b.mode = "drop"
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        reply = await relay_now(s, Case("x.example.", "A"))
        assert reply.header.rcode == 2
        assert loop.time() - t0 < 1.0
        assert st.concurrent == 0  # every slot given back


async def test_max_concurrent_refuses_beyond_the_limit() -> None:
    async with FakeUpstream(delay=0.3) as up, \
            serve(f". {{\n forward . {up.addr} {{\n max_concurrent 1\n }}\n}}") as s:
        await s.query(Case("warm.example.", "A"))
        started, slow = start(s, Case("slow.example.", "A"))
        assert started
        refused = await relay_now(s, Case("ok.example.", "A"))
        assert refused.header.rcode == 5
        assert DNSRecord.parse(await asyncio.wait_for(slow, 5)).header.rcode == 0
        assert forward_of(s).stanzas[0].concurrent == 0


async def test_not_started_where_the_task_path_is_needed() -> None:
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr}\n}}") as s:
        # Before any query the UDP channel is not open yet: the task path opens it.
        assert start(s, Case("ok.example.", "A"))[0] is False
        await s.query(Case("warm.example.", "A"))
        assert start(s, Case("ok.example.", "A"), proto="tcp")[0] is False  # TCP clients keep TCP
        started, fut = start(s, Case("ok.example.", "A"))
        assert started
        assert DNSRecord.parse(await fut).header.rcode == 0
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr} {{\n force_tcp\n }}\n}}") as s:
        await s.query(Case("warm.example.", "A"))
        assert start(s, Case("ok.example.", "A"))[0] is False


async def test_a_failing_reply_callback_does_not_break_the_upstream_channel(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeUpstream() as up, serve(f". {{\n forward . {up.addr}\n}}") as s:
        await s.query(Case("warm.example.", "A"))

        def broken(out: bytes, dest: object) -> None:
            raise RuntimeError("client socket gone")

        assert s.dispatcher.submit(bytes(Case("ok.example.", "A").message().pack()), ("127.0.0.1", 1), "udp",
                                   broken, None) is None  # relayed: the reply goes to `broken`
        for _ in range(50):
            if "reply callback failed" in caplog.text:
                break
            await asyncio.sleep(0.02)
        assert "reply callback failed" in caplog.text
        reply = await relay_now(s, Case("ok.example.", "A"))  # the same channel still carries queries
        assert [str(r.rdata) for r in reply.rr] == ["192.0.2.1"]


async def test_several_stanzas_start_unless_next_may_hand_on() -> None:
    async with FakeUpstream(answer="192.0.2.5") as inner, FakeUpstream(mode="nxdomain") as nx, \
            FakeUpstream(answer="192.0.2.9") as outer, \
            serve(f". {{\n forward inner.example {inner.addr}\n forward next.example {nx.addr} {{\n"
                  f"  next NXDOMAIN\n }}\n forward . {outer.addr}\n}}") as s:
        for name in ("warm.inner.example.", "warm.next.example.", "warm.example."):
            await s.query(Case(name, "A"))  # the task path opens the UDP channels
        # The first stanza that takes the name answers, as `relay` would have it.
        assert [str(r.rdata) for r in (await relay_now(s, Case("a.inner.example.", "A"))).rr] == ["192.0.2.5"]
        assert [str(r.rdata) for r in (await relay_now(s, Case("a.elsewhere.", "A"))).rr] == ["192.0.2.9"]
        # A stanza whose `next` may hand the reply on to the following one: only the task path does that.
        assert start(s, Case("a.next.example.", "A"))[0] is False
        r = await s.query(Case("a.next.example.", "A"))
        assert s.last_relay
        assert [str(x.rdata) for x in r.rr] == ["192.0.2.9"]
        # That answer is remembered: the same question is not read and checked again to learn it.
        walks: list[bytes] = []
        d = s.dispatcher
        real = d._relay_target
        d._relay_target = lambda data: walks.append(data) or real(data)  # type: ignore[method-assign]
        assert start(s, Case("a.next.example.", "A"))[0] is False
        assert start(s, Case("b.next.example.", "A"))[0] is False
        assert len(walks) == 1  # only the new name
