"""Annotations in the pure model: regex mode per host, canaries, per-location redirects,
rejection of an Ingress with a bad annotation (the others still built)."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from ingress import livedata
from ingress.model import LOC_EXACT, LOC_EXACT_REGEX, LOC_REGEX, LOC_ROOT, Model, SessionCookie
from tests.ingress import objects as o
from tests.ingress.modelkit import canary_model, model_of
from tests.ingress.objects import A


def live_route(model: Model, host: str = "foo.com") -> dict[str, str]:
    """The first location's route as the balancer reads it (one value per field)."""
    server = model.server(host)
    assert server is not None
    assert server.locations[0].route
    record = livedata.records(model)[f"r:{server.locations[0].route}"]
    return {k: v[0] for k, v in parse_qs(record).items()}

REGEX = {A + "use-regex": "true"}


def locations(model, host: str) -> list[tuple[str, str, str]]:
    server = model.server(host)
    assert server is not None
    return [(loc.match, loc.path, loc.target.service) for loc in server.locations]


CASES = [
    ("plain host keeps prefix pairs", [o.ingress("i", o.rule("foo.com", o.path("/foo", "a")))],
     [("^~", "/foo/", "default/a:80"), ("=", "/foo", "default/a:80"), (LOC_ROOT, "/", "")]),
    ("use-regex on one Ingress turns every path of the host into a regex",
     [o.ingress("i", o.rule("foo.com", o.path("/foo.bar", "a"), o.path("/x", "c", path_type="Exact"))),
      o.ingress("j", o.rule("foo.com", o.path("/b+", "b", path_type="ImplementationSpecific")), annotations=REGEX)],
     [(LOC_REGEX, "^/foo[.]bar(/|$)", "default/a:80"), (LOC_REGEX, "^/b+", "default/b:80"),
      (LOC_EXACT, "/x", "default/c:80"), (LOC_ROOT, "/", "")]),
    ("rewrite-target alone also means regex mode",
     [o.ingress("i", o.rule("foo.com", o.path("/api(/|$)(.*)", "a", path_type="ImplementationSpecific")),
                annotations={A + "rewrite-target": "/$2"})],
     [(LOC_REGEX, "^/api(/|$)(.*)", "default/a:80"), (LOC_ROOT, "/", "")]),
    ("a root prefix in regex mode matches everything, after longer regexes",
     [o.ingress("i", o.rule("foo.com", o.path("/", "a"), o.path("/long/er", "b", path_type="ImplementationSpecific")),
                annotations=REGEX)],
     [(LOC_REGEX, "^/long/er", "default/b:80"), (LOC_REGEX, "^/", "default/a:80"), (LOC_ROOT, "/", "")]),
    # nginx's automatic 301 from /p to a proxying location named /p/ must never answer (model.py).
    ("an exact path ending in / gets = for the path without it, serving what that reaches",
     [o.ingress("i", o.rule("foo.com", o.path("/a", "b"), o.path("/a/b/", "a", path_type="Exact")))],
     [(LOC_EXACT, "/a/b/", "default/a:80"), (LOC_EXACT, "/a/b", "default/b:80"), ("^~", "/a/", "default/b:80"),
      (LOC_EXACT, "/a", "default/b:80"), (LOC_ROOT, "/", "")]),
    ("in regex mode an exact path ending in / is an anchored case-sensitive regex, before the others",
     [o.ingress("i", o.rule("foo.com", o.path("/foo.d/", "a", path_type="Exact"),
                            o.path("/x", "c", path_type="Exact"))),
      o.ingress("j", o.rule("foo.com", o.path("/fo+", "b", path_type="ImplementationSpecific")), annotations=REGEX)],
     [(LOC_EXACT_REGEX, "^/foo[.]d/\\z", "default/a:80"), (LOC_REGEX, "^/fo+", "default/b:80"),
      (LOC_EXACT, "/x", "default/c:80"), (LOC_ROOT, "/", "")]),
    # Regex locations: longest path as written first (ingress-nginx's Path Priority), not longest regex.
    ("regex order: the path as written, not the rendered regex with its (/|$)",  # ingress-nginx's docs
     [o.ingress("one", o.rule("foo.com", o.path("/foo/bar", "a"))),
      o.ingress("two", o.rule("foo.com", o.path("/foo/bar/(.+)", "b", path_type="ImplementationSpecific")),
                annotations={A + "rewrite-target": "/$1"})],
     [(LOC_REGEX, "^/foo/bar/(.+)", "default/b:80"), (LOC_REGEX, "^/foo/bar(/|$)", "default/a:80"),
      (LOC_ROOT, "/", "")]),
    ("regex order: the path as written, not the rendered regex with its [.]",
     [o.ingress("one", o.rule("foo.com", o.path("/a.b.c", "a"))),
      o.ingress("two", o.rule("foo.com", o.path("/a[a-z.]+", "b", path_type="ImplementationSpecific")),
                annotations=REGEX)],
     [(LOC_REGEX, "^/a[a-z.]+", "default/b:80"), (LOC_REGEX, "^/a[.]b[.]c(/|$)", "default/a:80"),
      (LOC_ROOT, "/", "")]),
    ("regex order: of two paths as long, the greater first (ingress-nginx's sort)",
     [o.ingress("i", o.rule("foo.com", o.path("/x/.b", "a"), o.path("/x/a.", "b"), o.path("/x/ab", "c")),
                annotations=REGEX)],
     [(LOC_REGEX, "^/x/ab", "default/c:80"), (LOC_REGEX, "^/x/a.", "default/b:80"),
      (LOC_REGEX, "^/x/.b", "default/a:80"), (LOC_ROOT, "/", "")]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "ingresses", "expected"), CASES, ids=[c[0] for c in CASES])
