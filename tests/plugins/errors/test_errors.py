"""errors: the parse table, the error line, SERVFAIL to the client, and consolidation on a fake clock."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

import pytest
from dnslib import DNSRecord

from corefile import CorefileError, parse
from dnsplugins import errors as errorsplugin
from dnsplugins.errors import Consolidate, Errors, ErrorsConfig, go_duration
from dnsplugins.whoami import Whoami
from dnsserver.config import build
from dnsserver.request import Request
from tests.dnstest import Case, Served, plugin_in, serve


def errors_config(text: str) -> ErrorsConfig:
    return plugin_in(Errors, text).config


def C(period: float, regexp: str, level: str = "error", show_first: bool = False) -> Consolidate:
    return Consolidate(period, regexp, level, show_first)


PARSE_CASES = [
    (". {\n errors\n}", ErrorsConfig()),
    (". {\n errors stdout\n}", ErrorsConfig()),
    (". {\n errors {\n  stacktrace\n }\n}", ErrorsConfig(stacktrace=True)),
    (". {\n errors {\n  consolidate 5m \".* i/o timeout$\"\n }\n}",
     ErrorsConfig(consolidate=[C(300, ".* i/o timeout$")])),
    (". {\n errors {\n  consolidate 30s ^Failed warning\n  consolidate 1m30s x show_first\n }\n}",
     ErrorsConfig(consolidate=[C(30, "^Failed", "warning"), C(90, "x", "error", True)])),
    # LEVEL and show_first in either order.
    (". {\n errors {\n  consolidate 1s x show_first info\n }\n}",
     ErrorsConfig(consolidate=[C(1, "x", "info", True)])),
    (". {\n errors {\n  consolidate 20ms x debug\n }\n}", ErrorsConfig(consolidate=[C(0.02, "x", "debug")])),
]


@pytest.mark.parametrize(("corefile", "want"), PARSE_CASES)
def test_parse(corefile: str, want: ErrorsConfig) -> None:
    assert errors_config(corefile) == want


PARSE_ERRORS = [
    (". {\n errors stderr\n}", "Corefile:2 - plugin/errors: invalid log file: stderr"),
    (". {\n errors stdout more\n}",
     "Corefile:2 - plugin/errors: Wrong argument count or unexpected line ending after 'more'"),
    (". {\n errors {\n  stacktrace yes\n }\n}",
     "Corefile:3 - plugin/errors: Wrong argument count or unexpected line ending after 'yes'"),
    (". {\n errors {\n  consolidate 5m\n }\n}",
     "Corefile:3 - plugin/errors: Wrong argument count or unexpected line ending after '5m'"),
    (". {\n errors {\n  consolidate 5m x error show_first extra\n }\n}",
     "Corefile:3 - plugin/errors: Wrong argument count or unexpected line ending after 'extra'"),
    (". {\n errors {\n  consolidate 5m x error info\n }\n}",
     "Corefile:3 - plugin/errors: Wrong argument count or unexpected line ending after 'info'"),
    (". {\n errors {\n  consolidate 5m x loud\n }\n}",
     "Corefile:3 - plugin/errors: Wrong argument count or unexpected line ending after 'loud'"),
    (". {\n errors {\n  consolidate 5x x\n }\n}", 'Corefile:3 - plugin/errors: time: invalid duration "5x"'),
    (". {\n errors {\n  consolidate 0s x\n }\n}",
     "Corefile:3 - plugin/errors: consolidate period must be positive: 0s"),
    (". {\n errors {\n  consolidate 5m (\n }\n}", "Corefile:3 - plugin/errors: invalid regexp '('"),
    (". {\n errors {\n  consolidate 5m " + "a" * 10001 + "\n }\n}",
     "Corefile:3 - plugin/errors: consolidate regexp is longer than 10000 characters"),
    (". {\n errors {\n  loglevel debug\n }\n}", "Corefile:3 - plugin/errors: unknown property 'loglevel'"),
    (". {\n errors\n errors\n}",
     "Corefile:3 - plugin/errors: this plugin can only be used once per Server Block"),
]


@pytest.mark.parametrize(("corefile", "message"), PARSE_ERRORS)
def test_parse_errors(corefile: str, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        errors_config(corefile)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize(("seconds", "text"), [
    (30, "30s"), (300, "5m0s"), (3600, "1h0m0s"), (5400, "1h30m0s"), (90, "1m30s"), (1.5, "1.5s"),
    (0.02, "20ms"), (0.0015, "1.5ms"), (0.0000015, "1.5µs"), (5e-9, "5ns"), (0, "0s"), (3723.25, "1h2m3.25s"),
])
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.fixture
def failing_whoami(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """Make whoami raise the exceptions put in the returned list (one per query), or "boom"."""
    queue: list[BaseException] = []

    async def fail(self: Whoami, req: Request, next: object) -> DNSRecord:
        raise queue.pop(0) if queue else RuntimeError("boom")

    monkeypatch.setattr(Whoami, "serve", fail)
    return queue


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "portolan" and r.levelno >= logging.DEBUG]


SERVFAIL = Case("a.example.org.", rcode="SERVFAIL")


async def test_error_is_logged_and_answered_servfail(failing_whoami: list[BaseException],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="portolan")
    async with serve(". {\n errors\n whoami\n}") as s:
        await s.run([SERVFAIL, Case("B.Example.ORG.", "AAAA", rcode="SERVFAIL")])
    assert logged(caplog) == [
        "[ERROR] plugin/errors: 2 a.example.org. A: plugin/whoami: boom",
        "[ERROR] plugin/errors: 2 b.example.org. AAAA: plugin/whoami: boom",
    ]
    assert all(r.exc_info is None for r in caplog.records)


async def test_without_errors_nothing_is_logged_as_error(failing_whoami: list[BaseException],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    async with serve(". {\n whoami\n}") as s:
        await s.run([SERVFAIL])
    assert logged(caplog) == []


async def test_empty_exception_text_names_its_type(failing_whoami: list[BaseException],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    failing_whoami.append(TimeoutError())
    caplog.set_level(logging.INFO, logger="portolan")
    async with serve(". {\n errors\n whoami\n}") as s:
        await s.run([SERVFAIL])
    assert logged(caplog) == ["[ERROR] plugin/errors: 2 a.example.org. A: plugin/whoami: TimeoutError"]


async def test_stacktrace(failing_whoami: list[BaseException], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    async with serve(". {\n errors {\n  stacktrace\n }\n whoami\n}") as s:
        await s.run([SERVFAIL])
    [rec] = [r for r in caplog.records if r.name == "portolan"]
    assert rec.exc_info is not None
    assert "RuntimeError: boom" in caplog.text


async def test_no_plugin_answered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    async with serve(". {\n errors\n hosts {\n  10.0.0.1 a.example.org\n  fallthrough\n }\n}") as s:
        await s.run([Case("a.example.org.", answer=["a.example.org. 3600 IN A 10.0.0.1"]),
                     Case("b.example.org.", rcode="SERVFAIL")])
    assert logged(caplog) == ["[ERROR] plugin/errors: 2 b.example.org. A: no next plugin found"]


class FakeTimers:
    """A scheduler for Errors: nothing fires until the test says so."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None], FakeTimers.Handle]] = []

    class Handle:
        def __init__(self) -> None:
            self.cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    def __call__(self, delay: float, callback: Callable[[], None]) -> FakeTimers.Handle:
        h = FakeTimers.Handle()
        self.pending.append((delay, callback, h))
        return h

    def fire(self) -> list[float]:
        due, self.pending = self.pending, []
        for _, cb, h in due:
            if not h.cancelled:
                cb()
        return [d for d, _, _ in due]


