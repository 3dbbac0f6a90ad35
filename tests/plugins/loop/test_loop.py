"""loop: the parse table, counting its own probe, and the probe against a real in-process server.

The FATAL exit itself (os._exit) is exercised by the integration test with a real process; here
the plugin's `exit` hook is replaced by a recorder.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from corefile import CorefileError
from dnsplugins import loop as loopplugin
from dnsplugins.loop import Loop
from dnsserver.instance import Instance
from tests.dnstest import Case, plugin_in, serve
from tests.server import free_port
from tests.upstreams import FakeUpstream

pytestmark = pytest.mark.timeout(30)


def loop_of(text: str) -> Loop:
    return plugin_in(Loop, text)


PARSE_CASES = [
    (". {\n loop\n}", "."),
    ("Example.ORG:1053 example.net {\n loop\n}", "example.org."),
    ("10.0.0.0/24 {\n loop\n}", "0.0.10.in-addr.arpa."),
]


@pytest.mark.parametrize(("corefile", "zone"), PARSE_CASES)
def test_parse(corefile: str, zone: str) -> None:
    lp = loop_of(corefile)
    assert lp.zone == zone
    # <random>.<random>.<zone>: two numeric labels, so no real name collides with it.
    assert re.fullmatch(r"\d+\.\d+\." + re.escape(zone.lstrip(".")), lp.qname), lp.qname


PARSE_ERRORS = [
    (". {\n loop now\n}", "Corefile:2 - plugin/loop: Wrong argument count or unexpected line ending after 'now'"),
    (". {\n loop\n loop\n}", "Corefile:3 - plugin/loop: this plugin can only be used once per Server Block"),
]


@pytest.mark.parametrize(("corefile", "message"), PARSE_ERRORS)
def test_parse_errors(corefile: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        loop_of(corefile)
    assert str(e.value) == message


class Exited(Exception):
    """What the recorder raises in place of os._exit, so that a real loop unwinds."""


def recorder(messages: list[str]) -> Callable[[str], None]:
    def exit(message: str) -> None:
        messages.append(message)
        raise Exited(message)

    return exit


async def test_own_probe_seen_three_times_is_fatal() -> None:
    async with serve(". {\n loop\n whoami\n}") as s:
        lp = next(p for p in s.config.plugins if isinstance(p, Loop))
        messages: list[str] = []
        lp.exit = recorder(messages)
        lp.address = ":53"
        probe = Case(
            lp.qname, "HINFO", extra=[f"{lp.qname} 0 IN A 10.240.0.1", f"_udp.{lp.qname} 0 IN SRV 0 0 40212 ."]
        )
        # Other types, other names: not counted, passed on.
        await s.run([Case(lp.qname, "A", extra=probe.extra), probe, probe])
        await s.run(
            [
                Case(
                    "1.2.example.",
                    "HINFO",
                    extra=["1.2.example. 0 IN A 10.240.0.1", "_udp.1.2.example. 0 IN SRV 0 0 40212 ."],
                )
            ]
        )
        assert lp.seen == 2
        assert messages == []
        r = await s.query(Case(lp.qname.upper(), "HINFO"))  # names compare case-insensitively
        assert r.header.rcode == 2  # the recorder raised; a real server would be gone by now
        assert messages == [
            f'Loop (10.240.0.1:40212 -> :53) detected for zone ".", see '
            f'https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO {lp.qname}"'
        ]


async def test_disabled_plugin_counts_nothing() -> None:
    async with serve(". {\n loop\n whoami\n}") as s:
        lp = next(p for p in s.config.plugins if isinstance(p, Loop))
        lp.exit = recorder(messages := [])
        lp.disabled = True
        for _ in range(5):
            await s.query(Case(lp.qname, "HINFO"))
        assert lp.seen == 0
        assert messages == []


async def test_no_instance_no_probe() -> None:
    async with serve(". {\n loop\n whoami\n}") as s:
        lp = next(p for p in s.config.plugins if isinstance(p, Loop))
        assert lp.task is None


async def start_instance(tmp_path: Path, corefile: str, tweak: Callable[[Loop], None]) -> tuple[Instance, Loop]:
    path = tmp_path / "Corefile"
    path.write_text(corefile)
    inst = Instance(str(path), dns_port=0)
    cfg = inst.build(inst.read())
    lp = next(p for p in cfg.plugins if isinstance(p, Loop))
    tweak(lp)
    await inst.start(cfg)
    return inst, lp


async def until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def fast(lp: Loop, messages: list[str]) -> None:
    lp.exit = recorder(messages)
    lp.disable_delay = 0.05
    lp.retry_pause = 0.05
    lp.probe_timeout = 1.0


async def test_answered_probe_disables_the_plugin(tmp_path: Path) -> None:
    messages: list[str] = []
    inst, lp = await start_instance(
        tmp_path, ". {\n bind 127.0.0.1\n loop\n whoami\n}\n", lambda lp: fast(lp, messages)
    )
    try:
        await until(lambda: lp.disabled)
        assert lp.seen == 1
        assert messages == []
        port = inst.listeners[("dns", "127.0.0.1", 0)].port
        assert lp.address == f"127.0.0.1:{port}"
    finally:
        await inst.shutdown()
    assert lp.task is None


async def test_forwarding_to_itself_is_detected(tmp_path: Path) -> None:
    port = free_port()
    messages: list[str] = []
    inst, lp = await start_instance(
        tmp_path, f".:{port} {{\n loop\n forward . 127.0.0.1:{port}\n}}\n", lambda lp: fast(lp, messages)
    )
    try:
        await until(lambda: bool(messages))
        assert re.fullmatch(
            rf'Loop \(127\.0\.0\.1:\d+ -> :{port}\) detected for zone "\.", see '
            rf'https://coredns\.io/plugins/loop#troubleshooting\. Query: "HINFO {re.escape(lp.qname)}"',
            messages[0],
        ), messages[0]
    finally:
        await inst.shutdown()


async def test_unanswered_probe_is_retried_then_answered(tmp_path: Path) -> None:
    """The probe goes to an upstream that is silent at first: no reply in time (forward still waits), no loop.

    (Had forward given up first, its SERVFAIL would have been an answer: any reply ends the probing.)
    """
    messages: list[str] = []
    async with FakeUpstream(mode="drop") as up:

        def tweak(lp: Loop) -> None:
            fast(lp, messages)
            lp.probe_timeout = 0.3

        inst, lp = await start_instance(
            tmp_path,
            f". {{\n bind 127.0.0.1\n loop\n forward . {up.addr} {{\n read_timeout 1s\n"
            f"  max_fails 0\n  max_connect_attempts 1\n }}\n}}\n",
            tweak,
        )
        try:
            await until(lambda: len([s for s in up.seen if s.qtype == "HINFO"]) >= 4)
            assert not lp.disabled
            assert messages == []
            up.mode = None  # the upstream starts answering
            await until(lambda: lp.disabled)
            assert messages == []
        finally:
            await inst.shutdown()


async def test_probe_window_ends_quietly(tmp_path: Path) -> None:
    messages: list[str] = []
    async with FakeUpstream(mode="drop") as up:

        def tweak(lp: Loop) -> None:
            fast(lp, messages)
            lp.probe_window = 0.3
            lp.probe_timeout = 0.05

        inst, lp = await start_instance(
            tmp_path, f". {{\n bind 127.0.0.1\n loop\n forward . {up.addr} {{\n read_timeout 100ms\n }}\n}}\n", tweak
        )
        try:
            await until(lambda: lp.disabled)
            assert lp.task is not None
            assert lp.task.done()
            # Disabled because the window ran out, not because a probe was answered (an answered probe
            # stays counted in `seen`; an unanswered one is forgotten), and without an exit.
            assert lp.task.exception() is None
            assert messages == []
            assert lp.seen == 0
            assert any(s.qtype == "HINFO" for s in up.seen)
        finally:
            await inst.shutdown()


def test_fatal_exit_is_os_exit(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    codes: list[int] = []
    monkeypatch.setattr(loopplugin.os, "_exit", codes.append)
    loopplugin._fatal_exit("Loop (a -> b) detected")
    assert codes == [1]
    assert "[FATAL] plugin/loop: Loop (a -> b) detected" in caplog.messages