def test_locations(name: str, ingresses: list[o.Obj], expected: list[tuple[str, str, str]]) -> None:
    assert locations(model_of(*ingresses), "foo.com") == expected


def test_bad_annotation_rejects_only_that_ingress() -> None:
    model = model_of(
        o.ingress("bad", o.rule("foo.com", o.path("/", "a")), annotations={A + "proxy-body-size": "1m;"}),
        o.ingress("good", o.rule("bar.com", o.path("/", "a"))),
    )
    assert model.ingresses == ("default/good",)
    assert [(r.ingress, "proxy-body-size" in r.reason) for r in model.rejected] == [("default/bad", True)]
    assert model.server("foo.com") is None


def test_canary_attaches_to_the_primary_location() -> None:
    model = canary_model({"canary-weight": "30", "canary-by-header": "X-C"})
    root = locations(model, "foo.com")
    assert root == [(LOC_ROOT, "/", "default/a:80")]
    server = model.server("foo.com")
    assert server is not None
    canary = server.locations[0].canary
    assert canary is not None
    assert (canary.upstream, canary.weight, canary.header) == ("default_b_http", 30, "X-C")
    assert live_route(model) == {"u": "default_a_http", "lb": "round_robin", "cu": "default_b_http", "cw": "30",
                                 "ct": "100", "ch": "X-C", "un": "default-a-80", "cn": "default-b-http"}
    assert model.ingresses == ("default/main", "default/canary")


def test_ssl_redirect_is_per_location() -> None:
    model = model_of(o.ingress("on", o.rule("foo.com", o.path("/on", "a")), tls=[{"hosts": ["foo.com"]}]),
                     o.ingress("off", o.rule("foo.com", o.path("/off", "a")), tls=[{"hosts": ["foo.com"]}],
                               annotations={A + "ssl-redirect": "false"}),
                     o.ingress("force", o.rule("bar.com", o.path("/", "a")),
                               annotations={A + "force-ssl-redirect": "true"}))  # fmt: skip
    foo, bar = model.server("foo.com"), model.server("bar.com")
    assert foo is not None
    assert bar is not None
    assert {loc.path: loc.redirect_https for loc in foo.locations} == {
        "/on": True,
        "/on/": True,
        "/off": False,
        "/off/": False,
        "/": True,
    }
    assert [loc.redirect_https for loc in bar.locations] == [True]


def test_server_level_annotations_come_from_the_oldest_ingress() -> None:
    model = model_of(
        o.ingress("old", o.rule("foo.com", o.path("/a", "a")), created="2024-01-01T00:00:00Z",
                  annotations={A + "app-root": "/first"}),
        o.ingress("new", o.rule("foo.com", o.path("/b", "b")), created="2024-01-02T00:00:00Z",
                  annotations={A + "app-root": "/second"}),
    )  # fmt: skip
    server = model.server("foo.com")
    assert server is not None
    assert server.app_root == "/first"


CANARY_WEIGHT_TOTALS = [  # (canary-weight, canary-weight-total or None, (weight, total) the balancer gets)
    ("30", None, ("30", "100")), ("0", "1000", ("0", "1000")), ("1", "1000", ("1", "1000")),
    ("250", "1000", ("250", "1000")), ("1000", "1000", ("1000", "1000")), ("1", "300", ("1", "300")),
    ("1", "1000000", ("1", "1000000")),
    ("1", "3", ("1", "100")), ("7", "7", ("7", "100")),  # a total of 100 or less counts as 100 (ingress-nginx)
]  # fmt: skip


@pytest.mark.parametrize(("weight", "total", "live"), CANARY_WEIGHT_TOTALS, ids=str)
def test_canary_weight_total(weight: str, total: str | None, live: tuple[str, str]) -> None:
    model = canary_model({"canary-weight": weight, "canary-weight-total": total})
    server = model.server("foo.com")
    assert server is not None
    assert (canary := server.locations[0].canary) is not None
    assert (canary.weight, canary.weight_total) == (int(weight), max(int(total or 100), 100))
    route = live_route(model)
    assert (route["cw"], route["ct"]) == live


def test_canary_weight_above_its_total_rejects_only_that_ingress() -> None:
    model = canary_model({"canary-weight": "1001", "canary-weight-total": "1000"})
    assert model.ingresses == ("default/main",)
    assert [r.ingress for r in model.rejected] == ["default/canary"]
    assert "canary-weight: 1001 is more than canary-weight-total 1000" in model.rejected[0].reason
    server = model.server("foo.com")
    assert server is not None
    assert server.locations[0].canary is None
    assert "cu" not in live_route(model)


