"""Gateway API through real nginx: HTTPRoute matching and precedence as the spec says them,
weighted backends, listener hostnames and isolation, and changes that reach traffic without a
reload. Each case is Gateways and HTTPRoutes (plus the standard Services) and requests with
the outcome each must meet: the backend that answered ("<namespace>/<service>"), or a status.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from ingress.controller import Controller
from kubewatch import Store
from tests.ingress import gateway_objects as g
from tests.ingress import objects as o
from tests.ingress.backends import Backends
from tests.ingress.conftest import StartController, free_ports, until
from tests.ingress.test_nginx_live import no_reload
from tests.ingress.test_nginx_tls import peer_certificate
from tests.ingress.tlsutil import Authority

SERVICES = (("default", "a"), ("default", "b"), ("default", "c"), ("default", "d"), ("other", "e"))

# (Host, path, expected) or (Host, path, expected, {"method": ..., "headers": {...}})
Request = tuple[Any, ...]


@dataclass
class Case:
    """Objects beside the standard ones, and requests with their outcomes."""

    name: str
    objects: list[g.Obj]
    requests: list[Request]
    listeners: list[g.Obj] = field(default_factory=list)  # the Gateway's (default: one HTTP on 80)

    def __str__(self) -> str:
        return self.name


M = g.match
R = g.rule
B = g.backend


def route(name: str, *rules: g.Obj, **kw: Any) -> g.Obj:
    return g.route(name, *rules, **kw)


CASES = [
    Case("prefix is element-wise", [route("r", R(B("a"), matches=[M("/foo")]))],
         [("x.com", "/foo", "default/a"), ("x.com", "/foo/", "default/a"), ("x.com", "/foo/bar", "default/a"),
          ("x.com", "/foobar", "404"), ("x.com", "/", "404")]),
    Case("prefix with a trailing slash", [route("r", R(B("a"), matches=[M("/foo/")]))],
         [("x.com", "/foo", "default/a"), ("x.com", "/foo/x", "default/a"), ("x.com", "/foox", "404")]),
    Case("exact is exact", [route("r", R(B("a"), matches=[M("/foo", "Exact")]))],
         [("x.com", "/foo", "default/a"), ("x.com", "/foo/", "404"), ("x.com", "/FOO", "404"),
          ("x.com", "/foobar", "404")]),
    Case("no matches is prefix /", [route("r", R(B("a")))],
         [("x.com", "/", "default/a"), ("x.com", "/anything/at/all", "default/a")]),
    Case("regular expression matches the whole path",
         [route("r", R(B("a"), matches=[M(r"/v[0-9]+/.*", "RegularExpression")]), R(B("b")))],
         [("x.com", "/v1/x", "default/a"), ("x.com", "/v12/", "default/a"), ("x.com", "/x/v1/x", "default/b"),
          ("x.com", "/v1", "default/b")]),
    Case("exact beats prefix, longer prefix beats shorter",
         [route("r", R(B("a"), matches=[M("/")]), R(B("b"), matches=[M("/foo")]),
                R(B("c"), matches=[M("/foo", "Exact")]), R(B("d"), matches=[M("/foo/bar")]))],
         [("x.com", "/foo", "default/c"), ("x.com", "/foo/x", "default/b"), ("x.com", "/foo/bar/x", "default/d"),
          ("x.com", "/bar", "default/a")]),
    Case("headers: exact and regex, ANDed, names case-insensitive",
         [route("r", R(B("a"), matches=[M(headers=[("Exact", "X-Env", "canary")])]),
                R(B("b"), matches=[M(headers=[("RegularExpression", "x-version", "v[0-9]"),
                                              ("Exact", "x-zone", "eu")])]), R(B("c")))],
         [("x.com", "/", "default/a", {"headers": {"x-env": "canary"}}),
          ("x.com", "/", "default/c", {"headers": {"X-Env": "Canary"}}),
          ("x.com", "/", "default/b", {"headers": {"X-Version": "v2", "X-Zone": "eu"}}),
          ("x.com", "/", "default/c", {"headers": {"X-Version": "v2"}}),
          ("x.com", "/", "default/c", {"headers": {"X-Version": "v2x", "X-Zone": "eu"}}),
          ("x.com", "/", "default/c")]),
    Case("query parameters: exact and regex, names case-sensitive",
         [route("r", R(B("a"), matches=[M(query=[("Exact", "animal", "whale")])]),
                R(B("b"), matches=[M(query=[("RegularExpression", "n", "[0-9]+")])]), R(B("c")))],
         [("x.com", "/?animal=whale", "default/a"), ("x.com", "/?Animal=whale", "default/c"),
          ("x.com", "/?animal=dolphin", "default/c"), ("x.com", "/?n=42", "default/b"),
          ("x.com", "/?n=4x", "default/c"), ("x.com", "/?animal=whale&animal=dolphin", "default/a")]),
    Case("method",
         [route("r", R(B("a"), matches=[M(method="POST")]), R(B("b"), matches=[M("/", method="GET")]))],
         [("x.com", "/", "default/a", {"method": "POST"}), ("x.com", "/", "default/b"),
          ("x.com", "/", "404", {"method": "PUT"})]),
    # Tie-breakers past the path: method, then more headers, then more query parameters.
    Case("precedence: method, then header count, then query count",
         [route("r", R(B("a"), matches=[M("/p", headers=[("Exact", "h1", "1"), ("Exact", "h2", "2")])]),
                R(B("b"), matches=[M("/p", method="GET")]),
                R(B("c"), matches=[M("/q", query=[("Exact", "q1", "1")], headers=[("Exact", "h1", "1")])]),
                R(B("d"), matches=[M("/q", headers=[("Exact", "h1", "1")])]))],
         [("x.com", "/p", "default/b", {"headers": {"h1": "1", "h2": "2"}}),
          ("x.com", "/p", "default/a", {"method": "POST", "headers": {"h1": "1", "h2": "2"}}),
          ("x.com", "/q?q1=1", "default/c", {"headers": {"h1": "1"}}),
          ("x.com", "/q", "default/d", {"headers": {"h1": "1"}})]),
    Case("precedence: oldest route, then namespace/name",
         [route("young", R(B("a"), matches=[M("/same")]), created="2024-06-01T00:00:00Z"),
          route("old", R(B("b"), matches=[M("/same")]), created="2024-01-01T00:00:00Z"),
          route("zz", R(B("c"), matches=[M("/tie")])), route("aa", R(B("d"), matches=[M("/tie")]))],
         [("x.com", "/same", "default/b"), ("x.com", "/tie", "default/d")]),
    Case("precedence: a precise hostname beats a wildcard, whatever the path",
         [route("wild", R(B("a"), matches=[M("/long/path")]), hostnames=["*.example.com"]),
          route("precise", R(B("b")), hostnames=["foo.example.com"])],
         [("foo.example.com", "/long/path", "default/b"), ("bar.example.com", "/long/path", "default/a"),
          ("a.b.example.com", "/long/path", "default/a"), ("example.com", "/long/path", "404")]),
    Case("route hostnames that do not meet the listener's are dropped",
         [route("r", R(B("a")), hostnames=["test.example.com", "test.example.net"])],
         [("test.example.com", "/", "default/a"), ("test.example.net", "/", "404"), ("x.example.com", "/", "404")],
         listeners=[g.listener(hostname="*.example.com")]),
    Case("listener isolation: a host a precise listener claims never reaches the wildcard's routes",
         [route("wild", R(B("a")), parents=[g.parent(section="wild")]),
          route("precise", R(B("b"), matches=[M("/only")]), parents=[g.parent(section="precise")]),
          route("any", R(B("c")), parents=[g.parent(section="any")])],
         [("x.example.com", "/", "default/a"), ("specific.example.com", "/only", "default/b"),
          ("specific.example.com", "/other", "404"), ("example.com", "/", "default/c"),
          ("elsewhere.org", "/", "default/c")],
         listeners=[g.listener("wild", hostname="*.example.com"),
                    g.listener("precise", hostname="specific.example.com"), g.listener("any")]),
    Case("weight 0 gets nothing; missing, unpermitted and foreign-kind backends answer 500",
         [route("r", R(B("a"), B("b", weight=0), matches=[M("/zero")]),
                R(B("missing"), matches=[M("/missing")]), R(B("e", namespace="other"), matches=[M("/foreign")]),
                R(B("a", port=81), matches=[M("/noport")]), R(B("a", kind="Pod"), matches=[M("/kind")]),
                R(B("a", weight=0), matches=[M("/allzero")]), R(matches=[M("/none")]))],
         [("x.com", "/zero", "default/a"), ("x.com", "/zero", "default/a"), ("x.com", "/missing", "500"),
          ("x.com", "/foreign", "500"), ("x.com", "/noport", "500"), ("x.com", "/kind", "500"),
          ("x.com", "/allzero", "500"), ("x.com", "/none", "500")]),
    Case("a ReferenceGrant lets a route reach another namespace's Service",
         [route("r", R(B("e", namespace="other"))), g.grant("let", "other", "default", to_name="e")],
         [("x.com", "/", "other/e")]),
    Case("a route from another namespace: Same refuses it, All takes it",
         [route("r", R(B("e")), namespace="other", parents=[g.parent(namespace="default", section="same")]),
          route("r2", R(B("e")), namespace="other", parents=[g.parent(namespace="default", section="all")])],
         [("same.com", "/", "404"), ("all.com", "/", "other/e")],
         listeners=[g.listener("same", hostname="same.com"), g.listener("all", hostname="all.com", allowed="All")]),
]


async def standard_store(backends: Backends) -> Store:
    """A Store with the standard Services, each with one echo backend named "<namespace>/<service>"."""
    store = Store()
    for ns, name in SERVICES:
        (ip,), port = await backends.start(f"{ns}/{name}")
        o.put(store, o.service(name, ("http", 80, "http"), namespace=ns),
              o.endpoint_slice(name, [ip], port, namespace=ns))  # fmt: skip
    return store


async def start(start_controller: StartController, backends: Backends, objects: list[g.Obj],
                listeners: list[g.Obj] | None = None, **options: Any) -> tuple[Controller, Store, int]:  # fmt: skip
    """The standard Services (one echo backend each, named "<namespace>/<service>"), our
    GatewayClass and a Gateway "gw" with ``listeners``, ``objects``; a controller whose
    listener port 80 is nginx's returned port."""
    store = await standard_store(backends)
    o.put(store, g.gateway_class(), g.gateway("gw", *(listeners or [g.listener()])), *objects)
    (port,) = free_ports(1)
    controller = await start_controller(store, listener_port_map={80: port}, **options)
    return controller, store, port


