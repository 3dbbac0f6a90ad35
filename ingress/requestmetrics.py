"""Request metrics under ingress-nginx's names, so its Grafana dashboards and alerts work as they are.

nginx counts every request in Lua (templates/lua/portolan.lua, ``M.log``): per worker, per
(route, status, method, canary), a count and seven histograms in ingress-nginx's default
buckets; once a second each worker stores what it counted as text in a shared dict. The
controller takes those batches over the status socket (``GET /portolan/metrics``) and adds
them up here, with no work per request in Python. A route names one location of one host
(ingress/model.py), so its labels (host, Ingress, namespace, Service, path) come from the
model, not from the request: a client cannot grow the label set with Host headers or paths.
Unknown hosts (the catch-all server) count under empty ``host``, ``ingress`` and ``service``.

Series (with ingress-nginx's ``controller_class``, ``controller_namespace`` and
``controller_pod`` constant labels): ``nginx_ingress_controller_requests`` (counter),
``_request_duration_seconds``, ``_response_duration_seconds``, ``_header_duration_seconds``,
``_connect_duration_seconds``, ``_request_size``, ``_response_size``, ``_bytes_sent``
(histograms), ``_ingress_upstream_latency_seconds`` (a summary: count and sum only, as
prometheus_client computes no quantiles), and nginx's connection counters from stub_status.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from ingress.model import CATCH_ALL, Location, Model, Server

log = logging.getLogger(__name__)

PREFIX = "nginx_ingress_controller_"
# ingress-nginx's defaults (--time-buckets, --length-buckets, --size-buckets); the Lua holds the same.
TIME: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LENGTH: tuple[float, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
SIZE: tuple[float, ...] = (10, 100, 1000, 10000, 100000, 1000000, 10000000)
# (name, help, buckets) in the Lua's slot order.
HISTOGRAMS: tuple[tuple[str, str, tuple[float, ...]], ...] = (
    ("request_duration_seconds", "The request processing time in seconds", TIME),
    ("response_duration_seconds", "The time spent on receiving the response from the upstream server", TIME),
    ("header_duration_seconds", "The time spent on receiving first header from the upstream server", TIME),
    ("connect_duration_seconds", "The time spent on establishing a connection with the upstream server", TIME),
    ("request_size", "The request length (including request line, header, and request body)", LENGTH),
    ("response_size", "The response length (including request line, header, and request body)", LENGTH),
    ("bytes_sent", "The number of bytes sent to a client", SIZE),
)
SLOTS = 1 + sum(2 + len(b) + 1 for _, _, b in HISTOGRAMS)  # the request count, then per histogram sum, count, buckets
LABELS = ("status", "method", "path", "namespace", "ingress", "service", "canary", "host")
STATUS_STATES = ("active", "reading", "writing", "waiting")
STATUS_FAMILIES = ("nginx_process_connections", "nginx_process_connections_total", "nginx_process_requests_total")


@dataclass(frozen=True, slots=True)
class RouteLabels:
    """What a route is, for the labels: its host, Ingress and Service, and the path as written."""

    host: str
    namespace: str
    ingress: str
    service: str
    path: str


UNKNOWN = RouteLabels("", "", "", "", "")


def location_labels(server: Server, loc: Location) -> RouteLabels:
    """ingress-nginx's labels for a location: the Ingress's namespace and name, the Service's
    name (no namespace, no port), the path as the rule wrote it ("/" for a host's default)."""
    namespace, _, ingress = loc.ingress.partition("/")
    service = loc.target.service.partition("/")[2].rpartition(":")[0] if loc.target.service else ""
    _, _, path = loc.rule.partition(" ")
    host = "" if server.host == CATCH_ALL else server.host
    return RouteLabels(host, namespace, ingress, service, path or "/")


class RouteBook:
    """Route -> labels for the routes of the models applied, worked out once per Server object.
    The routes of the model before stay known too: counts taken after a change may still name them."""

    def __init__(self) -> None:
        self._servers: dict[str, tuple[Server, dict[str, RouteLabels]]] = {}
        self.routes: dict[str, RouteLabels] = {}
        self._previous: dict[str, RouteLabels] = {}
        self.model: Model | None = None

    def update(self, model: Model) -> None:
        self.model = model
        known = self._servers
        fresh: dict[str, tuple[Server, dict[str, RouteLabels]]] = {}
        routes: dict[str, RouteLabels] = {}
        for server in model.servers:
            found = known.get(server.host)
            if found is None or found[0] is not server:
                found = (server, {loc.route: location_labels(server, loc) for loc in server.locations if loc.route})
            fresh[server.host] = found
            routes.update(found[1])
        if routes.keys() != self.routes.keys() or fresh.keys() != known.keys():
            self._previous = self.routes
        self._servers, self.routes = fresh, routes

    def labels(self, route: str) -> RouteLabels:
        return self.routes.get(route) or self._previous.get(route) or UNKNOWN


class RequestMetrics:
    """The request series, added up from nginx's batches."""

    def __init__(self, controller_class: str, namespace: str, pod: str, per_host: bool = True) -> None:
        self.const = {"controller_class": controller_class, "controller_namespace": namespace, "controller_pod": pod}
        self.per_host = per_host
        self.book = RouteBook()
        self.model: Model | None = None  # the model applied last: its routes name the labels
        self.series: dict[tuple[str, ...], list[float]] = {}
        self.dropped = 0  # series nginx could not store (a full portolan_metrics dict)
        self._texts: dict[tuple[str, ...], str] = {}  # series -> its label text
        self.status: dict[str, int] = {}  # stub_status: active, reading, writing, waiting, accepted, handled, requests

    def take(self, text: str) -> int:
        """Adds up one answer of ``GET /portolan/metrics``; returns how many series lines it held.
        A line that does not parse is skipped and logged (nginx wrote it: a bug, not input)."""
        taken = 0
        if self.model is not None and self.model is not self.book.model:
            self.book.update(self.model)  # here, not per change: at most once per batch
        for line in text.splitlines():
            fields = line.split(" ")
            if fields[0] == "dropped" and len(fields) == 2:
                self.dropped = int(fields[1])
                continue
            if len(fields) != 4 + SLOTS:
                if line:
                    log.warning("request metrics: a line of %d fields skipped", len(fields))
                continue
            try:
                values = [float(v) for v in fields[4:]]
            except ValueError:
                log.warning("request metrics: a line with a value that is not a number skipped")
                continue
            route, status, method, canary = fields[:4]
            labels = self.book.labels(route) if route != "-" else UNKNOWN
            key = (status, method, labels.path, labels.namespace, labels.ingress, labels.service,
                   "" if canary == "-" else canary, labels.host if self.per_host else "")  # fmt: skip
            found = self.series.get(key)
            if found is None:
                self.series[key] = values
            else:
                for i, v in enumerate(values):
                    found[i] += v
            taken += 1
        return taken

    def take_status(self, text: str) -> None:
        """nginx's stub_status page: connections by state, accepted, handled, requests."""
        lines = text.splitlines()
        try:
            self.status["active"] = int(lines[0].rsplit(":", 1)[1])
            accepted, handled, requests = (int(x) for x in lines[2].split())
            words = lines[3].split()
            self.status.update(accepted=accepted, handled=handled, requests=requests,
                               reading=int(words[1]), writing=int(words[3]), waiting=int(words[5]))  # fmt: skip
        except (IndexError, ValueError):
            log.warning("nginx status page not understood: %r", text[:200])

    def exposition(self, wanted: frozenset[str] | None = None) -> Iterator[str]:
        """The series in Prometheus' text format, as ingress-nginx's Go client writes them (its
        counters have no ``_total`` suffix, which prometheus_client would add), a piece at a
        time: at 10,000 hosts with traffic this is about a million lines, so the caller streams
        it and lets other work run between pieces. ``wanted``: only these families (``name[]``)."""
        items = sorted(self.series.items())
        texts = [self._label_text(key) for key, _ in items]
        if _wants(wanted, "requests"):
            yield _head("requests", "counter", "The total number of client requests")
            for part in _slices(len(items)):
                yield "".join(f"{PREFIX}requests{{{texts[i]}}} {items[i][1][0]:.0f}\n" for i in part)
        at = 1
        for name, help_text, bounds in HISTOGRAMS:
            if _wants(wanted, name):
                yield _head(name, "histogram", help_text)
                for part in _slices(len(items)):
                    yield "".join(_histogram(name, texts[i], items[i][1], at, bounds) for i in part)
            at += 2 + len(bounds) + 1
        if _wants(wanted, "ingress_upstream_latency_seconds"):
            yield from self._latency()
        if self.status and any(_wants(wanted, n) for n in STATUS_FAMILIES):
            yield self._status_text()

    def _label_text(self, key: tuple[str, ...]) -> str:
        """A series' labels as written, constant labels included: made once per series."""
        found = self._texts.get(key)
        if found is None:
            names = LABELS if self.per_host else LABELS[:-1]
            pairs = [*zip(names, key, strict=False), *self.const.items()]
            found = self._texts[key] = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
        return found

    def _latency(self) -> Iterator[str]:
        at = 1 + sum(2 + len(b) + 1 for name, _, b in HISTOGRAMS[: _CONNECT])
        upstream: dict[tuple[str, ...], list[float]] = {}
        for key, values in self.series.items():
            if values[at + 1]:
                sums = upstream.setdefault((key[4], key[3], key[5], key[6]), [0.0, 0.0])
                sums[0] += values[at + 1]
                sums[1] += values[at]
        if not upstream:
            return
        yield _head("ingress_upstream_latency_seconds", "summary",
                    "DEPRECATED Upstream service latency per Ingress (connect time; no quantiles)")  # fmt: skip
        const = list(self.const.items())
        lines = []
        for (ingress, namespace, service, canary), (count, total) in sorted(upstream.items()):
            labels = [("ingress", ingress), ("namespace", namespace), ("service", service), ("canary", canary), *const]
            lines.append(sample("ingress_upstream_latency_seconds_sum", labels, total))
            lines.append(sample("ingress_upstream_latency_seconds_count", labels, count))
        yield "".join(lines)

    def _status_text(self) -> str:
        const = list(self.const.items())
        out = Text()
        gauge = out.family(
            "nginx_process_connections",
            "gauge",
            "current number of client connections with state {active, reading, writing, waiting}",
        )
        for state in STATUS_STATES:
            gauge.append(
                sample("nginx_process_connections", [("state", state), *const], self.status.get(state, 0))
            )
        handled = out.family("nginx_process_connections_total", "counter",
                             "total number of connections with state {accepted, handled}")  # fmt: skip
        for state in ("accepted", "handled"):
            handled.append(sample("nginx_process_connections_total", [("state", state), *const],
                                  self.status.get(state, 0)))  # fmt: skip
        out.family("nginx_process_requests_total", "counter", "total number of client requests").append(
            sample("nginx_process_requests_total", const, self.status.get("requests", 0)))
        return out.text()


_CONNECT = 3  # HISTOGRAMS' connect_duration_seconds, whose count and sum ingress_upstream_latency_seconds repeats
SLICE = 500  # series per piece of the exposition


def _slices(n: int) -> Iterator[range]:
    for start in range(0, n, SLICE):
        yield range(start, min(n, start + SLICE))


def _wants(wanted: frozenset[str] | None, name: str) -> bool:
    return wanted is None or PREFIX + name in wanted


def _head(name: str, kind: str, help_text: str) -> str:
    return f"# HELP {PREFIX}{name} {help_text}\n# TYPE {PREFIX}{name} {kind}\n"


def _histogram(name: str, labels: str, values: list[float], at: int, bounds: tuple[float, ...]) -> str:
    """One series of one histogram: cumulative buckets, sum, count (nothing when it saw no value)."""
    count = values[at + 1]
    if not count:
        return ""
    lines = []
    running = 0.0
    for i, le in enumerate(_LE[bounds]):
        running += values[at + 2 + i]
        lines.append(f'{PREFIX}{name}_bucket{{{labels},le="{le}"}} {running:.0f}\n')
    lines.append(f"{PREFIX}{name}_sum{{{labels}}} {_number(values[at])}\n")
    lines.append(f"{PREFIX}{name}_count{{{labels}}} {count:.0f}\n")
    return "".join(lines)


INF = float("inf")


class Text:
    """Prometheus text exposition, one family after another (families without samples left out)."""

    def __init__(self) -> None:
        self._families: list[tuple[str, str, str, list[str]]] = []

    def family(self, name: str, kind: str, help_text: str) -> list[str]:
        lines: list[str] = []
        self._families.append((name, kind, help_text, lines))
        return lines

    def text(self) -> str:
        parts = []
        for name, kind, help_text, lines in self._families:
            if lines:
                parts.append(_head(name, kind, help_text))
                parts.extend(lines)
        return "".join(parts)


def sample(name: str, labels: list[tuple[str, str]], value: float) -> str:
    """One sample line; label values escaped as the format requires (\\, \", newline)."""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return f"{PREFIX}{name}{{{inner}}} {_number(value)}\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 2**53 else repr(value)


def _bound(value: float) -> str:
    """A bucket's le label as Prometheus' Go client writes it (0.005, 1, +Inf)."""
    if value == INF:
        return "+Inf"
    return str(int(value)) if value == int(value) else repr(value)


_LE: dict[tuple[float, ...], tuple[str, ...]] = {  # le label values
    bounds: tuple(_bound(b) for b in (*bounds, INF)) for bounds in (TIME, LENGTH, SIZE)
}
