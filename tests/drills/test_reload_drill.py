"""Drill: 100 Corefile reloads (SIGUSR1, as CoreDNS reloads at once) under a steady dnsperf load, with a
broken Corefile in the middle. No query is lost, every answer is NOERROR, the broken one leaves the old
configuration serving, and the reload after it is taken."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from tests.drills.kit import DnsPerf, queries_file, rss_kb
from tests.server import DnsServer

pytestmark = pytest.mark.timeout(90)

RELOADS = 100
BROKEN_AT = 50


def corefile(version: int) -> str:
    # Each version answers v.drill.test differently, so every reload changes the digest (an unchanged
    # Corefile is not reloaded) and which configuration answers is visible.
    return f""".:{{port}} {{
    bind 127.0.0.1
    hosts {{
        10.0.{version // 250}.{version % 250 + 1} v.drill.test
    }}
}}
"""


def answered(srv: DnsServer) -> str:
    return srv.dig("v.drill.test", "A").rdata()[0]


@pytest.mark.slow
async def test_hundred_reloads_lose_nothing(tmp_path: Path) -> None:
    srv = await asyncio.to_thread(DnsServer, corefile(0), tmp_path)
    try:
        assert srv.proc.pid is not None
        queries = queries_file(tmp_path / "q", "v.drill.test A")
        perf = await DnsPerf(srv.port, queries, 6, qps=2000).start()
        await asyncio.sleep(0.5)
        rss_before = rss_kb(srv.proc.pid)
        start = time.monotonic()
        slowest = 0.0
        for i in range(1, RELOADS + 1):
            done = sum("Reloading complete" in line for line in srv.drain())
            failed = sum("Restart failed" in line for line in srv.lines)
            text = corefile(i).replace("{port}", str(srv.port))
            if i == BROKEN_AT:
                text = text.replace("hosts {", "hosts {\n        fallthrough nope.\n        bogus_option\n")
            srv.corefile.write_text(text)
            t0 = time.monotonic()
            os.kill(srv.proc.pid, signal.SIGUSR1)  # our own child, by its PID
            want = ("Restart failed", failed + 1) if i == BROKEN_AT else ("Reloading complete", done + 1)
            while sum(want[0] in line for line in srv.drain()) < want[1]:
                assert time.monotonic() - t0 < 10, "\n".join(srv.lines[-20:])
                await asyncio.sleep(0.01)
            slowest = max(slowest, time.monotonic() - t0)
            if i == BROKEN_AT:
                # Kept on the old configuration: the last good version still answers.
                assert await asyncio.to_thread(answered, srv) == f"10.0.0.{i}"
        took = time.monotonic() - start
        assert await asyncio.to_thread(answered, srv) == f"10.0.{RELOADS // 250}.{RELOADS % 250 + 1}"
        res = await perf.result()
        rss_after = rss_kb(srv.proc.pid)
        assert took < 5, f"the reloads outlasted the load ({took:.1f}s)"
        assert res.lost == 0, res.out
        assert set(res.rcodes) == {"NOERROR"}, res.out
        print(f"\nDRILL reload: reloads={RELOADS} (1 broken, kept old) in {took:.1f}s slowest={slowest * 1000:.0f}ms "
              f"queries={res.completed} lost={res.lost} rcodes={res.rcodes} max_latency_ms={res.max_ms:.1f} "
              f"rss_kb {rss_before}->{rss_after}")
    finally:
        assert srv.stop() == 0
