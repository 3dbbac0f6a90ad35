"""Remembered answers (hosts, kubernetes): served from bytes until the plugin's data changes."""

from __future__ import annotations

import os
from pathlib import Path

from tests.dnstest import Case, serve


async def test_hosts_answers_go_hot_and_follow_the_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("10.0.0.1 web.example.org\n")
    async with serve(f". {{\n hosts {hosts} {{\n  reload 0\n  fallthrough\n }}\n whoami\n}}") as s:
        await s.run([Case("web.example.org.", "A", answer=["web.example.org. 3600 IN A 10.0.0.1"])])
        assert not s.last_fast
        await s.run([Case("WEB.example.org.", "A", answer=["WEB.example.org. 3600 IN A 10.0.0.1"])])
        await s.run([Case("WEB.example.org.", "A", answer=["WEB.example.org. 3600 IN A 10.0.0.1"])])
        assert s.last_fast
        # A name hosts passes on (fallthrough to whoami) is never remembered as hosts' answer.
        for _ in range(2):
            r = await s.query(Case("other.example.org.", "A"))
            assert not s.last_fast
            assert r.ar
        # The file changes: the remembered answer is stale at once.
        plugin = next(p for p in s.config.blocks[0].plugins if p.name == "hosts")
        hosts.write_text("10.0.0.2 web.example.org\n")
        os.utime(hosts, ns=(1, 1))  # a different mtime whatever the clock's resolution
        assert plugin.read_hosts()
        r = await s.query(Case("WEB.example.org.", "A"))
        assert not s.last_fast
        assert [str(x.rdata) for x in r.rr] == ["10.0.0.2"]
        r = await s.query(Case("WEB.example.org.", "A"))
        assert s.last_fast
        assert [str(x.rdata) for x in r.rr] == ["10.0.0.2"]


async def test_hot_path_metrics_name_the_plugin_that_holds_the_answer(tmp_path: Path) -> None:
    async with serve(". {\n prometheus localhost:0\n hosts {\n  10.0.0.1 m.example.org\n }\n}") as s:
        hosts_key = (s.dispatcher.label, ".", "NOERROR", "hosts")
        cache_key = (s.dispatcher.label, ".", "NOERROR", "cache")
        before = s.dispatcher.metrics.totals()[2]  # the metrics are the process's: count differences
        for _ in range(3):
            await s.query(Case("m.example.org.", "A"))
        assert s.last_fast
        after = s.dispatcher.metrics.totals()[2]
        assert after.get(hosts_key, 0) - before.get(hosts_key, 0) == 3
        assert after.get(cache_key, 0) == before.get(cache_key, 0)


async def test_a_remembered_answer_too_big_for_the_client_takes_the_slow_path() -> None:
    big = "\n".join(f"  10.0.1.{i} big.example.org" for i in range(1, 60))
    async with serve(f". {{\n hosts {{\n{big}\n }}\n}}") as s:
        for _ in range(2):  # remembered after the first; still too big for 512 bytes over UDP
            r = await s.query(Case("big.example.org.", "A"))
            assert not s.last_fast
            assert r.header.tc == 1
        for _ in range(2):  # over TCP it fits: the hot path serves it from the second query on
            r = await s.query(Case("big.example.org.", "A", proto="tcp"))
            assert len(r.rr) == 59
        assert s.last_fast
