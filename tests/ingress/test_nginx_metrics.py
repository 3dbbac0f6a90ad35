"""Request metrics under ingress-nginx's names, scraped from /metrics after known requests
through real nginx: counts, labels and histogram buckets, the 404 and 503 paths, a canary,
unknown hosts under empty labels; and ingress-nginx's controller series."""

from __future__ import annotations

import json
import re

import aiohttp
import pytest

from ingress.controller import Controller
from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import services, until
from tests.ingress.objects import ann
from tests.ingress.tlsutil import Authority

P = "nginx_ingress_controller_"
SAMPLE = re.compile(r'^(?P<name>[a-z_]+)\{(?P<labels>.*)\} (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every labelled sample of an exposition, by name and label set."""
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            labels = frozenset(LABEL.findall(m["labels"]))
            out[(m["name"], labels)] = float(m["value"])
    return out


async def scrape(controller: Controller) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{controller.httpd.ports['metrics']}/metrics"
        async with session.get(url) as resp:
            return samples(await resp.text())


def find(got: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    """The sample of ``name`` whose labels include ``labels`` (exactly one may match)."""
    want = set(labels.items())
    found = [v for (n, ls), v in got.items() if n == P + name and want <= ls]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


# (host, path, headers, how many, the labels the requests count under)
TRAFFIC = [
    ("foo.com", "/a/x", {}, 5, dict(status="200", method="GET", path="/a", ingress="web", service="a", host="foo.com")),
    ("foo.com", "/gone", {}, 2, dict(status="503", method="GET", path="/gone", ingress="web", service="missing",
                                     host="foo.com")),
    ("foo.com", "/nothing", {}, 4, dict(status="404", method="GET", path="/", ingress="", service="",
                                        host="foo.com")),
    ("foo.com", "/c", {"X-Canary": "always"}, 3, dict(status="200", path="/c", ingress="web", service="a",
                                                      canary="default_b_http", host="foo.com")),
    ("foo.com", "/c", {}, 2, dict(status="200", path="/c", ingress="web", service="a", canary="", host="foo.com")),
    ("unknown.example", "/x", {}, 3, dict(status="404", ingress="", service="", host="", path="/")),
]  # fmt: skip


@pytest.mark.parametrize("pooled", [False, True], ids=["own-blocks", "pooled"])
async def test_requests_counted_under_ingress_nginx_names(start_controller, backends, client_for, pooled: bool,
                                                         request: pytest.FixtureRequest) -> None:  # fmt: skip
    if pooled:
        request.getfixturevalue("pool_every_host")
    store = Store()
    await services(backends, store, a=("a1",), b=("b1",))
    o.put(store, o.ingress("web", o.rule("foo.com", o.path("/a", "a"), o.path("/gone", "missing"), o.path("/c", "a"))),
          o.ingress("canary", o.rule("foo.com", o.path("/c", "b")), created="2024-01-02T00:00:00Z",
                    annotations=ann(canary="true", canary_by_header="X-Canary")))  # fmt: skip
    controller = await start_controller(store)
    assert ("pool:" in controller.layout.conf.read_text()) == pooled
    client = client_for(controller)
    for host, path, headers, times, _ in TRAFFIC:
        for _ in range(times):
            await client.request(host, path, headers=headers)
    await client.request("foo.com", "/a", method="POST")
    total = sum(t[3] for t in TRAFFIC) + 1

    async def all_counted() -> bool:
        got = await scrape(controller)
        return sum(v for (n, _), v in got.items() if n == P + "requests") == total

    await until(all_counted, timeout=10)
    got = await scrape(controller)
    const = dict(controller_class="portolan.dev/ingress-controller", controller_pod=controller.options.identity)
    for host, path, _, times, labels in TRAFFIC:
        assert find(got, "requests", **labels, **const) == times, (host, path)
    assert find(got, "requests", method="POST", path="/a", status="200") == 1
    # Histograms: cumulative buckets, +Inf = count; the time of a local request is below 1 s.
    a = dict(status="200", method="GET", path="/a", host="foo.com")
    assert find(got, "request_duration_seconds_count", **a) == 5
    assert find(got, "request_duration_seconds_bucket", **a, le="1") == 5
    assert find(got, "request_duration_seconds_bucket", **a, le="+Inf") == 5
    assert find(got, "response_duration_seconds_count", **a) == 5  # an upstream answered each
    assert find(got, "connect_duration_seconds_count", **a) == 5
    assert find(got, "request_size_bucket", **a, le="10") == 0  # a request line alone is longer
    assert find(got, "request_size_bucket", **a, le="+Inf") == 5
    sizes = [find(got, "bytes_sent_bucket", **a, le=le) for le in ("10", "100", "1000", "10000", "+Inf")]
    assert sizes[0] == 0 and sizes[-1] == 5 and sizes == sorted(sizes)  # noqa: PT018
    # No upstream answered the 404s and 503s: no upstream timing for them.
    assert find(got, "response_duration_seconds_count", status="503") is None
    assert find(got, "ingress_upstream_latency_seconds_count", ingress="web", service="a", canary="") == 5 + 1 + 2
    # The controller's own, as ingress-nginx names them.
    assert find(got, "config_last_reload_successful", **const) == 1
    assert find(got, "success", **const) == 1
    assert find(got, "errors", **const) == 0
    assert find(got, "orphan_ingress", namespace="default", ingress="web", type="no-service") == 1
    assert find(got, "nginx_process_connections", state="active") is not None
    assert (find(got, "nginx_process_requests_total") or 0) >= total


async def test_certificate_expiry_and_unknown_hosts_bounded(start_controller, backends, client_for,
                                                           authority: Authority) -> None:  # fmt: skip
    store = Store()
    await services(backends, store, a=("a1",))
    crt, key = authority.issue("tls.com")
    tls = [{"hosts": ["tls.com"], "secretName": "tls-secret"}]
    o.put(store, o.tls_secret("tls-secret", crt, key), o.ingress("tls", o.rule("tls.com", o.path("/", "a")), tls=tls))
    controller = await start_controller(store)
    client = client_for(controller)
    for n in range(30):  # 30 Host headers nobody configured: one series
        await client.request(f"random-{n}.example", "/")

    async def counted() -> bool:
        return find(await scrape(controller), "requests", host="", status="404") == 30

    await until(counted, timeout=10)
    got = await scrape(controller)
    assert len([k for k in got if k[0] == P + "requests"]) == 1
    expiry = find(got, "ssl_expire_time_seconds", host="tls.com", secret_name="tls-secret", namespace="default")
    assert expiry is not None and expiry > 1.7e9  # noqa: PT018


async def test_access_log_has_ingress_nginx_s_default_fields(start_controller, backends, client_for) -> None:
    # ingress-nginx's default log-format-upstream, field for field: its upstream names in
    # brackets (the canary's when it answered), and the client's X-Request-ID when it sent one.
    store = Store()
    await services(backends, store, a=("a1",), b=("b1",))
    o.put(store, o.ingress("web", o.rule("foo.com", o.path("/c", "a"))),
          o.ingress("canary", o.rule("foo.com", o.path("/c", "b")), created="2024-01-02T00:00:00Z",
                    annotations=ann(canary="true", canary_by_header="X-Canary")))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    await client.request("foo.com", "/c?q=1", headers={"X-Request-ID": "my-id-1", "User-Agent": "ua/1"})
    await client.request("foo.com", "/c", headers={"X-Canary": "always"})
    await client.request("foo.com", "/nothing")  # the default backend: not logged (ingress-nginx's default)

    def lines() -> list[str]:
        return controller.layout.access_log.read_text().splitlines()

    await until(lambda: len(lines()) >= 2)
    first, second = lines()[:2]
    assert re.fullmatch(r'127\.0\.0\.1 - - \[[^]]+\] "GET /c\?q=1 HTTP/1\.1" 200 \d+ "-" "ua/1" \d+ [0-9.]+ '
                        r"\[default-a-80\] \[\] 127\.0\.0\.\d+:\d+ \d+ [0-9.]+ 200 my-id-1", first), first  # fmt: skip
    assert "[default-a-80] [default-b-http]" in second
    assert re.search(r" [0-9a-f]{32}$", second), second  # no X-Request-ID sent: nginx's own id


async def test_access_log_escape_json(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1",))
    fmt = '{"status": $status, "uri": "$uri", "agent": "$http_user_agent", "upstream": "$proxy_upstream_name"}'
    o.put(store, o.config_map("cfg", {"log-format-upstream": fmt, "log-format-escape-json": "true"}),
          o.ingress("web", o.rule("foo.com", o.path("/", "a"))))  # fmt: skip
    controller = await start_controller(store, configmap=("default", "cfg"))
    await client_for(controller).request("foo.com", "/x", headers={"User-Agent": 'quote " and \\ backslash'})
    await until(lambda: controller.layout.access_log.read_text().strip() != "")
    line = controller.layout.access_log.read_text().splitlines()[0]
    assert json.loads(line) == {"status": 200, "uri": "/x", "agent": 'quote " and \\ backslash',
                                "upstream": "default-a-80"}  # fmt: skip


async def test_metrics_off(start_controller, backends, client_for) -> None:
    # --enable-metrics=false: nothing counted in nginx (no log_by_lua), the rest as before.
    store = Store()
    await services(backends, store, a=("a1",))
    o.put(store, o.ingress("web", o.rule("foo.com", o.path("/", "a"))))
    controller = await start_controller(store, enable_metrics=False)
    assert "portolan.log()" not in controller.layout.conf.read_text()
    assert (await client_for(controller).request("foo.com", "/")).backend == "a1"
    got = await scrape(controller)
    assert find(got, "requests") is None
    assert find(got, "config_last_reload_successful") == 1
