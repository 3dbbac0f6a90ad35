"""The model as a pure function: routing semantics (table-driven, nginx's location and server
selection emulated over the model), determinism, endpoints, TLS and conflicts."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest

from ingress import annotations
from ingress.annotations import Annotations
from ingress.classes import ClassPolicy
from ingress.layout import Layout
from ingress.model import CATCH_ALL, LOC_EXACT, LOC_PREFIX, LOC_ROOT
from ingress.modelcache import HostCache, build
from ingress.render import Listen, Renderer
from ingress.settings import NginxSettings
from kubewatch import Ingress
from tests.ingress import objects as o
from tests.ingress.modelkit import default_cert, fake_addresses, model_of, snapshot, store_of
from tests.ingress.routing import CASES, Case, route, standard_objects
from tests.ingress.tlsutil import Authority


@pytest.mark.parametrize("case", CASES, ids=str)
def test_routing(case: Case) -> None:
    policy = ClassPolicy(watch_without_class=bool(case.options.get("watch_without_class")))
    model = model_of(*case.ingresses, policy=policy)
    got = [(host, path, route(model, host, path)) for host, path, _ in case.requests]
    assert got == case.requests


def test_prefix_locations_are_element_wise_pairs() -> None:
    model = model_of(o.ingress("i", o.rule("foo.com", o.path("/foo/", "a"), o.path("/", "b"))))
    server = model.server("foo.com")
    assert server is not None
    assert [(loc.match, loc.path) for loc in server.locations] == [
        (LOC_PREFIX, "/foo/"),
        (LOC_EXACT, "/foo"),
        (LOC_ROOT, "/"),
    ]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_no_location_name_invites_nginx_s_automatic_redirect(case: Case) -> None:
    # nginx answers /p itself, with a 301 to /p/, when a location named /p/ proxies and "= /p" is missing.
    policy = ClassPolicy(watch_without_class=bool(case.options.get("watch_without_class")))
    for server in model_of(*case.ingresses, policy=policy).servers:
        exact = {loc.path for loc in server.locations if loc.match == LOC_EXACT}
        for loc in server.locations:
            if loc.match in (LOC_EXACT, LOC_PREFIX) and loc.path != "/" and loc.path.endswith("/"):
                assert loc.path[:-1] in exact, (server.host, loc.path)


def test_exact_keeps_its_location_next_to_a_prefix() -> None:
    model = model_of(o.ingress("i", o.rule("foo.com", o.path("/foo", "a", path_type="Exact"), o.path("/foo", "b"))))
    server = model.server("foo.com")
    assert server is not None
    exact = [loc for loc in server.locations if loc.match == LOC_EXACT]
    assert len(exact) == 1
    assert exact[0].rule == "Exact /foo"


def test_catch_all_server_always_exists() -> None:
    model = model_of()
    assert [s.host for s in model.servers] == [CATCH_ALL]
    assert model.servers[0].locations[0].target.status == 404


def test_servers_sorted_catch_all_exact_wildcard() -> None:
    model = model_of(
        o.ingress("i", o.rule("*.b.com", o.path("/", "a")), o.rule("z.com", o.path("/", "a"))),
        o.ingress("j", o.rule("*.a.com", o.path("/", "a")), o.rule("a.com", o.path("/", "a"))),
    )
    assert [s.host for s in model.servers] == [CATCH_ALL, "a.com", "z.com", "*.a.com", "*.b.com"]


def test_deterministic_whatever_the_order() -> None:
    ingresses = [
        o.ingress(f"ing-{i}", o.rule(f"h{i % 3}.com", o.path(f"/p{i % 7}", "abcd"[i % 4])), created=f"2024-0{i % 5}")
        for i in range(12)
    ]
    objs = standard_objects(fake_addresses())
    layout = Layout.at("/tmp/portolan-render-test")
    renderer = Renderer(layout, Listen(("127.0.0.1",), 8080, 8443))
    texts = set()
    for seed in range(5):
        shuffled = objs + ingresses
        random.Random(seed).shuffle(shuffled)
        model = build(snapshot(store_of(*shuffled)))
        texts.add(renderer.render(model).text)
    assert len(texts) == 1


def test_upstreams_are_ready_endpoints_never_cluster_ips() -> None:
    slice_ = o.endpoint_slice("multi", ["127.0.0.31", "127.0.0.30"], 9090, not_ready=("127.0.0.32",))
    svc = o.service("multi", ("web", 80, "http-alt"))
    slice_["ports"][0]["name"] = "web"
    model = model_of(o.ingress("i", o.rule("foo.com", o.path("/", "multi", port="web"))), extra=(svc, slice_))
    (upstream,) = [u for u in model.upstreams if u.service.startswith("default/multi")]
    assert upstream.endpoints == (("127.0.0.30", 9090), ("127.0.0.31", 9090))
    assert "10.96.0.10" not in str(model)


def test_port_number_and_name_share_one_upstream() -> None:
    model = model_of(o.ingress("i", o.rule("foo.com", o.path("/x", "a", port=80), o.path("/y", "a", port="http"))))
    assert [u.name for u in model.upstreams] == ["default_a_http"]


def test_external_name_service() -> None:
    ext = o.service("ext", ("http", 80, 80), type="ExternalName", external_name="127.0.0.77")
    dns = o.service("dns", type="ExternalName", external_name="api.example.com.")
    model = model_of(
        o.ingress("i", o.rule("foo.com", o.path("/ext", "ext", port=80), o.path("/dns", "dns", port=443))),
        extra=(ext, dns),
    )
    by_name = {u.name: u for u in model.upstreams}
    assert by_name["default_ext_80"].external == "127.0.0.77"
    assert not by_name["default_ext_80"].is_dns
    assert by_name["default_dns_443"].external == "api.example.com"
    assert by_name["default_dns_443"].is_dns
    assert by_name["default_dns_443"].external_port == 443


def test_conflicts_are_noted() -> None:
    model = model_of(
        o.ingress("old", o.rule("foo.com", o.path("/x", "a")), created="2024-01-01T00:00:00Z"),
        o.ingress("new", o.rule("foo.com", o.path("/x/", "b")), created="2024-01-02T00:00:00Z"),
    )
    assert any("default/new" in n and "already served by default/old" in n for n in model.notes)


def test_rejections_carry_the_reason() -> None:
    model = model_of(o.ingress("bad", o.rule("foo.com", o.path('/x"; }', "a", path_type="ImplementationSpecific"))))
    (rej,) = model.rejected
    assert rej.ingress == "default/bad"
    assert "spec.rules[0].http.paths[0].path" in rej.reason
    assert model.ingresses == ()


def test_excluded_ingresses_are_left_out() -> None:
    store = store_of(*standard_objects(fake_addresses()), o.ingress("i", o.rule("foo.com", o.path("/", "a"))))
    model = build(snapshot(store), exclude={"default/i"})
    assert model.server("foo.com") is None
    assert model.ingresses == ()


def test_each_ingress_is_parsed_once_per_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bisection builds one snapshot many times over: the Ingresses are parsed on the first build only.
    calls: list[object] = []
    real = annotations.parse

    def counting(raw: Mapping[str, str], *, allow_snippets: bool) -> tuple[Annotations, list[str]]:
        calls.append(raw)
        return real(raw, allow_snippets=allow_snippets)

    monkeypatch.setattr(annotations, "parse", counting)
    good = o.ingress("good", o.rule("foo.com", o.path("/", "a")))
    bad = o.ingress("bad", o.rule("bar.com", o.path("/x;", "a", path_type="ImplementationSpecific")))
    snap = snapshot(store_of(*standard_objects(fake_addresses()), good, bad))
    first = build(snap)
    assert build(snap, exclude={"default/good"}).ingresses == ()
    assert build(snap) == first
    assert len(calls) == 2
    assert first.ingresses == ("default/good",)
    assert [r.ingress for r in first.rejected] == ["default/bad"]


# ----------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority.create()


def _tls_case(ca: Authority, *extra: o.Obj, tls_hosts: list[str] | None = None, secret: str = "foo-tls"):
    crt, key = ca.issue("foo.com", "*.foo.com")
    tls = [{"hosts": tls_hosts if tls_hosts is not None else ["foo.com"], "secretName": secret}]
    ing = o.ingress("i", o.rule("foo.com", o.path("/", "a")), o.rule("bar.com", o.path("/", "a")), tls=tls)
    return model_of(ing, extra=(o.tls_secret("foo-tls", crt, key), *extra))


def test_tls_host_gets_its_certificate_and_redirect(ca: Authority) -> None:
    model = _tls_case(ca)
    foo, bar = model.server("foo.com"), model.server("bar.com")
    assert foo is not None
    assert bar is not None
    assert foo.cert is not None
    assert foo.cert != model.default_cert
    assert foo.ssl_redirect
    assert bar.cert is None
    assert not bar.ssl_redirect
    assert {c.digest for c in model.certificates} == {foo.cert, model.default_cert}


def test_tls_without_hosts_covers_the_ingress_hosts(ca: Authority) -> None:
    model = _tls_case(ca, tls_hosts=[])
    foo, bar = model.server("foo.com"), model.server("bar.com")
    assert foo is not None
    assert foo.cert is not None
    # bar.com is not in the certificate: default certificate, still redirected.
    assert bar is not None
    assert bar.cert is None
    assert bar.ssl_redirect
    assert any("does not cover bar.com" in n for n in model.notes)


def test_tls_missing_secret_falls_back_to_default_but_redirects(ca: Authority) -> None:
    model = _tls_case(ca, secret="nope")
    foo = model.server("foo.com")
    assert foo is not None
    assert foo.cert is None
    assert foo.ssl_redirect
    assert any("secret default/nope not found" in n for n in model.notes)


def test_tls_mismatched_key_is_refused(ca: Authority) -> None:
    crt, _ = ca.issue("foo.com")
    _, other_key = ca.issue("foo.com")
    ing = o.ingress("i", o.rule("foo.com", o.path("/", "a")), tls=[{"hosts": ["foo.com"], "secretName": "s"}])
    model = model_of(ing, extra=(o.tls_secret("s", crt, other_key),))
    foo = model.server("foo.com")
    assert foo is not None
    assert foo.cert is None
    assert any("does not match" in n for n in model.notes)


def test_ssl_redirect_can_be_turned_off(ca: Authority) -> None:
    crt, key = ca.issue("foo.com")
    ing = o.ingress("i", o.rule("foo.com", o.path("/", "a")), tls=[{"hosts": ["foo.com"], "secretName": "s"}])
    store = store_of(*standard_objects(fake_addresses()), o.tls_secret("s", crt, key), ing)
    model = build(snapshot(store, settings=NginxSettings(ssl_redirect=False)))
    foo = model.server("foo.com")
    assert foo is not None
    assert foo.cert is not None
    assert not foo.ssl_redirect


def test_default_cert_is_always_listed() -> None:
    assert model_of().certificates == (default_cert(),)


def test_hostile_service_and_endpoint_values_never_reach_the_config() -> None:
    # What the API server would refuse but a manifest (or a bug) can carry.
    svc = o.service("odd", ("http;x", 80, "http"), ("web", 81, "web"))
    slice_ = o.endpoint_slice("odd", ["fe80::1%;} evil", "::1"], 8080, port_name="web")
    slice_["addressType"] = "IPv6"
    junk = o.endpoint_slice("junk", ["not-an-ip"], 8080)
    model = model_of(
        o.ingress("i", o.rule("foo.com", o.path("/a", "odd", port=80), o.path("/b", "odd", port="web"),
                              o.path("/c", "junk"))),
        extra=(svc, slice_, o.service("junk", ("http", 80, "http")), junk),
    )  # fmt: skip
    assert route(model, "foo.com", "/a") == "503"  # invalid Service port name
    (odd,) = [u for u in model.upstreams if u.name == "default_odd_web"]
    assert odd.endpoints == (("::1", 8080),)
    assert route(model, "foo.com", "/c") == "503"
    text = Renderer(Layout.at("/tmp/x"), Listen(("127.0.0.1",), 80, 443)).render(model).text
    assert "evil" not in text
    assert "not-an-ip" not in text
    assert "http;x" not in text


# ----------------------------------------------------------------------------- incremental builds

HOSTS = ("a.com", "b.com", "c.com", "*.w.com", None)  # None: a rule without host (the catch-all)


def _random_ingress(rng: random.Random, n: int) -> o.Obj:
    rules = [o.rule(host, *(o.path(rng.choice(("/", "/x", "/x/y", "/z")), rng.choice(("a", "b", "missing")),
                                   path_type=rng.choice(("Prefix", "Exact")))
                            for _ in range(rng.randint(1, 2))))
             for host in rng.sample(HOSTS, rng.randint(0, 2))]  # fmt: skip
    ann = rng.choice(({}, {o.A + "canary": "true", o.A + "canary-weight": "10"}, {o.A + "use-regex": "true"},
                      {o.A + "affinity": "cookie"}, {o.A + "limit-rps": "5"}, {o.A + "proxy-body-size": "bad;"}))
    return o.ingress(f"i{n}", *rules, annotations=ann, created=f"2024-01-{rng.randint(1, 28):02d}T00:00:00Z",
                     default_backend=o.backend("c", 80) if rng.random() < 0.2 else None,
                     tls=[{"hosts": ["a.com"], "secretName": "nope"}] if rng.random() < 0.2 else None)


@pytest.mark.parametrize("seed", range(4))
def test_incremental_builds_equal_fresh_ones(seed: int) -> None:
    # One HostCache across a random run of Ingress, Service and endpoint changes: every model
    # equals the one a fresh build makes of the same objects, exclusions (bisection) included.
    rng = random.Random(seed)
    store = store_of(*standard_objects(fake_addresses()))
    cache = HostCache()
    for step in range(80):
        what = rng.random()
        if what < 0.4:
            o.put(store, _random_ingress(rng, rng.randint(0, 9)))
        elif what < 0.5:  # a status write: a new record, the same spec
            found = store.get("ingresses", "default", f"i{rng.randint(0, 9)}")
            if isinstance(found, Ingress):
                o.put(store, {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                              "metadata": {"name": found.name, "namespace": found.namespace, "uid": found.uid,
                                           "creationTimestamp": found.created, "annotations": found.annotations,
                                           "resourceVersion": str(step)},
                              "spec": found.spec, "status": {"loadBalancer": {"ingress": [{"ip": "10.9.9.9"}]}},
                              })  # fmt: skip
        elif what < 0.65:
            o.remove(store, o.ingress(f"i{rng.randint(0, 9)}"))
        elif what < 0.8:
            o.put(store, o.endpoint_slice(rng.choice(("a", "b")), [f"127.0.1.{rng.randint(1, 9)}"], 8080))
        elif what < 0.9:
            o.put(store, o.service(rng.choice(("a", "b")), ("http", 80, rng.choice(("http", 8080)))))
        else:
            o.remove(store, o.service("b"))
        snap = snapshot(store, settings=NginxSettings(hsts=step % 20 < 10))
        exclude = {f"default/i{rng.randint(0, 9)}"} if rng.random() < 0.2 else set()
        assert build(snap, exclude, cache) == build(snap, exclude), step
    assert cache.built < 80 * len(HOSTS)  # hosts were reused, not rebuilt every step


def test_a_status_write_rebuilds_nothing() -> None:
    # The controller writes every Ingress's status after a bulk load; each write is a new record
    # in the store. Only status differs: no host is built again, the servers are the same
    # objects. A change of spec or annotations after that is still seen.
    web = o.ingress("web", o.rule("foo.com", o.path("/a", "a")))
    store = store_of(*standard_objects(fake_addresses()), web)
    cache = HostCache()
    first = build(snapshot(store), (), cache)
    built = cache.built
    for n in range(3):
        o.put(store, {**web, "status": {"loadBalancer": {"ingress": [{"ip": f"10.0.0.{n}"}]}},
                      "metadata": {**web["metadata"], "resourceVersion": str(10 + n)}})  # fmt: skip
        again = build(snapshot(store), (), cache)
        assert cache.built == built
        assert again.servers == first.servers
        assert all(a is b for a, b in zip(again.servers, first.servers, strict=True))
    o.put(store, o.ingress("web", o.rule("foo.com", o.path("/b", "a")), resource_version="20"))
    changed = build(snapshot(store), (), cache)
    assert cache.built > built
    assert changed == build(snapshot(store))
    assert [loc.path for loc in changed.server("foo.com").locations if loc.path.startswith("/b")]  # type: ignore[union-attr]
