"""Pooled hosts (ingress/pooling.py): which hosts share a server block, the paths record the
balancer matches, and the blocks the renderer makes of them. What requests meet through
nginx either way is checked by test_nginx_routing's table, run with and without pooling."""

from __future__ import annotations

import re

import pytest

from ingress import livedata
from ingress.layout import Layout
from ingress.model import CATCH_ALL, Model
from ingress.modelcache import HostCache, build
from ingress.pooling import Pool, paths_record, pool_of
from ingress.render import Listen, Renderer
from ingress.settings import NginxSettings
from tests.ingress import objects as o
from tests.ingress.modelkit import fake_addresses, model_of, snapshot, store_of
from tests.ingress.objects import A
from tests.ingress.routing import standard_objects

LAYOUT = Layout.at("/tmp/portolan-pooling")
SETTINGS = NginxSettings()
POOLED = NginxSettings(host_pool_threshold=0)
PLAIN = Pool(redirect=False, hsts=False)


def host(annotations: dict[str, str] | None = None, *paths: o.Obj, tls: bool = False) -> Model:
    """foo.com with ``paths`` (default: Prefix /a to Service a) from one Ingress."""
    rule = o.rule("foo.com", *(paths or (o.path("/a", "a"),)))
    extra: tuple[o.Obj, ...] = ()
    if tls:
        extra = (o.tls_secret("foo-tls", b"", b""),)
    ann = {A + k: v for k, v in (annotations or {}).items()}
    tls_spec = [{"hosts": ["foo.com"], "secretName": "foo-tls"}] if tls else None
    return model_of(o.ingress("i", rule, annotations=ann, tls=tls_spec), extra=extra)


def foo(model: Model) -> Pool | None:
    server = model.server("foo.com")
    assert server is not None
    return pool_of(server, model.settings)


# (annotations, paths, TLS, the pool; None = a block of its own)
CASES = [
    ("a Prefix path", {}, (), False, PLAIN),
    ("Exact and Prefix paths", {}, (o.path("/x", "a", path_type="Exact"), o.path("/y", "b")), False, PLAIN),
    ("a Service that does not exist (503)", {}, (o.path("/a", "missing"),), False, PLAIN),
    ("a Service without ready endpoints", {}, (o.path("/a", "empty"),), False, PLAIN),
    ("canary annotations are live data", {"canary-weight": "10"}, (), False, PLAIN),
    ("load-balance round_robin", {"load-balance": "round_robin"}, (), False, PLAIN),
    ("TLS: redirect and HSTS", {}, (), True, Pool(redirect=True, hsts=True)),
    ("TLS without redirect", {"ssl-redirect": "false"}, (), True, None),  # the root still redirects
    ("force-ssl-redirect", {"force-ssl-redirect": "true"}, (), False, None),  # not the root
    ("use-regex", {"use-regex": "true"}, (), False, None),
    ("rewrite-target", {"rewrite-target": "/"}, (), False, None),
    ("load-balance ewma", {"load-balance": "ewma"}, (), False, None),
    ("upstream-hash-by", {"upstream-hash-by": "$remote_addr"}, (), False, None),
    ("affinity", {"affinity": "cookie"}, (), False, None),
    ("proxy-body-size", {"proxy-body-size": "8m"}, (), False, None),
    ("proxy-read-timeout", {"proxy-read-timeout": "5"}, (), False, None),
    ("backend-protocol", {"backend-protocol": "GRPC"}, (), False, None),
    ("allowlist-source-range", {"allowlist-source-range": "10.0.0.0/8"}, (), False, None),
    ("enable-access-log false", {"enable-access-log": "false"}, (), False, None),
    ("upstream-vhost", {"upstream-vhost": "x.example"}, (), False, None),
    ("app-root", {"app-root": "/app"}, (), False, None),
    ("limit-rps", {"limit-rps": "5"}, (), False, None),
    ("permanent-redirect", {"permanent-redirect": "https://example.com/"}, (), False, None),
]


@pytest.mark.parametrize(("name", "ann", "paths", "tls", "want"), CASES, ids=[c[0] for c in CASES])
def test_which_hosts_pool(name: str, ann: dict[str, str], paths: tuple[o.Obj, ...], tls: bool,
                          want: Pool | None) -> None:  # fmt: skip
    assert foo(host(ann, *paths, tls=tls)) == want


