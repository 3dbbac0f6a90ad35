"""Path matching corner cases through real nginx: regexes with {n} quantifiers (paths and
canary header patterns), the order of regex locations across the Ingresses of a host, and paths
nginx would otherwise answer with its own automatic redirect."""

from __future__ import annotations

from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import Client, services
from tests.ingress.objects import A

REGEX = {A + "use-regex": "true"}


def regex_path(path: str, service: str) -> o.Obj:
    return o.path(path, service, path_type="ImplementationSpecific")


async def outcomes(client: Client, host: str, paths: list[str]) -> list[tuple[str, str | int]]:
    """(path, the backend that answered, else the status) for each request."""
    got: list[tuple[str, str | int]] = []
    for path in paths:
        reply = await client.request(host, path)
        got.append((path, reply.backend or reply.status))
    return got


async def test_regex_path_with_a_quantifier(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, a=("a1",))
    o.put(store, o.ingress("rx", o.rule("foo.com", regex_path("/foo/bar/[a-z]{3}", "a")), annotations=REGEX))
    controller = await start_controller(store)
    assert controller.model is not None
    assert controller.model.rejected == ()
    # Quoted, the braces are the regex's own: nginx reads no block from them.
    assert 'location ~* "^/foo/bar/[a-z]{3}" {' in controller.layout.conf.read_text()
    expected = [("/foo/bar/abc", "a1"), ("/foo/bar/ABC", "a1"), ("/foo/bar/abcd", "a1"),  # a prefix regex
                ("/foo/bar/ab", 404), ("/foo/bar/a1c", 404)]  # fmt: skip
    got = await outcomes(client_for(controller), "foo.com", [path for path, _ in expected])
    assert got == expected


async def test_canary_header_pattern_with_a_quantifier(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, main=("main1",), new=("new1",))
    canary = {A + "canary": "true", A + "canary-by-header": "X-Version", A + "canary-by-header-pattern": "^v[0-9]{2}$"}
    o.put(store, o.ingress("main", o.rule("foo.com", o.path("/", "main")), created="2024-01-01T00:00:00Z"),
          o.ingress("canary", o.rule("foo.com", o.path("/", "new")), created="2024-01-02T00:00:00Z",
                    annotations=canary))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    for version, want in [("v12", "new1"), ("v1", "main1"), ("v123", "main1"), ("x12", "main1")]:
        reply = await client.request("foo.com", "/", headers={"X-Version": version})
        assert reply.backend == want, version


async def test_exact_path_with_a_slash_on_a_regex_host(start_controller, backends, client_for) -> None:
    # A "location = /foo/" would make nginx answer /foo with a 301 to /foo/ before it tried a
    # single regex; the spec says /foo does not match Exact /foo/: the regex /fo+ must get it.
    store = Store()
    await services(backends, store, a=("a1",), b=("b1",))
    # (No Service "gone": its path answers 503, told apart from the default backend's 404 even
    # for a path no backend here would take, such as one ending in a newline.)
    exact = o.ingress("exact", o.rule("foo.com", o.path("/foo/", "a", path_type="Exact"),
                                      o.path("/bar/", "a", path_type="Exact"),
                                      o.path("/gone/", "gone", path_type="Exact")))  # fmt: skip
    o.put(store, exact, o.ingress("rx", o.rule("foo.com", regex_path("/fo+", "b")), annotations=REGEX))
    controller = await start_controller(store)
    expected = [
        ("/foo/", "a1"), ("/foo", "b1"), ("/foo/x", "b1"),  # exact beats every regex, and only it
        ("/FOO/", "b1"),  # exact is case-sensitive (the regexes of the host are not)
        ("/bar", 404), ("/bar/", "a1"), ("/bar/x", 404),
        ("/gone/", 503), ("/gone/%0A", 404),  # anchored at the very end: "$" would match before a final newline
    ]  # fmt: skip
    got = await outcomes(client_for(controller), "foo.com", [path for path, _ in expected])
    assert got == expected


async def test_regex_order_follows_ingress_nginx_s_documented_example(start_controller, backends, client_for) -> None:
    # "Ingress Path Matching", its warning: paths are ordered by descending length as written,
    # so /foo/bar/[A-Z0-9]{3} comes first and takes /foo/bar/bar too (case-insensitively).
    store = Store()
    await services(backends, store, a=("a1",), b=("b1",))
    o.put(store, o.ingress("test-ingress-3", o.rule("test.com", o.path("/foo/bar/bar", "a"),
                                                    regex_path("/foo/bar/[A-Z0-9]{3}", "b")), annotations=REGEX))
    controller = await start_controller(store)
    expected = [("/foo/bar/bar", "b1"), ("/foo/bar/BAR", "b1"), ("/foo/bar/x1z/q", "b1"), ("/foo/bar/ba", 404)]
    assert await outcomes(client_for(controller), "test.com", [path for path, _ in expected]) == expected


async def test_regex_order_across_the_ingresses_of_a_host(start_controller, backends, client_for) -> None:
    # The same page's example of two Ingresses: /foo/bar/(.+) (13 characters) comes before
    # /foo/bar (8), although the regex of the latter, ^/foo/bar(/|$), is as long as ^/foo/bar/(.+).
    store = Store()
    await services(backends, store, service1=("s1",), service3=("s3",))
    o.put(store,
          o.ingress("test-ingress-1", o.rule("test.com", o.path("/foo/bar", "service1"))),
          o.ingress("test-ingress-2", o.rule("test.com", regex_path("/foo/bar/(.+)", "service3")),
                    annotations={A + "rewrite-target": "/$1"}))  # fmt: skip
    controller = await start_controller(store)
    client = client_for(controller)
    expected = [("/foo/bar/1", "s3"), ("/foo/bar", "s1"), ("/foo/bar/", "s1"), ("/foo/barx", 404)]
    assert await outcomes(client, "test.com", [path for path, _ in expected]) == expected
    assert (await client.request("test.com", "/foo/bar/1")).data["path"] == "/1"  # rewritten by its own location
