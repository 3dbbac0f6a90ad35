"""Query metrics under CoreDNS's names, counted in plain integers and exported at scrape time.

prometheus_client's labelled metrics take a lock and a label look-up per update; at tens of
thousands of queries a second that is a visible share of a query's cost. So the server counts
into dicts keyed by label tuples and a custom collector turns them into metric families when
/metrics is scraped. Other plugins' slow-path metrics use ordinary prometheus_client objects
registered in the same REGISTRY.
"""

from __future__ import annotations

import bisect
import platform
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from portolan import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

# Bucket bounds as CoreDNS declares them, so existing dashboards' histogram_quantile() lines up.
DURATION_BUCKETS = [0.00025 * 2**i for i in range(16)]
SIZE_BUCKETS = [0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3]

# qtypes that get their own label value; everything else is "other" (keeps label cardinality bounded).
MONITORED_TYPES = {
    1: "A", 28: "AAAA", 5: "CNAME", 2: "NS", 12: "PTR", 6: "SOA", 33: "SRV", 15: "MX", 16: "TXT",
    35: "NAPTR", 43: "DS", 48: "DNSKEY", 46: "RRSIG", 47: "NSEC", 50: "NSEC3", 13: "HINFO", 255: "ANY",
    251: "IXFR", 252: "AXFR", 64: "SVCB", 65: "HTTPS", 99: "SPF", 257: "CAA",
}


def type_label(qtype: int) -> str:
    return MONITORED_TYPES.get(qtype, "other")


class Histogram:
    """A Prometheus histogram kept as plain counters, cheap enough to update per query."""

    __slots__ = ("bounds", "counts", "n", "total")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, v)] += 1
        self.total += v
        self.n += 1

    def buckets(self) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        acc = 0
        for b, c in zip(self.bounds, self.counts, strict=False):
            acc += c
            out.append((_fmt(b), acc))
        out.append(("+Inf", self.n))
        return out


def _fmt(b: float) -> str:
    return repr(float(b)) if not float(b).is_integer() else f"{float(b):.1f}"


class Slot:
    """Counters for one label set, bound once so the hot path records a query in a few increments.

    Request and response sizes repeat (one name, one answer): the bucket of the last size seen is kept,
    so most queries skip the bucket search for both.
    """

    __slots__ = ("_req_i", "_req_size", "_resp_i", "_resp_size", "do", "dur", "n", "req", "resp")

    def __init__(self, dur: Histogram, req: Histogram, resp: Histogram) -> None:
        self.n = 0
        self.do = 0
        self.dur, self.req, self.resp = dur, req, resp
        self._req_size = self._resp_size = -1
        self._req_i = self._resp_i = 0

    def record(self, do: bool, req_size: int, resp_size: int, duration: float) -> None:
        self.n += 1
        if do:
            self.do += 1
        self.dur.observe(duration)
        if req_size != self._req_size:
            self._req_size, self._req_i = req_size, bisect.bisect_left(self.req.bounds, req_size)
        h = self.req
        h.counts[self._req_i] += 1
        h.total += req_size
        h.n += 1
        if resp_size != self._resp_size:
            self._resp_size, self._resp_i = resp_size, bisect.bisect_left(self.resp.bounds, resp_size)
        h = self.resp
        h.counts[self._resp_i] += 1
        h.total += resp_size
        h.n += 1