CANARY_RULES = [  # (canary annotations, expected (header, header_value, header_pattern, cookie))
    ({"canary-by-header": "X-C", "canary-by-header-value": "v1", "canary-by-header-pattern": "^v"},
     ("X-C", "v1", None, None)),  # a value makes the pattern moot
    ({"canary-by-header": "X-C", "canary-by-header-pattern": "^v"}, ("X-C", None, "^v", None)),
    ({"canary-by-header-value": "v1", "canary-by-header-pattern": "^v"}, (None, None, None, None)),  # no header
    ({"canary-by-cookie": "beta", "canary-by-header": "X-C"}, ("X-C", None, None, "beta")),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "expected"), CANARY_RULES, ids=[str(c[1]) for c in CANARY_RULES])
def test_canary_header_value_pattern_and_cookie(extra: dict[str, str], expected: tuple[object, ...]) -> None:
    model = canary_model(extra)
    server = model.server("foo.com")
    assert server is not None
    assert (canary := server.locations[0].canary) is not None
    assert (canary.header, canary.header_value, canary.header_pattern, canary.cookie) == expected
    route = live_route(model)
    assert tuple(route.get(k) for k in ("ch", "chv", "chp", "cc")) == expected


SESSION_COOKIE_PATHS = [  # (path, pathType, extra annotations, cookie Path, noted)
    ("/app", "Prefix", {}, "/app", False),
    ("/app/", "Prefix", {}, "/app/", False),  # as written, as ingress-nginx's $location_path
    ("/app", "Exact", {"session-cookie-path": "/other"}, "/other", False),
    ("/api(/|$)(.*)", "ImplementationSpecific", {"use-regex": "true"}, "/", True),
    ("/plain", "ImplementationSpecific", {"use-regex": "true"}, "/plain", False),
]  # fmt: skip


@pytest.mark.parametrize(("path", "path_type", "extra", "cookie_path", "noted"), SESSION_COOKIE_PATHS,
                         ids=[c[0] for c in SESSION_COOKIE_PATHS])  # fmt: skip
def test_session_cookie_path(path: str, path_type: str, extra: dict[str, str], cookie_path: str, noted: bool) -> None:
    annotations = {A + "affinity": "cookie", **{A + k: v for k, v in extra.items()}}
    model = model_of(o.ingress("i", o.rule("foo.com", o.path(path, "a", path_type=path_type)), annotations=annotations))
    server = model.server("foo.com")
    assert server is not None
    cookies = {loc.cookie for loc in server.locations if loc.cookie is not None}
    assert [c.path for c in cookies] == [cookie_path]
    assert model.session_cookies == tuple(cookies)
    assert any("needs session-cookie-path" in n for n in model.notes) is noted


SESSION_COOKIE_HEADERS = [  # (cookie, Set-Cookie value): attributes in lua-resty-cookie's order
    (SessionCookie("route", "/app", 60, "Lax", secure=False),
     "route=$request_id; Max-Age=60; Path=/app$portolan_affinity_secure; HttpOnly; SameSite=Lax"),
    (SessionCookie("r", "/", None, None, secure=True), "r=$request_id; Path=/; Secure; HttpOnly"),
    (SessionCookie("r", "/", None, None, secure=True, domain=".example.com"),
     "r=$request_id; Domain=.example.com; Path=/; Secure; HttpOnly"),
    (SessionCookie("r", "/x", 5, "Strict", secure=False, domain="a.example.com"),
     "r=$request_id; Max-Age=5; Domain=a.example.com; Path=/x$portolan_affinity_secure; HttpOnly; SameSite=Strict"),
]  # fmt: skip


@pytest.mark.parametrize(("cookie", "header"), SESSION_COOKIE_HEADERS, ids=lambda v: str(v)[:40])
def test_session_cookie_header(cookie: SessionCookie, header: str) -> None:
    assert cookie.header == header


def test_session_cookie_domain_reaches_the_model() -> None:
    annotations = {A + "affinity": "cookie", A + "session-cookie-domain": ".Example.com"}
    model = model_of(o.ingress("i", o.rule("foo.com", o.path("/", "a")), annotations=annotations))
    assert [c.domain for c in model.session_cookies] == [".example.com"]


def test_canary_with_an_external_name_by_dns_is_noted_and_ignored() -> None:
    external = o.service("ext", ("http", 80, 80), type="ExternalName", external_name="api.example.com")
    for primary, canary in (("a", "ext"), ("ext", "a")):
        model = model_of(
            o.ingress("main", o.rule("foo.com", o.path("/", primary)), created="2024-01-01T00:00:00Z"),
            o.ingress("canary", o.rule("foo.com", o.path("/", canary)), created="2024-01-02T00:00:00Z",
                      annotations={A + "canary": "true", A + "canary-weight": "50"}),
            extra=(external,),
        )  # fmt: skip
        server = model.server("foo.com")
        assert server is not None
        assert server.locations[0].canary is None
        assert any("ExternalName Service named by DNS is not supported" in n for n in model.notes)