def errors_plugin(s: Served) -> Errors:
    return next(p for p in s.config.plugins if isinstance(p, Errors))


async def run_errors(corefile: str, exceptions: list[BaseException], queue: list[BaseException],
                     caplog: pytest.LogCaptureFixture, fire: int = 1) -> tuple[list[str], list[float]]:
    """Send one failing query per exception, then end the period `fire` times; the log and the delays."""
    caplog.set_level(logging.DEBUG, logger="portolan")
    timers = FakeTimers()
    delays: list[float] = []
    async with serve(corefile) as s:
        errors_plugin(s)._schedule = timers
        queue.extend(exceptions)
        await s.run([SERVFAIL] * len(exceptions))
        for _ in range(fire):
            delays += timers.fire()
    return logged(caplog), delays


def block(*lines: str) -> str:
    return ". {\n errors {\n" + "".join(f"  {line}\n" for line in lines) + " }\n whoami\n}"


E = RuntimeError
CONSOLIDATE_CASES = [
    ("counted, one summary at the default level",
     block('consolidate 5m "^plugin/whoami: boom$"'), [E("boom")] * 3,
     ["[ERROR] plugin/errors: 3 errors like '^plugin/whoami: boom$' occurred in last 5m0s"], [300]),
    ("level warning",
     block("consolidate 30s boom warning"), [E("boom")] * 2,
     ["[WARNING] plugin/errors: 2 errors like 'boom' occurred in last 30s"], [30]),
    ("CoreDNS-style pattern anchored on the cause alone",
     block("consolidate 30s ^boom$ info"), [E("boom")] * 2,
     ["[INFO] plugin/errors: 2 errors like '^boom$' occurred in last 30s"], [30]),
    ("not matching: logged one by one",
     block("consolidate 30s timeout"), [E("boom"), E("read timeout"), E("boom")],
     ["[ERROR] plugin/errors: 2 a.example.org. A: plugin/whoami: boom",
      "[ERROR] plugin/errors: 2 a.example.org. A: plugin/whoami: boom",
      "[ERROR] plugin/errors: 1 errors like 'timeout' occurred in last 30s"], [30]),
    ("first matching pattern wins",
     block("consolidate 1m boom warning", "consolidate 2m .* info"), [E("boom"), E("bang"), E("boom")],
     ["[WARNING] plugin/errors: 2 errors like 'boom' occurred in last 1m0s",
      "[INFO] plugin/errors: 1 errors like '.*' occurred in last 2m0s"], [60, 120]),
    ("show_first: the first in full, then the total",
     block("consolidate 30s boom warning show_first"), [E("boom")] * 3,
     ["[WARNING] plugin/errors: 2 a.example.org. A: plugin/whoami: boom",
      "[WARNING] plugin/errors: 3 errors like 'boom' occurred in last 30s"], [30]),
    ("show_first with a single error: no summary",
     block("consolidate 30s boom show_first"), [E("boom")],
     ["[ERROR] plugin/errors: 2 a.example.org. A: plugin/whoami: boom"], [30]),
    ("debug level lines are debug records",
     block("consolidate 10s boom debug"), [E("boom")] * 2,
     ["[DEBUG] plugin/errors: 2 errors like 'boom' occurred in last 10s"], [10]),
]