async def get(port: int, host: str, path: str, method: str = "GET",
              headers: dict[str, str] | None = None) -> tuple[int, str | None]:  # fmt: skip
    """(status, the backend that answered) for one request to nginx's port, a new connection each."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        session.request(method, f"http://127.0.0.1:{port}{path}", headers={"Host": host, **(headers or {})},
                        allow_redirects=False, timeout=aiohttp.ClientTimeout(total=5)) as resp,
    ):  # fmt: skip
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body.get("backend") if isinstance(body, dict) else None


def outcome(status: int, backend: str | None) -> str:
    return backend if status == 200 and backend else str(status)


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_gateway_matching(case: Case, start_controller: StartController, backends: Backends) -> None:
    _, _, port = await start(start_controller, backends, case.objects, case.listeners)
    got = []
    for host, path, _, *extra in case.requests:
        kw = extra[0] if extra else {}
        got.append((host, path, outcome(*await get(port, host, path, **kw)), *extra))
    assert got == case.requests


async def test_weighted_split_and_invalid_share(start_controller: StartController, backends: Backends) -> None:
    # 3:1 between a and b; with a missing backend of weight 1 beside a, about half get 500.
    objs = [route("r", R(B("a", weight=3), B("b", weight=1), matches=[M("/split")]),
                  R(B("a"), B("missing"), matches=[M("/half")]))]  # fmt: skip
    _, _, port = await start(start_controller, backends, objs)
    split = Counter([outcome(*await get(port, "x.com", "/split")) for _ in range(200)])
    assert set(split) == {"default/a", "default/b"}
    assert 110 < split["default/a"] < 190, split
    half = Counter([outcome(*await get(port, "x.com", "/half")) for _ in range(200)])
    assert set(half) == {"default/a", "500"}
    assert 60 < half["500"] < 140, half


async def test_routes_and_endpoints_change_without_reload(start_controller: StartController,
                                                          backends: Backends) -> None:  # fmt: skip
    objs = [route("r", R(B("a"), matches=[M("/x")]))]
    controller, store, port = await start(start_controller, backends, objs)
    assert outcome(*await get(port, "x.com", "/x")) == "default/a"
    conf = controller.layout.conf.read_text()
    not_reloaded = no_reload(controller)
    # A new rule, a changed backend: data only.
    o.put(store, route("r", R(B("b"), matches=[M("/x")]), R(B("c"), matches=[M("/y", "Exact")]), generation=2))
    await until(lambda: outcome_is(port, "/y", "default/c"))
    assert outcome(*await get(port, "x.com", "/x")) == "default/b"
    # The Service's pod moves: the new endpoint serves, still without a reload.
    (ip,), new_port = await backends.start("default/b-moved")
    o.put(store, o.endpoint_slice("b", [ip], new_port))
    await until(lambda: outcome_is(port, "/x", "default/b-moved"))
    # A route removed: its paths answer 404.
    g.remove(store, route("r"))
    await until(lambda: outcome_is(port, "/x", "404"))
    assert controller.layout.conf.read_text() == conf
    not_reloaded()


async def outcome_is(port: int, path: str, want: str) -> bool:
    return outcome(*await get(port, "x.com", path)) == want


async def test_https_listeners_serve_their_secrets_by_sni(start_controller: StartController, backends: Backends,
                                                         authority: Authority) -> None:  # fmt: skip
    # Four HTTPS listeners on one port: each handshake gets the Secret of the listener whose
    # hostname fits the SNI name best, byte for byte; a Secret in another namespace only
    # with a ReferenceGrant.
    pems = {name: authority.issue(*names) for name, names in
            {"exact": ("a.example.com",), "wild": ("*.example.com",), "granted": ("other.org",),
             "any": ("fallback.test",)}.items()}  # fmt: skip
    secrets = [o.tls_secret(name, *pems[name], namespace="certs" if name == "granted" else "default") for name in pems]
    secrets.append(o.tls_secret("refused", *pems["granted"], namespace="certs"))  # no grant names it

    def https(name: str, hostname: str | None, ns: str | None = None) -> g.Obj:
        out = g.listener(name, port=443, protocol="HTTPS", hostname=hostname)
        out["tls"] = {"certificateRefs": [{"name": name, **({"namespace": ns} if ns else {})}]}
        return out

    listeners = [https("exact", "a.example.com"), https("wild", "*.example.com"),
                 https("granted", "other.org", "certs"), https("refused", "refused.org", "certs"), https("any", None)]
    objs = [*secrets, g.grant("gw-certs", "certs", "default", to_kind="Secret", to_name="granted", from_kind="Gateway"),
            route("r", R(B("a")))]  # fmt: skip
    store = await standard_store(backends)
    o.put(store, g.gateway_class(), g.gateway("gw", *listeners), *objs)
    (port,) = free_ports(1)
    controller = await start_controller(store, listener_port_map={443: port})
    for sni, served in [("a.example.com", "exact"), ("x.y.example.com", "wild"), ("other.org", "granted"),
                        ("refused.org", "any"), ("elsewhere.net", "any")]:  # fmt: skip
        got = await peer_certificate(port, sni)
        assert got == x509.load_pem_x509_certificate(pems[served][0]), (sni, served)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        for host in ("a.example.com", "b.example.com", "other.org"):
            async with session.get(f"https://127.0.0.1:{port}/", headers={"Host": host}, ssl=False,
                                   server_hostname=host) as resp:  # fmt: skip
                assert (await resp.json())["backend"] == "default/a", host
    status = next(i for i in controller.statuses() if i["kind"] == "Gateway")["status"]
    refused = next(li for li in status["listeners"] if li["name"] == "refused")
    assert {c["type"]: c["reason"] for c in refused["conditions"]}["ResolvedRefs"] == "RefNotPermitted"
    # The grant deleted: the listener that used it is no longer served.
    g.remove(store, objs[len(secrets)])
    await until(lambda: _cert_is(port, "other.org", pems["any"][0]))


async def _cert_is(port: int, sni: str, pem: bytes) -> bool:
    return await peer_certificate(port, sni) == x509.load_pem_x509_certificate(pem)


async def test_a_port_shared_with_ingresses(start_controller: StartController, backends: Backends) -> None:
    # Listeners on the Ingresses' port share nginx's listen: a host an Ingress rule names is
    # the Ingress's, HTTPRoutes get the hosts their hostnames name that no Ingress does, and
    # hosts nobody names meet the Ingress catch-all (the default backend's 404).
    (http_port,) = free_ports(1)
    objs = [o.ingress_class(), o.ingress("ing", o.rule("foo.com", o.path("/", "a"))),
            route("named", R(B("b")), hostnames=["foo.com", "bar.com"], parents=[g.parent(section="any")]),
            route("wild", R(B("c")), parents=[g.parent(section="wild")]),
            route("unnamed", R(B("d")), parents=[g.parent(section="any")])]  # fmt: skip
    store = await standard_store(backends)
    o.put(store, g.gateway_class(), g.gateway("gw", g.listener("any"), g.listener("wild", hostname="*.example.com")),
          *objs)  # fmt: skip
    controller = await start_controller(store, http_port=http_port, listener_port_map={80: http_port})
    want = [("foo.com", "default/a"), ("bar.com", "default/b"), ("x.example.com", "default/c"),
            ("a.b.example.com", "default/c"), ("unknown.org", "404")]  # fmt: skip
    assert [(h, outcome(*await get(http_port, h, "/"))) for h, _ in want] == want
    assert controller.model is not None
    assert any(n.startswith("HTTPRoute default/named: foo.com on port") for n in controller.model.notes)
    # An Ingress takes bar.com: from then on it is the Ingress's.
    o.put(store, o.ingress("ing2", o.rule("bar.com", o.path("/", "c"))))
    await until(lambda: _host_is(http_port, "bar.com", "default/c"))
    assert outcome(*await get(http_port, "x.example.com", "/")) == "default/c"
    status = next(i for i in controller.statuses() if i["kind"] == "Gateway")["status"]
    assert [li["attachedRoutes"] for li in status["listeners"]] == [2, 1]


async def _host_is(port: int, host: str, want: str) -> bool:
    return outcome(*await get(port, host, "/")) == want


def redirect(**spec: Any) -> g.Obj:
    return {"type": "RequestRedirect", "requestRedirect": spec}


FULL, PREFIX = "ReplaceFullPath", "ReplacePrefixMatch"

# (the rule's prefix, the redirect, the request's path, the status and Location expected).
# The listener's port is 80 (nginx's is another): it never shows; a scheme's own port neither.
REDIRECTS = [
    ("/r1", redirect(hostname="example.org"), "/r1/a?q=1", 302, "http://example.org/r1/a?q=1"),
    ("/r2", redirect(scheme="https"), "/r2", 302, "https://x.com/r2"),
    ("/r3", redirect(scheme="https", port=8443, statusCode=301), "/r3", 301, "https://x.com:8443/r3"),
    ("/r4", redirect(path={"type": FULL, "replaceFullPath": "/new"}), "/r4/deep", 302, "http://x.com/new"),
    ("/r5", redirect(path={"type": PREFIX, "replacePrefixMatch": "/xyz"}), "/r5/a", 302, "http://x.com/xyz/a"),
    ("/r6", redirect(path={"type": PREFIX, "replacePrefixMatch": "/"}), "/r6", 302, "http://x.com/"),
    ("/r7", redirect(port=8080, statusCode=308), "/r7", 308, "http://x.com:8080/r7"),
    ("/r8", redirect(scheme="http", port=80), "/r8", 302, "http://x.com/r8"),
]


async def test_filters(start_controller: StartController, backends: Backends) -> None:
    rules = [R(matches=[M(prefix)], filters=[f]) for prefix, f, *_ in REDIRECTS]
    modify = {"type": "RequestHeaderModifier", "requestHeaderModifier": {
        "set": [{"name": "X-Set", "value": "ours"}], "add": [{"name": "X-Add", "value": "b"}], "remove": ["X-Gone"]}}
    rewrite_prefix = {"type": "URLRewrite", "urlRewrite": {"hostname": "rewritten.example",
                                                           "path": {"type": PREFIX, "replacePrefixMatch": "/new"}}}
    rewrite_full = {"type": "URLRewrite", "urlRewrite": {"path": {"type": FULL, "replaceFullPath": "/full"}}}
    response = {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
        "set": [{"name": "X-Backend", "value": "hidden"}], "add": [{"name": "X-Extra", "value": "yes"}],
        "remove": ["Content-Language"]}}
    rules += [R(B("a"), matches=[M("/headers")], filters=[modify]),
              R(B("a"), matches=[M("/pre")], filters=[rewrite_prefix]),
              R(B("a"), matches=[M("/whole")], filters=[rewrite_full]),
              R(B("a"), matches=[M("/response")], filters=[response])]  # fmt: skip
    _, _, port = await start(start_controller, backends, [route("r", *rules)])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        got = []
        for _, _, path, *_ in REDIRECTS:
            async with session.get(f"http://127.0.0.1:{port}{path}", headers={"Host": "x.com"},
                                   allow_redirects=False) as resp:  # fmt: skip
                got.append((resp.status, resp.headers.get("Location")))
        assert got == [(status, location) for *_, status, location in REDIRECTS]

        async def echo(path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
            async with session.get(f"http://127.0.0.1:{port}{path}", headers={"Host": "x.com", **(headers or {})},
                                   allow_redirects=False) as resp:  # fmt: skip
                assert resp.status == 200, path
                body: dict[str, Any] = await resp.json()
                return body

        seen = (await echo("/headers", {"X-Set": "theirs", "X-Add": "a", "X-Gone": "x", "X-Kept": "k"}))["headers"]
        assert (seen["X-Set"], seen["X-Add"], seen.get("X-Gone"), seen["X-Kept"]) == ("ours", "a,b", None, "k")
        assert (await echo("/headers"))["headers"]["X-Add"] == "b"
        prefixed = await echo("/pre/x/y?z=1")
        assert (prefixed["path"], prefixed["headers"]["Host"]) == ("/new/x/y?z=1", "rewritten.example")
        assert (await echo("/pre"))["path"] == "/new"
        async with session.get(f"http://127.0.0.1:{port}/response", headers={"Host": "x.com"}) as resp:
            assert (resp.headers["X-Backend"], resp.headers["X-Extra"]) == ("hidden", "yes")
        whole = await echo("/whole/anything")
        assert (whole["path"], whole["headers"]["Host"]) == ("/full", "x.com")


async def test_timeouts(start_controller: StartController, backends: Backends) -> None:
    # backendRequest bounds each try (connect, send, read): a slower backend is a 504.
    fast = {**R(B("a"), matches=[M("/sleep", "PathPrefix")]), "timeouts": {"backendRequest": "300ms"}}
    none = {**R(B("a"), matches=[M("/sleep/0.6", "Exact")]), "timeouts": {"request": "0s"}}
    _, _, port = await start(start_controller, backends, [route("r", fast, none)])
    assert outcome(*await get(port, "x.com", "/sleep/0.01")) == "default/a"
    assert outcome(*await get(port, "x.com", "/sleep/1")) == "504"
    assert outcome(*await get(port, "x.com", "/sleep/0.6")) == "default/a"


async def test_https_listener_on_the_ingress_https_port(start_controller: StartController, backends: Backends,
                                                        authority: Authority) -> None:  # fmt: skip
    # On the Ingresses' HTTPS port, a listener's certificate is served for the names its block
    # got, the Ingresses' for theirs.
    (https_port,) = free_ports(1)
    gw_pem, ing_pem = authority.issue("*.example.com"), authority.issue("ing.example.com")
    listener = {**g.listener("https", 443, "HTTPS", "*.example.com"), "tls": {"certificateRefs": [{"name": "gw"}]}}
    store = await standard_store(backends)
    o.put(store, o.tls_secret("gw", *gw_pem), o.tls_secret("ing", *ing_pem), o.ingress_class(),
          o.ingress("ing", o.rule("ing.example.com", o.path("/", "a")),
                    tls=[{"hosts": ["ing.example.com"], "secretName": "ing"}]),
          g.gateway_class(), g.gateway("gw", listener), route("r", R(B("b"))))  # fmt: skip
    await start_controller(store, https_port=https_port, listener_port_map={443: https_port})
    for sni, pem in (("app.example.com", gw_pem), ("ing.example.com", ing_pem)):
        assert await peer_certificate(https_port, sni) == x509.load_pem_x509_certificate(pem[0]), sni
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        for host, backend in (("app.example.com", "default/b"), ("ing.example.com", "default/a")):
            async with session.get(f"https://127.0.0.1:{https_port}/", headers={"Host": host}, ssl=False,
                                   server_hostname=host) as resp:  # fmt: skip
                assert (await resp.json())["backend"] == backend, host
