"""cache: keep answers and serve repeats from memory, as wire bytes, on the server's hot path.

## Syntax

```
cache [TTL] [ZONES...] {
    success CAPACITY [TTL] [MINTTL]
    denial CAPACITY [TTL] [MINTTL]
    prefetch AMOUNT [[DURATION] [PERCENTAGE%]]
    serve_stale [DURATION] [immediate|verify [VERIFY_TIMEOUT]] [RESPONSE_TTL]
    servfail DURATION
    disable success|denial [ZONES...]
    keepttl
}
```

* **TTL** caps the lifetime of both caches (default 3600s for answers, 1800s for denials); **ZONES**
  limit caching to those zones (default: the block's).
* `success`/`denial`: capacity (default 9984 entries each), maximum TTL, minimum TTL (default 5s;
  a shorter TTL is raised to it, so even a `ttl 0` answer is kept 5 seconds).
* `prefetch AMOUNT [DURATION] [PERCENTAGE%]`: an entry asked AMOUNT times with no gap of DURATION
  (default 1m) is refreshed in the background once PERCENTAGE (default 10%) of its TTL is left.
* `serve_stale [DURATION]` (default 1h): an expired entry is still served, with TTL 0, for up to
  DURATION; `immediate` (default) refreshes in the background, `verify` asks upstream first and
  falls back to the stale answer after VERIFY_TIMEOUT.
* `servfail DURATION`: how long SERVFAIL and NOTIMP replies are kept (default 5s, at most 5m, 0 off).
* `disable success|denial [ZONES]`: never store that kind of reply (in those zones).
* `keepttl`: serve the original TTL instead of counting it down.

An answer is kept per (name case-insensitively, type, class, DO bit, CD bit). Its TTL is the
smallest in the reply (for NXDOMAIN and NODATA also the SOA's MINIMUM, RFC 2308), clamped to the
bounds above, and every record carries it; on a hit it counts down. Truncated replies, errors other
than SERVFAIL/NOTIMP, zone transfers and denials without an SOA are never kept. Replies from the
cache have AA set. When a block is full the oldest entry is evicted (CoreDNS evicts at random).
Hits are answered by the server straight from the stored bytes, without parsing the query, when
every plugin before `cache` in the block allows it (errors, any, chaos, loadbalance round_robin do).
Metrics: `coredns_cache_entries`, `coredns_cache_requests_total`, `coredns_cache_hits_total`,
`coredns_cache_misses_total`, `coredns_cache_prefetch_total`, `coredns_cache_served_stale_total`,
`coredns_cache_evictions_total`, `coredns_cache_drops_total`.

## Examples

```corefile
. {
    cache 30
    whoami
}
```

```corefile
cluster.local {
    cache 30 {
        success 5000 60 10
        disable denial cluster.local
        prefetch 10 1m 20%
        serve_stale 1h immediate
    }
    whoami
}
```
"""

from __future__ import annotations

from corefile import Dispenser
from dnsplugins.cache.cache import Cache, classify, minimal_ttl
from dnsplugins.cache.config import CacheConfig, parse
from dnsserver.plugin import SetupContext


def setup(d: Dispenser, ctx: SetupContext) -> Cache:
    cfg = parse(d, ctx)
    port = ctx.keys[0].port if ctx.keys else 53
    return Cache(cfg, f"dns://:{port}")


__all__ = ["Cache", "CacheConfig", "classify", "minimal_ttl", "parse", "setup"]