@pytest.mark.parametrize(("name", "corefile", "exceptions", "want", "delays"), CONSOLIDATE_CASES,
                         ids=[c[0] for c in CONSOLIDATE_CASES])
async def test_consolidate(name: str, corefile: str, exceptions: list[BaseException], want: list[str],
                           delays: list[float], failing_whoami: list[BaseException],
                           caplog: pytest.LogCaptureFixture) -> None:
    got, got_delays = await run_errors(corefile, exceptions, failing_whoami, caplog)
    assert got == want
    assert got_delays == delays


async def test_consolidate_periods_restart(failing_whoami: list[BaseException],
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    timers = FakeTimers()
    async with serve(block("consolidate 1m boom")) as s:
        errors_plugin(s)._schedule = timers
        await s.run([SERVFAIL] * 2)
        timers.fire()
        assert timers.fire() == []  # nothing counted, nothing scheduled
        await s.run([SERVFAIL])
        timers.fire()
    assert logged(caplog) == ["[ERROR] plugin/errors: 2 errors like 'boom' occurred in last 1m0s",
                              "[ERROR] plugin/errors: 1 errors like 'boom' occurred in last 1m0s"]


async def test_stop_reports_what_was_counted(failing_whoami: list[BaseException],
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    timers = FakeTimers()
    async with serve(block("consolidate 1h boom")) as s:
        errors_plugin(s)._schedule = timers
        await s.run([SERVFAIL] * 4)
        assert logged(caplog) == []
    assert logged(caplog) == ["[ERROR] plugin/errors: 4 errors like 'boom' occurred in last 1h0m0s"]
    assert all(h.cancelled for _, _, h in timers.pending)


async def test_consolidate_with_the_real_clock(failing_whoami: list[BaseException],
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="portolan")
    async with serve(block("consolidate 20ms boom")) as s:
        await s.run([SERVFAIL] * 3)
        for _ in range(100):
            if logged(caplog):
                break
            await asyncio.sleep(0.01)
    assert logged(caplog) == ["[ERROR] plugin/errors: 3 errors like 'boom' occurred in last 20ms"]


def test_docstring_examples_build() -> None:
    blocks = re.findall(r"```corefile\n(.*?)```", errorsplugin.__doc__ or "", re.S)
    assert blocks
    for text in blocks:
        build(parse(text, "Corefile"), 53)
