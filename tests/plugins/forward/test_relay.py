"""The relay path: a block whose chain only forwards answers from bytes, exactly as the chain would."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.dnstest import Case, serve
from tests.upstreams import Dnsmasq, dead_address


@pytest.fixture(scope="module")
def upstream() -> Iterator[Dnsmasq]:
    with Dnsmasq("--address=/relay.test/192.0.2.7") as d:
        yield d


async def test_forward_only_block_relays_bytes(upstream: Dnsmasq) -> None:
    async with serve(f". {{\n errors\n prometheus localhost:0\n forward . {upstream.addr}\n}}") as s:
        r = await s.query(Case("A.Relay.TEST.", "A", bufsize=1400))
        assert s.last_relay
        assert not s.last_fast
        assert str(r.q.qname) == "A.Relay.TEST."
        assert [str(x.rdata) for x in r.rr] == ["192.0.2.7"]
        assert [(x.rtype, x.rclass) for x in r.ar] == [(41, 1400)]  # our OPT, the client's size
        r = await s.query(Case("b.relay.test.", "A"))
        assert s.last_relay
        assert r.ar == []
        m = s.dispatcher.metrics
        assert m.totals()[2].get((s.dispatcher.label, ".", "NOERROR", "forward"), 0) >= 2


async def test_not_relayed_when_the_chain_must_run(upstream: Dnsmasq) -> None:
    for before in ("cache 30", "rewrite name exact x.relay.test y.relay.test", "loadbalance"):
        async with serve(f". {{\n {before}\n forward . {upstream.addr}\n}}") as s:
            r = await s.query(Case("x.relay.test.", "A"))
            assert not s.last_relay
            assert r.header.rcode == 0


async def test_relayed_queries_are_logged(upstream: Dnsmasq, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    async with serve(f". {{\n log\n forward . {upstream.addr}\n}}") as s:
        await s.query(Case("c.relay.test.", "A"))
        assert s.last_relay
    line = next(m for m in caplog.messages if "c.relay.test." in m)
    assert "\"A IN c.relay.test. udp " in line
    assert " NOERROR qr,aa,rd,ra " in line


async def test_dead_upstream_servfail_and_errors_logs(caplog: pytest.LogCaptureFixture) -> None:
    async with serve(f". {{\n errors\n forward . {dead_address()}\n}}") as s:
        r = await s.query(Case("d.relay.test.", "A", bufsize=1232))
        assert s.last_relay
        assert r.header.rcode == 2
        assert str(r.q.qname) == "d.relay.test."
        assert [x.rtype for x in r.ar] == [41]
    assert any(m.startswith("[ERROR] plugin/errors: 2 d.relay.test. A: plugin/forward:") for m in caplog.messages)


async def test_skippable_plugins_keep_their_query_types(upstream: Dnsmasq) -> None:
    # `any` answers ANY itself (RFC 8482) even on a block that otherwise relays to the upstream.
    async with serve(f". {{\n any\n forward . {upstream.addr}\n}}") as s:
        r = await s.query(Case("e.relay.test.", "ANY"))
        assert not s.last_relay
        assert [str(x.rdata) for x in r.rr] == ['"ANY obsoleted" "See RFC 8482"']
        await s.query(Case("e.relay.test.", "A"))
        assert s.last_relay
    # `loop` does not turn the relay path off; its HINFO probes still go through the chain.
    async with serve(f". {{\n loop\n forward . {upstream.addr}\n}}") as s:
        await s.query(Case("f.relay.test.", "A"))
        assert s.last_relay
        await s.query(Case("f.relay.test.", "HINFO"))
        assert not s.last_relay
