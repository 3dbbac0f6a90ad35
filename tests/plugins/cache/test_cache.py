"""cache: what is kept, for how long, with which TTL; prefetch, serve_stale; and the hot path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSQuestion, DNSRecord

from corefile import CorefileError, Dispenser, parse
from dnsplugins import cache as cachemod
from dnsplugins.cache import Cache
from dnsserver.config import build
from dnsserver.plugin import SetupContext
from dnsserver.request import Request
from tests.dnstest import Case, rr, serve


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_cache(text: str = "cache 30") -> tuple[Cache, Clock]:
    cfg = build(parse(f". {{\n {text}\n whoami\n}}", "Corefile"), 53)
    c = next(p for p in cfg.blocks[0].plugins if p.name == "cache")
    clock = Clock()
    c.clock = clock
    return c, clock


def query(name: str = "a.example.org.", qtype: str = "A", do: bool = False, cd: bool = False,
          edns: bool = False) -> Request:
    q = DNSRecord(q=DNSQuestion(name, getattr(QTYPE, qtype)))
    q.header.id = 77
    q.header.cd = int(cd)
    if do or edns:
        q.add_ar(EDNS0(udp_len=1232, flags="do" if do else ""))
    data = bytes(q.pack())
    return Request(DNSRecord.parse(data), data, ("10.0.0.9", 5353), "udp", "127.0.0.1", "dns://:53")


class Upstream:
    """A stand-in for the rest of the chain: builds a reply and counts how often it is asked."""

    def __init__(self, build_reply: Callable[[Request], DNSRecord | None]) -> None:
        self.build_reply = build_reply
        self.calls = 0

    async def __call__(self, req: Request) -> DNSRecord | None:
        self.calls += 1
        return self.build_reply(req)


def answer(*records: str, rcode: int = 0, auth: tuple[str, ...] = (), tc: bool = False) -> Callable[[Request],
                                                                                                      DNSRecord]:
    def make(req: Request) -> DNSRecord:
        r = req.reply(rcode)
        r.header.tc = int(tc)
        r.header.ra = 1
        for t in records:
            r.add_answer(rr(t))
        for t in auth:
            r.add_auth(rr(t))
        return r
    return make


SOA = "example.org. 300 IN SOA ns.example.org. hostmaster.example.org. 1 7200 1800 86400 60"

# (name, upstream reply, cacheable?, ttl expected in the reply the client gets)
KEEP_CASES = [
    ("positive", answer("a.example.org. 300 IN A 10.0.0.1"), True, 30),
    ("ttl below minimum raised to 5", answer("a.example.org. 0 IN A 10.0.0.1"), True, 5),
    ("ttl inside bounds", answer("a.example.org. 12 IN A 10.0.0.1"), True, 12),
    ("nxdomain with soa", answer(rcode=3, auth=(SOA,)), True, 30),
    ("nodata with soa", answer(auth=(SOA,)), True, 30),
    ("nxdomain without soa", answer(rcode=3), False, None),
    ("nodata without soa", answer(), False, None),
    ("truncated", answer("a.example.org. 300 IN A 10.0.0.1", tc=True), False, None),
    ("refused", answer(rcode=5), False, None),
    ("formerr", answer(rcode=1), False, None),
    ("servfail kept 5s", answer(rcode=2), True, None),
    ("cname chain not reaching type, no soa", answer("a.example.org. 300 IN CNAME b.example.org."), False, None),
    ("cname chain with soa is nodata", answer("a.example.org. 300 IN CNAME b.example.org.", auth=(SOA,)),
     True, 30),
    ("referral", answer(auth=("sub.example.org. 300 IN NS ns.sub.example.org.",)), True, 30),
]


@pytest.mark.parametrize(("name", "make", "keep", "ttl"), KEEP_CASES, ids=[c[0] for c in KEEP_CASES])
async def test_what_is_kept(name: str, make: Callable[[Request], DNSRecord], keep: bool, ttl: int | None) -> None:
    c, _ = make_cache()
    up = Upstream(make)
    first = await c.serve(query(), up)
    second = await c.serve(query(), up)
    assert up.calls == (1 if keep else 2), name
    if ttl is not None:
        for r in list(first.rr) + list(first.auth) + list(second.rr) + list(second.auth):
            assert r.ttl == ttl, f"{name}: {r}"
    if keep:
        assert second.header.aa == 1
        assert second.header.rcode == first.header.rcode


async def test_negative_ttl_from_soa_minimum() -> None:
    c, _ = make_cache("cache 3600")
    soa_low_min = SOA.replace(" 86400 60", " 86400 20")
    r = await c.serve(query(), Upstream(answer(rcode=3, auth=(soa_low_min,))))
    assert [x.ttl for x in r.auth] == [20]


async def test_ttl_counts_down_then_expires() -> None:
    c, clock = make_cache()
    up = Upstream(answer("a.example.org. 300 IN A 10.0.0.1"))
    await c.serve(query(), up)
    clock.t += 10.4
    r = await c.serve(query(), up)
    assert [x.ttl for x in r.rr] == [19]
    assert up.calls == 1
    clock.t += 20
    await c.serve(query(), up)
    assert up.calls == 2


async def test_keepttl() -> None:
    c, clock = make_cache("cache 30 {\n  keepttl\n }")
    up = Upstream(answer("a.example.org. 300 IN A 10.0.0.1"))
    await c.serve(query(), up)
    clock.t += 10
    r = await c.serve(query(), up)
    assert [x.ttl for x in r.rr] == [30]


async def test_servfail_duration_and_off() -> None:
    c, clock = make_cache()
    up = Upstream(answer(rcode=2))
    await c.serve(query(), up)
    clock.t += 4
    await c.serve(query(), up)
    assert up.calls == 1
    clock.t += 2
    await c.serve(query(), up)
    assert up.calls == 2
    c, _ = make_cache("cache 30 {\n  servfail 0\n }")
    up = Upstream(answer(rcode=2))
    await c.serve(query(), up)
    await c.serve(query(), up)
    assert up.calls == 2


async def test_do_and_cd_cached_apart() -> None:
    c, _ = make_cache()
    up = Upstream(answer("a.example.org. 300 IN A 10.0.0.1"))
    for kw in ({}, {"do": True}, {"cd": True}, {"do": True, "cd": True}):
        await c.serve(query(**kw), up)
        await c.serve(query(**kw), up)
    assert up.calls == 4


async def test_case_insensitive_key() -> None:
    c, _ = make_cache()
    up = Upstream(answer("a.example.org. 300 IN A 10.0.0.1"))
    await c.serve(query("a.example.org."), up)
    r = await c.serve(query("A.ExAmPlE.oRg."), up)
    assert up.calls == 1
    assert r.header.rcode == 0


async def test_disable_per_kind_and_zone() -> None:
    c, _ = make_cache("cache 30 {\n  disable denial\n }")
    up = Upstream(answer(rcode=3, auth=(SOA,)))
    await c.serve(query(), up)
    await c.serve(query(), up)
    assert up.calls == 2
    c, _ = make_cache("cache 30 {\n  disable success example.org\n }")
    up = Upstream(answer("a.example.org. 300 IN A 10.0.0.1"))
    await c.serve(query(), up)
    await c.serve(query(), up)
    assert up.calls == 2
    up = Upstream(answer("a.other.org. 300 IN A 10.0.0.1"))
    await c.serve(query("a.other.org."), up)
    await c.serve(query("a.other.org."), up)
    assert up.calls == 1


async def test_zones_limit_caching() -> None:
    c, _ = make_cache("cache 30 example.org")
    up = Upstream(answer("a.other.org. 300 IN A 10.0.0.1"))
    await c.serve(query("a.other.org."), up)
    await c.serve(query("a.other.org."), up)
    assert up.calls == 2


async def test_capacity_evicts_oldest() -> None:
    c, _ = make_cache("cache 30 {\n  success 1\n }")
    assert c.success.capacity == 1024  # 256 shards x at least 4, as CoreDNS sizes it
    up = Upstream(lambda req: answer(f"{req.qname} 300 IN A 10.0.0.1")(req))
    for i in range(1025):
        await c.serve(query(f"h{i}.example.org."), up)
    assert len(c.success.entries) == 1024
    assert c.success.evictions == 1
    await c.serve(query("h0.example.org."), up)  # the oldest went first
    assert up.calls == 1026


async def test_prefetch_refreshes_popular_entry() -> None:
    c, clock = make_cache("cache 30 {\n  prefetch 2 1m 50%\n }")
    up = Upstream(answer("a.example.org. 300 IN A 10.0.0.1"))
    await c.serve(query(), up)
    clock.t += 5
    await c.serve(query(), up)  # hit 1: 25s left, above 50% of 30
    clock.t += 11
    await c.serve(query(), up)  # hit 2: 14s left <= 15: refresh in the background
    await asyncio.gather(*c._tasks)
    assert up.calls == 2
    assert c.prefetches == 1
    r = await c.serve(query(), up)
    assert [x.ttl for x in r.rr] == [30]  # the refreshed entry


async def test_serve_stale_immediate_and_verify() -> None:
    c, clock = make_cache("cache 30 {\n  serve_stale 1h\n }")
    good = answer("a.example.org. 300 IN A 10.0.0.1")
    up = Upstream(good)
    await c.serve(query(), up)
    clock.t += 100  # expired 70s ago, inside the hour
    up.build_reply = answer(rcode=2)
    r = await c.serve(query(), up)
    assert [str(x.rdata) for x in r.rr] == ["10.0.0.1"]
    assert [x.ttl for x in r.rr] == [0]
    await asyncio.gather(*c._tasks)
    assert c.served_stale == 1
    assert up.calls == 2
    clock.t += 3600  # past the stale window: ask upstream
    assert (await c.serve(query(), up)).header.rcode == 2

    c, clock = make_cache("cache 30 {\n  serve_stale 1h verify 1s\n }")
    up = Upstream(good)
    await c.serve(query(), up)
    clock.t += 100
    up.build_reply = answer("a.example.org. 300 IN A 10.0.0.2")
    r = await c.serve(query(), up)  # verify: upstream answered, so the fresh answer
    assert [str(x.rdata) for x in r.rr] == ["10.0.0.2"]
    clock.t += 100

    async def dead(req: Request) -> DNSRecord | None:
        raise OSError("upstream down")
    r = await c.serve(query(), dead)
    assert [str(x.rdata) for x in r.rr] == ["10.0.0.2"]
    assert [x.ttl for x in r.rr] == [0]


async def test_ad_bit_cleared_unless_do_or_ad() -> None:
    c, _ = make_cache()

    def with_ad(req: Request) -> DNSRecord:
        r = answer("a.example.org. 300 IN A 10.0.0.1")(req)
        r.header.ad = 1
        return r
    up = Upstream(with_ad)
    await c.serve(query(), up)
    assert (await c.serve(query(), up)).header.ad == 0
    await c.serve(query(do=True), up)
    assert (await c.serve(query(do=True), up)).header.ad == 1


# -- the hot path, through the real Dispatcher --------------------------------------------------------

HOSTS = """. {
    cache 30
    hosts {
        10.0.0.1 a.example.org
        10.0.0.2 a.example.org
        10.0.0.3 a.example.org
        10.0.0.4 a.example.org
    }
}"""


async def test_hits_are_served_on_the_hot_path() -> None:
    async with serve(HOSTS) as s:
        ips = [f"a.example.org. 30 IN A 10.0.0.{i}" for i in range(1, 5)]
        await s.run([Case("a.example.org.", "A", answer=ips)])
        assert not s.last_fast
        # Another spelling is a cache hit at once (case-folded key), through the chain the first time
        # (routes are keyed by exact bytes), and on the hot path from then on.
        r = await s.query(Case("A.EXAMPLE.org.", "A", bufsize=1400))
        assert not s.last_fast
        assert str(r.q.qname) == "A.EXAMPLE.org."
        c = next(p for p in s.config.blocks[0].plugins if p.name == "cache")
        assert c.hits["success"] == 1
        r = await s.query(Case("A.EXAMPLE.org.", "A", bufsize=1400))
        assert s.last_fast
        assert str(r.q.qname) == "A.EXAMPLE.org."
        assert r.header.id == 4321
        assert r.header.aa == 1
        assert sorted(str(x.rdata) for x in r.rr) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        assert [x.rclass for x in r.ar] == [1400]  # our OPT echoes the client's size
        # Without EDNS: no OPT in the hot-path reply either.
        r = await s.query(Case("a.example.org.", "A"))
        assert s.last_fast
        assert r.ar == []


async def test_hot_path_shuffles_behind_loadbalance() -> None:
    async with serve(HOSTS.replace("cache 30", "cache 30\n    loadbalance")) as s:
        await s.query(Case("a.example.org.", "A"))
        orders = set()
        for _ in range(40):
            r = await s.query(Case("a.example.org.", "A"))
            assert s.last_fast
            orders.add(tuple(str(x.rdata) for x in r.rr))
        assert len(orders) > 1


async def test_hot_path_off_when_a_plugin_before_cache_must_see_queries() -> None:
    # With loadbalance prefer, the order depends on the addresses: the chain must run.
    async with serve(HOSTS.replace("cache 30", "cache 30\n    loadbalance {\n prefer 10.0.0.3/32\n }")) as s:
        for _ in range(3):
            await s.query(Case("a.example.org.", "A"))
            assert not s.last_fast


async def test_hot_path_hits_are_logged_like_the_slow_path(caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import re

    caplog.set_level(logging.INFO, logger="portolan")
    async with serve(HOSTS.replace("cache 30", "cache 30\n    log")) as s:
        await s.query(Case("a.example.org.", "A", bufsize=1232))  # hosts answers: slow path
        await s.query(Case("a.example.org.", "A", bufsize=1232))  # cache hit: slow path (route learnt now)
        await s.query(Case("a.example.org.", "A", bufsize=1232))
        assert s.last_fast
        await s.query(Case("missing.example.org.", "A"))  # SERVFAIL from hosts, not cached
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[INFO] 10.240.0.1")]
    assert len(lines) == 4, lines

    def no_time(line: str) -> str:
        return re.sub(r" [\d.]+s$", "", line)

    # The hit answered through the chain and the one answered from wire bytes log the same line.
    assert no_time(lines[1]) == no_time(lines[2]), lines
    assert re.match(r'^\[INFO\] 10\.240\.0\.1:40212 - 4321 "A IN a\.example\.org\. udp \d+ false 1232" '
                    r"NOERROR qr,aa,rd \d+ [\d.]+s$", lines[2]), lines
    assert '"A IN missing.example.org. udp 37 false 512" SERVFAIL' in lines[3]


async def test_hot_path_falls_back_when_reply_too_big() -> None:
    big = "\n".join(f"        10.0.1.{i} big.example.org" for i in range(1, 60))
    async with serve(f". {{\n    cache 30\n    hosts {{\n{big}\n    }}\n}}") as s:
        c = next(p for p in s.config.blocks[0].plugins if p.name == "cache")
        await s.query(Case("big.example.org.", "A", proto="tcp"))
        for _ in range(2):  # the second time the hot path tries it first, then declines it
            r = await s.query(Case("big.example.org.", "A"))
            assert not s.last_fast
            assert r.header.tc == 1
        r = await s.query(Case("big.example.org.", "A", proto="tcp"))
        assert s.last_fast
        assert len(r.rr) == 59
        assert (c.requests, c.hits["success"]) == (4, 3)  # each query counted once, wherever it was answered


# Seconds after the answer was stored -> (TTL served, on the hot path?). Taken in order: the hot path
# reuses the records it rendered until the TTL it put in them no longer holds.
TTL_STEPS = [
    (0.0, 30, True),
    (0.5, 29, True),
    (0.999, 29, True),
    (1.0, 29, True),
    (1.2, 28, True),
    (1.7, 28, True),
    (29.5, 0, True),
    (29.99, 0, True),
    (30.0, 30, False),  # expired: the chain answers again and the cache keeps the new answer
    (30.5, 29, True),
]


async def test_hot_path_ttl_counts_down_each_second() -> None:
    async with serve(HOSTS) as s:
        c = next(p for p in s.config.blocks[0].plugins if p.name == "cache")
        clock = Clock()
        c.clock = clock
        await s.query(Case("a.example.org.", "A"))  # stored at t=1000
        assert not s.last_fast
        for offset, ttl, fast in TTL_STEPS:
            clock.t = 1000.0 + offset
            r = await s.query(Case("a.example.org.", "A"))
            assert (s.last_fast, {x.ttl for x in r.rr}) == (fast, {ttl}), offset


async def test_hot_path_keepttl_and_prefetch() -> None:
    async with serve(HOSTS.replace("cache 30", "cache 30 {\n keepttl\n }")) as s:
        c = next(p for p in s.config.blocks[0].plugins if p.name == "cache")
        c.clock = clock = Clock()
        await s.query(Case("a.example.org.", "A"))
        for offset in (0.0, 10.5, 29.9):
            clock.t = 1000.0 + offset
            r = await s.query(Case("a.example.org.", "A"))
            assert s.last_fast, offset
            assert {x.ttl for x in r.rr} == {30}, offset
    async with serve(HOSTS.replace("cache 30", "cache 30 {\n prefetch 2 1m 50%\n }")) as s:
        c = next(p for p in s.config.blocks[0].plugins if p.name == "cache")
        c.clock = clock = Clock()
        await s.query(Case("a.example.org.", "A"))
        clock.t += 5
        await s.query(Case("a.example.org.", "A"))  # hit 1, 25 s left
        assert s.last_fast
        assert c.prefetches == 0
        clock.t += 11
        await s.query(Case("a.example.org.", "A"))  # hit 2, 14 s left <= 15: refreshed in the background
        assert s.last_fast
        await asyncio.gather(*c._tasks)
        assert c.prefetches == 1
        assert c.hits["success"] == 2
        r = await s.query(Case("a.example.org.", "A"))
        assert s.last_fast
        assert {x.ttl for x in r.rr} == {30}


async def test_hot_path_counts_metrics() -> None:
    async with serve(HOSTS.replace("cache 30", "cache 30\n    prometheus localhost:0")) as s:
        m = s.dispatcher.metrics
        key = (s.dispatcher.label, ".", "NOERROR", "cache")
        before = m.totals()[2].get(key, 0)
        for _ in range(3):
            await s.query(Case("a.example.org.", "A"))
        assert m.totals()[2].get(key, 0) - before == 2  # first answered by hosts, then two cache hits
        c = next(p for p in s.config.blocks[0].plugins if p.name == "cache")
        assert c.requests == 3
        assert c.hits["success"] == 2


PARSE = [
    ("cache", {"success": (9984, 3600, 5), "denial": (9984, 1800, 5)}),
    ("cache 30", {"success": (9984, 30, 5), "denial": (9984, 30, 5)}),
    ("cache 30 example.org", {"zones": ["example.org."]}),
    ("cache {\n success 5000 60 10\n denial 2000 20 0\n }", {"success": (4864, 60, 10), "denial": (1792, 20, 0)}),
    ("cache {\n prefetch 10 2m 20%\n }", {"prefetch": (10, 120.0, 20)}),
    ("cache {\n serve_stale\n }", {"stale": (3600.0, False)}),
    ("cache {\n serve_stale 10m verify\n }", {"stale": (600.0, True)}),
    ("cache {\n servfail 10s\n }", {"servfail": 10.0}),
]


@pytest.mark.parametrize(("text", "want"), PARSE)
def test_parse(text: str, want: dict[str, object]) -> None:
    block = parse(f". {{\n {text}\n}}", "Corefile").blocks[0]
    tokens = [t for d in block.directives for t in d.tokens]
    from corefile import ZoneAddr

    cfg = cachemod.parse(Dispenser("cache", tokens), SetupContext([ZoneAddr("dns", ".", 53)], "Corefile", None,
                                                                    None))  # type: ignore[arg-type]
    for k, v in want.items():
        if k in ("success", "denial"):
            s = getattr(cfg, k)
            assert (s.capacity, s.max_ttl, s.min_ttl) == v
        elif k == "prefetch":
            assert (cfg.prefetch, cfg.prefetch_window, cfg.prefetch_pct) == v
        elif k == "stale":
            assert (cfg.stale, cfg.stale_verify) == v
        else:
            assert getattr(cfg, k) == v


PARSE_ERRORS = [
    ("cache 0", "Corefile:2 - plugin/cache: cache TTL can not be zero or negative"),
    ("cache {\n success\n }", "Corefile:3 - plugin/cache: Wrong argument count"),
    ("cache {\n success many\n }", "Corefile:3 - plugin/cache: invalid capacity"),
    ("cache {\n prefetch 1 1m 95%\n }", "Corefile:3 - plugin/cache: percentage should fall in range [10, 90]"),
    ("cache {\n servfail 10m\n }", "Corefile:3 - plugin/cache: caching SERVFAIL responses over 5 minutes"),
    ("cache {\n disable everything\n }", "Corefile:3 - plugin/cache: cache type for disable must be"),
    ("cache {\n serve_stale 1h sometimes\n }", "Corefile:3 - plugin/cache: invalid value for serve_stale"),
    ("cache {\n keepttl 5\n }", "Corefile:3 - plugin/cache: Wrong argument count"),
    ("cache {\n sizzle\n }", "Corefile:3 - plugin/cache: unknown property 'sizzle'"),
    ("cache\n cache", "Corefile:3 - plugin/cache: this plugin can only be used once per Server Block"),
]


@pytest.mark.parametrize(("text", "want"), PARSE_ERRORS)
def test_parse_errors(text: str, want: str) -> None:
    with pytest.raises(CorefileError) as ei:
        build(parse(f". {{\n {text}\n whoami\n}}", "Corefile"), 53)
    assert str(ei.value).startswith(want), str(ei.value)


def test_rcode_names_are_dnslib_names() -> None:
    assert RCODE.get(3) == "NXDOMAIN"