def test_catch_all_and_wildcards_keep_their_blocks() -> None:
    model = model_of(o.ingress("i", o.rule(None, o.path("/a", "a")), o.rule("*.foo.com", o.path("/a", "a"))))
    assert [(s.host, pool_of(s, model.settings)) for s in model.servers] == [(CATCH_ALL, None), ("*.foo.com", None)]


def test_paths_record_names_what_each_location_does() -> None:
    # Each path names its location's route; a route without an upstream says its status.
    model = host({}, o.path("/x", "a", path_type="Exact"), o.path("/y", "b"), o.path("/z", "missing"))
    server = model.server("foo.com")
    assert server is not None
    routes = {loc.path: loc.route for loc in server.locations}
    fields = dict(part.split("=") for part in paths_record(server).split(" "))
    assert fields == {"e/x": routes["/x"], "e/y": routes["/y"], "p/y/": routes["/y/"], "e/z": routes["/z"],
                      "p/z/": routes["/z/"], "d": routes["/"]}  # fmt: skip
    assert all(route.startswith("r") for route in routes.values())
    records = livedata.records(model)
    assert records["p:foo.com"] == paths_record(server)
    assert (records["r:" + routes["/z"]], records["r:" + routes["/"]]) == ("st=503", "st=404")
    assert records["r:" + routes["/x"]] == "u=default_a_http&lb=round_robin&un=default-a-80"


def test_threshold_decides_and_blocks_are_few() -> None:
    hosts = [o.ingress(f"i{n}", o.rule(f"h{n}.com", o.path("/a", "a"), o.path("/b", "b"))) for n in range(30)]
    odd = o.ingress("odd", o.rule("odd.com", o.path("/a", "a")), annotations={A + "proxy-body-size": "8m"})
    store = store_of(*standard_objects(fake_addresses()), *hosts, odd)
    for threshold, pooled in [(31, False), (30, True)]:
        settings = NginxSettings(host_pool_threshold=threshold)
        rendered = Renderer(LAYOUT, Listen()).render(build(snapshot(store, settings=settings)))
        keys = [f.key for f in rendered.fragments]
        if pooled:
            assert keys == [CATCH_ALL, "odd.com", "pool:plain"]
            pool = rendered.fragments[-1]
            assert pool.names == tuple(f"h{n}.com" for n in sorted(range(30), key=str))
            # Two locations (and the "if"s) for the 30 hosts of 60 paths: each location of a
            # block costs nginx an OpenSSL context at every reload with Debian's Lua module.
            assert re.findall(r"^ +(location|if) ", pool.text, re.M) == ["location", "location", "if"]
        else:
            assert len(keys) == 32
            assert "pool:" not in rendered.text


def test_a_path_change_keeps_the_pool_block_and_a_new_host_changes_it() -> None:
    from ingress.applier import Applier

    objs = [o.ingress(f"i{n}", o.rule(f"h{n}.com", o.path("/a", "a"))) for n in range(3)]
    store = store_of(*standard_objects(fake_addresses()), *objs)
    cache, renderer = HostCache(), Renderer(LAYOUT, Listen())
    first = renderer.render(build(snapshot(store, settings=POOLED), (), cache))
    o.put(store, o.ingress("i1", o.rule("h1.com", o.path("/a", "a"), o.path("/new", "b"))))
    second_model = build(snapshot(store, settings=POOLED), (), cache)
    second = renderer.render(second_model)
    # Only data changed: the same configuration, and the host's paths record says /new.
    assert second.text == first.text
    assert "p/new/=" in livedata.records(second_model)["p:h1.com"]
    o.put(store, o.ingress("i9", o.rule("h9.com", o.path("/a", "a"))))
    third = renderer.render(build(snapshot(store, settings=POOLED), (), cache))
    applier = Applier.__new__(Applier)  # only the comparison, no nginx
    applier.running = second
    assert applier.changed_hosts(third) == {"pool:plain"}
    partial = third.partial({"pool:plain"})
    assert 'server_name "h9.com";' in partial
    assert "# catch-all" in partial