class Metrics(Collector):
    """Process-wide DNS counters. Survive reloads (the instance is created once per process)."""

    def __init__(self) -> None:
        self.durations: dict[tuple[str, str, str], Histogram] = {}
        self.req_sizes: dict[tuple[str, str, str], Histogram] = {}
        self.resp_sizes: dict[tuple[str, str, str], Histogram] = {}
        self.panics = 0
        self.plugins_enabled: set[tuple[str, str, str]] = set()
        # (server, zone, proto, family, type, rcode, plugin) -> Slot: every answer is counted in one; the
        # requests/responses/DO counters are summed from them when /metrics is scraped.
        self.slots: dict[tuple[str, str, str, str, str, str, str], Slot] = {}
        self.https_responses: dict[tuple[str, str], int] = {}  # (server, HTTP status) -> DoH responses

    def https_response(self, server: str, status: int) -> None:
        """Count one DNS-over-HTTPS response (coredns_dns_https_responses_total)."""
        key = (server, str(status))
        self.https_responses[key] = self.https_responses.get(key, 0) + 1

    def slot(self, server: str, zone: str, proto: str, family: int, qtype: int, rcode: str, plugin: str) -> Slot:
        t = type_label(qtype)
        f = "1" if family == 1 else "2"
        key = (server, zone, proto, f, t, rcode, plugin)
        s = self.slots.get(key)
        if s is None:
            hists = []
            for store, hk, bounds in ((self.durations, (server, zone, t), DURATION_BUCKETS),
                                      (self.req_sizes, (server, zone, proto), SIZE_BUCKETS),
                                      (self.resp_sizes, (server, zone, proto), SIZE_BUCKETS)):
                h = store.get(hk)
                if h is None:
                    h = store[hk] = Histogram(bounds)
                hists.append(h)
            s = self.slots[key] = Slot(*hists)
        return s

    def totals(self) -> tuple[dict[tuple[str, str, str, str, str], int], dict[tuple[str, str], int],
                                   dict[tuple[str, str, str, str], int]]:
        """(requests, DO requests, responses) summed over the slots, keyed by their labels."""
        requests: dict[tuple[str, str, str, str, str], int] = {}
        do_requests: dict[tuple[str, str], int] = {}
        responses: dict[tuple[str, str, str, str], int] = {}
        for (s, z, pr, f, t, rc, pl), slot in self.slots.items():
            k = (s, z, pr, f, t)
            requests[k] = requests.get(k, 0) + slot.n
            if slot.do:
                do_requests[(s, z)] = do_requests.get((s, z), 0) + slot.do
            rk = (s, z, rc, pl)
            responses[rk] = responses.get(rk, 0) + slot.n
        return requests, do_requests, responses

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        bi = GaugeMetricFamily("coredns_build_info", "A metric with a constant '1' value labeled by version, "
                               "revision, and goversion from which CoreDNS was built.",
                               labels=["version", "revision", "goversion"])
        bi.add_metric([__version__, "portolan", "python" + platform.python_version()], 1)
        yield bi
        p = CounterMetricFamily("coredns_panics", "A metrics that counts the number of panics.")
        p.add_metric([], self.panics)
        yield p
        requests, do_requests, responses = self.totals()
        c = CounterMetricFamily("coredns_dns_requests", "Counter of DNS requests made per zone, protocol "
                                "and family.", labels=["server", "zone", "view", "proto", "family", "type"])
        for (s, z, pr, f, t), v in requests.items():
            c.add_metric([s, z, "", pr, f, t], v)
        yield c
        c = CounterMetricFamily("coredns_dns_do_requests", "Counter of DNS requests with DO bit set per zone.",
                                labels=["server", "view", "zone"])
        for (s, z), v in do_requests.items():
            c.add_metric([s, "", z], v)
        yield c
        c = CounterMetricFamily("coredns_dns_responses", "Counter of response status codes.",
                                labels=["server", "zone", "view", "rcode", "plugin"])
        for (s, z, r, pl), v in responses.items():
            c.add_metric([s, z, "", r, pl], v)
        yield c
        c = CounterMetricFamily("coredns_dns_https_responses", "Counter of DoH responses per server and http "
                                "status code.", labels=["server", "status"])
        for (s, st), v in self.https_responses.items():
            c.add_metric([s, st], v)
        yield c
        yield self._hist("coredns_dns_request_duration_seconds", "Histogram of the time (in seconds) each "
                         "request took per zone.", ["server", "zone", "view", "type"], self.durations)
        yield self._hist("coredns_dns_request_size_bytes", "Size of the EDNS0 UDP buffer in bytes (64K for "
                         "TCP) per zone and protocol.", ["server", "zone", "view", "proto"], self.req_sizes)
        yield self._hist("coredns_dns_response_size_bytes", "Size of the returned response in bytes.",
                         ["server", "zone", "view", "proto"], self.resp_sizes)
        g = GaugeMetricFamily("coredns_plugin_enabled", "A metric that indicates whether a plugin is enabled "
                              "on per server and zone basis.", labels=["server", "zone", "view", "name"])
        for s, z, n in sorted(self.plugins_enabled):
            g.add_metric([s, z, "", n], 1)
        yield g

    @staticmethod
    def _hist(name: str, doc: str, labels: list[str], data: dict[tuple[str, str, str], Histogram],
              ) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(name, doc, labels=labels)
        for (a, b, c), h in data.items():
            fam.add_metric([a, b, "", c], h.buckets(), h.total)
        return fam


_metrics: Metrics | None = None


def process_metrics() -> Metrics:
    """The one Metrics object of this process, registered with REGISTRY on first use."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
        REGISTRY.register(_metrics)
        ProcessCollector(registry=REGISTRY)
        PlatformCollector(registry=REGISTRY)
    return _metrics
