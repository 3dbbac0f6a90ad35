"""forward's metrics under CoreDNS's names, counted in plain dicts and exported when scraped.

Every forwarded query observes a duration and counts a connection-cache hit; doing that through
prometheus_client's labelled objects costs a lock and a label look-up each time, which shows on the
forward-miss benchmark. So, as the core's query metrics do, we count here and build the families
in `collect`. One collector per process (registered on import), shared by every forward instance.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from dnsserver.metrics import (
    DURATION_BUCKETS,
    REGISTRY,
    Histogram,  # the core's own dict-counted histogram
)
from dnsserver.wire import rcode_name

PROXY_NAME = "forward"


class ForwardMetrics(Collector):
    """forward's process-wide counters and histograms, exported under CoreDNS's names."""

    def __init__(self) -> None:
        self.durations: dict[tuple[str, int], Histogram] = {}  # (to, rcode): named only when collected
        self.hc_failures: dict[str, int] = {}  # to
        self.conn_hits: dict[tuple[str, str], int] = {}  # (to, proto)
        self.conn_misses: dict[tuple[str, str], int] = {}
        self.hc_broken = 0
        self.max_concurrent_rejects = 0

    def observe(self, to: str, rcode: int, seconds: float) -> None:
        key = (to, rcode)
        h = self.durations.get(key)
        if h is None:
            h = self.durations[key] = Histogram(DURATION_BUCKETS)
        h.observe(seconds)

    def conn(self, to: str, proto: str, hit: bool) -> None:
        d = self.conn_hits if hit else self.conn_misses
        key = (to, proto)
        d[key] = d.get(key, 0) + 1

    def hc_failure(self, to: str) -> None:
        self.hc_failures[to] = self.hc_failures.get(to, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        h = HistogramMetricFamily("coredns_proxy_request_duration_seconds",
                                  "Histogram of the time each request took.", labels=["proxy_name", "to", "rcode"])
        named = sorted(((to, rcode_name(rcode)), hist) for (to, rcode), hist in self.durations.items())
        for (to, rcode), hist in named:
            h.add_metric([PROXY_NAME, to, rcode], hist.buckets(), hist.total)
        yield h
        c = CounterMetricFamily("coredns_proxy_healthcheck_failures",
                                "Counter of the number of failed healthchecks.", labels=["proxy_name", "to"])
        for to, v in sorted(self.hc_failures.items()):
            c.add_metric([PROXY_NAME, to], v)
        yield c
        for name, doc, data in (
            ("coredns_proxy_conn_cache_hits", "Counter of connection cache hits per upstream and protocol.",
             self.conn_hits),
            ("coredns_proxy_conn_cache_misses", "Counter of connection cache misses per upstream and protocol.",
             self.conn_misses),
        ):
            c = CounterMetricFamily(name, doc, labels=["proxy_name", "to", "proto"])
            for (to, proto), v in sorted(data.items()):
                c.add_metric([PROXY_NAME, to, proto], v)
            yield c
        c = CounterMetricFamily("coredns_forward_healthcheck_broken",
                                "Counter of the number of complete failures of the healthchecks.")
        c.add_metric([], self.hc_broken)
        yield c
        c = CounterMetricFamily("coredns_forward_max_concurrent_rejects",
                                "Counter of the number of queries rejected because the concurrent queries were at "
                                "maximum.")
        c.add_metric([], self.max_concurrent_rejects)
        yield c


METRICS = ForwardMetrics()
REGISTRY.register(METRICS)
