"""debug: chain errors logged with their traceback, debug messages on while it runs, and the parse table."""

from __future__ import annotations

import logging

import pytest
from dnslib import QTYPE, DNSQuestion, DNSRecord

from corefile import CorefileError, parse
from dnsserver.config import build
from tests.dnstest import serve
from tests.upstreams import dead_address

LOGGER = logging.getLogger("portolan")


@pytest.mark.parametrize("debug", [True, False])
async def test_chain_errors_come_with_their_traceback(debug: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    # forward to a closed port: the upstream's error is raised in the chain, and the client gets SERVFAIL.
    corefile = f". {{\n {'debug' if debug else ''}\n forward . {dead_address()}\n}}"
    async with serve(corefile) as s:
        out = await s.chain(DNSRecord(q=DNSQuestion("x.example.", QTYPE.A)).pack())
        assert out is not None
        assert DNSRecord.parse(out).header.rcode == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "x.example." in r.getMessage()]
    if debug:
        assert len(errors) == 1
        assert errors[0].getMessage().startswith("[ERROR] SERVFAIL x.example. A: plugin/forward: ")
        assert errors[0].exc_info is not None
        assert errors[0].exc_info[2] is not None  # the traceback
    else:
        assert errors == []


async def test_debug_messages_while_it_runs() -> None:
    before = LOGGER.level
    async with serve(". {\n debug\n whoami\n}"), serve("example.org {\n debug\n whoami\n}"):
        assert LOGGER.isEnabledFor(logging.DEBUG)
    assert LOGGER.level == before  # both configurations stopped: back as it was


def test_takes_no_arguments() -> None:
    with pytest.raises(CorefileError) as e:
        build(parse(". {\n debug on\n whoami\n}", "Corefile"), 53)
    assert str(e.value) == "Corefile:2 - plugin/debug: Wrong argument count or unexpected line ending after 'on'"


def test_not_in_the_chain_and_marks_the_block() -> None:
    block = build(parse(". {\n debug\n whoami\n}", "Corefile"), 53).blocks[0]
    assert block.debug
    assert block.names == ["debug", "whoami"]
