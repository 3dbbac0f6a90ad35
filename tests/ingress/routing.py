"""The routing table shared by the model tests (nginx's selection rules emulated over the
model, no nginx) and the nginx tests (the same requests through real nginx).

Each case is a set of Ingresses (plus the standard Services below) and requests with the
expected outcome: a Service name (its backend answered), "404" or "503".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingress.model import CATCH_ALL, LOC_EXACT, LOC_PREFIX, Location, Model, Server
from tests.ingress import objects as o

# Services every case has: a..d with one ready endpoint each; "empty" has none ready;
# "missing" is never created.
SERVICES = ("a", "b", "c", "d")


def standard_objects(addresses: dict[str, tuple[str, int]]) -> list[o.Obj]:
    objs = [o.ingress_class()]
    for name, (ip, port) in addresses.items():
        objs.append(o.service(name, ("http", 80, "http")))
        objs.append(o.endpoint_slice(name, [ip], port))
    objs.append(o.service("empty", ("http", 80, "http")))
    objs.append(o.endpoint_slice("empty", [], 8080, not_ready=("127.0.0.250",)))
    return objs


@dataclass
class Case:
    """One routing table case: Ingresses, and requests with the outcome each must meet."""

    name: str
    ingresses: list[o.Obj]
    requests: list[tuple[str | None, str, str]]  # (Host, path, expected)
    options: dict[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


LEGACY = "kubernetes.io/ingress.class"
P = o.path
R = o.rule
I = o.ingress  # noqa: E741

CASES = [
    Case("prefix is element-wise", [I("i", R("foo.com", P("/foo", "a")))],
         [("foo.com", "/foo", "a"), ("foo.com", "/foo/", "a"), ("foo.com", "/foo/bar", "a"),
          ("foo.com", "/foobar", "404"), ("foo.com", "/", "404"), ("foo.com", "/fo", "404")]),
    Case("prefix rule with a trailing slash", [I("i", R("foo.com", P("/aaa/bbb/", "a")))],
         [("foo.com", "/aaa/bbb", "a"), ("foo.com", "/aaa/bbb/", "a"), ("foo.com", "/aaa/bbb/c", "a"),
          ("foo.com", "/aaa/bbbxyz", "404"), ("foo.com", "/aaa", "404")]),
    Case("exact is exact", [I("i", R("foo.com", P("/foo", "a", path_type="Exact")))],
         [("foo.com", "/foo", "a"), ("foo.com", "/foo/", "404"), ("foo.com", "/foo/bar", "404"),
          ("foo.com", "/FOO", "404"), ("foo.com", "/foobar", "404")]),
    Case("exact beats prefix on the same path",
         [I("i", R("foo.com", P("/foo", "b"), P("/foo", "a", path_type="Exact")))],
         [("foo.com", "/foo", "a"), ("foo.com", "/foo/", "b"), ("foo.com", "/foo/x", "b")]),
    Case("exact slash-ended path beats a shorter prefix",
         [I("i", R("foo.com", P("/foo", "b"), P("/foo/", "a", path_type="Exact")))],
         [("foo.com", "/foo/", "a"), ("foo.com", "/foo", "b"), ("foo.com", "/foo/x", "b")]),
    # The spec: /foo does not match Exact /foo/. nginx's automatic 301 to /foo/ must not answer it.
    Case("an exact path ending in a slash does not match without it",
         [I("i", R("foo.com", P("/foo/", "a", path_type="Exact")))],
         [("foo.com", "/foo/", "a"), ("foo.com", "/foo", "404"), ("foo.com", "/foo/x", "404")]),
    Case("without its slash, an exact path's request goes where the host's other rules send it",
         [I("i", R("foo.com", P("/", "b"), P("/foo/", "a", path_type="Exact"), P("/x", "c"),
                   P("/x/y/", "d", path_type="Exact"))),
          I("j", R("foo.com", P("/app/v1/", "d", path_type="Exact"))), I("k", R("foo.com", P("/app", "a")))],
         [("foo.com", "/foo", "b"), ("foo.com", "/foo/", "a"), ("foo.com", "/x/y", "c"), ("foo.com", "/x/y/", "d"),
          ("foo.com", "/x/y/z", "c"), ("foo.com", "/app/v1", "a"), ("foo.com", "/app/v1/", "d")]),
    Case("longest path wins",
         [I("i", R("foo.com", P("/", "a"), P("/foo", "b"), P("/foo/bar", "c")))],
         [("foo.com", "/", "a"), ("foo.com", "/x", "a"), ("foo.com", "/foo", "b"), ("foo.com", "/foo/baz", "b"),
          ("foo.com", "/foo/bar", "c"), ("foo.com", "/foo/bar/x", "c"), ("foo.com", "/foo/barx", "b"),
          ("foo.com", "/foox", "a")]),
    Case("ImplementationSpecific is prefix",
         [I("i", R("foo.com", P("/foo", "a", path_type="ImplementationSpecific")))],
         [("foo.com", "/foo/bar", "a"), ("foo.com", "/foo", "a"), ("foo.com", "/foobar", "404")]),
    Case("missing path is /", [I("i", R("foo.com", P(None, "a", path_type="ImplementationSpecific")))],
         [("foo.com", "/anything", "a")]),
    Case("exact hosts before wildcards; a wildcard covers one label",
         [I("i", R("foo.com", P("/", "a")), R("*.foo.com", P("/", "b")))],
         [("foo.com", "/", "a"), ("bar.foo.com", "/", "b"), ("a.bar.foo.com", "/", "404"), ("FOO.COM", "/", "a"),
          ("bar.foo.com:8080", "/x", "b"), ("xfoo.com", "/", "404")]),
    Case("a precise host beats the wildcard that covers it",
         [I("i", R("*.foo.com", P("/", "b"))), I("j", R("bar.foo.com", P("/", "a")))],
         [("bar.foo.com", "/", "a"), ("baz.foo.com", "/", "b")]),
    Case("rules without a host serve unknown hosts only",
         [I("i", R(None, P("/x", "a")), R("foo.com", P("/y", "b")))],
         [("other.com", "/x", "a"), ("foo.com", "/x", "404"), ("foo.com", "/y", "b"), (None, "/x", "a"),
          ("other.com", "/y", "404")]),
    Case("a defaultBackend-only Ingress catches everything unmatched",
         [I("catch", default_backend=o.backend("a", 80)), I("i", R("foo.com", P("/y", "b")))],
         [("any.com", "/whatever", "a"), ("foo.com", "/y", "b"), ("foo.com", "/z", "404")]),
    Case("defaultBackend with rules applies to the Ingress's own hosts",
         [I("i", R("foo.com", P("/y", "b")), default_backend=o.backend("c", 80))],
         [("foo.com", "/z", "c"), ("foo.com", "/y", "b"), ("other.com", "/z", "404")]),
    Case("Ingresses of one host are merged",
         [I("one", R("foo.com", P("/a", "a"))), I("two", R("foo.com", P("/b", "b")))],
         [("foo.com", "/a", "a"), ("foo.com", "/b/c", "b"), ("foo.com", "/c", "404")]),
    Case("the oldest Ingress wins a conflict",
         [I("aaa-new", R("foo.com", P("/x", "b")), created="2024-02-01T00:00:00Z"),
          I("zzz-old", R("foo.com", P("/x", "a")), created="2024-01-01T00:00:00Z")],
         [("foo.com", "/x", "a"), ("foo.com", "/x/y", "a")]),
    Case("same age: namespace/name decides",
         [I("b-ing", R("foo.com", P("/x", "b"))), I("a-ing", R("foo.com", P("/x", "a")))],
         [("foo.com", "/x", "a")]),
    Case("precedence holds across Ingresses",
         [I("one", R("foo.com", P("/foo", "a"))), I("two", R("foo.com", P("/foo", "b", path_type="Exact"))),
          I("three", R("foo.com", P("/foo/bar", "c")))],
         [("foo.com", "/foo", "b"), ("foo.com", "/foo/x", "a"), ("foo.com", "/foo/bar/x", "c")]),
    Case("a missing Service or one without ready endpoints is a 503",
         [I("i", R("foo.com", P("/gone", "missing"), P("/empty", "empty"), P("/ok", "a")))],
         [("foo.com", "/gone", "503"), ("foo.com", "/empty/x", "503"), ("foo.com", "/ok", "a")]),
    Case("a missing Service port is a 503",
         [I("i", R("foo.com", P("/p", "a", port=81), P("/n", "a", port="nope"), P("/ok", "a", port="http")))],
         [("foo.com", "/p", "503"), ("foo.com", "/n", "503"), ("foo.com", "/ok", "a")]),
    Case("other classes are never served",
         [I("theirs", R("foo.com", P("/", "a")), class_name="nginx"),
          I("legacy-theirs", R("bar.com", P("/", "a")), class_name=None, annotations={LEGACY: "nginx"}),
          I("legacy-ours", R("baz.com", P("/", "b")), class_name=None, annotations={LEGACY: "portolan"}),
          I("classless", R("qux.com", P("/", "c")), class_name=None)],
         [("foo.com", "/", "404"), ("bar.com", "/", "404"), ("baz.com", "/", "b"), ("qux.com", "/", "404")]),
    Case("class-less Ingresses with --watch-ingress-without-class",
         [I("classless", R("qux.com", P("/", "c")), class_name=None)],
         [("qux.com", "/", "c")], options={"watch_without_class": True}),
    Case("an invalid Ingress is left out, the rest served",
         [I("bad", R("foo.com", P("/x;return 200 pwned", "b", path_type="ImplementationSpecific"))),
          I("bad-host", R("bad_host.com", P("/", "b"))),
          I("good", R("foo.com", P("/ok", "a")))],
         [("foo.com", "/ok", "a"), ("foo.com", "/x;return", "404"), ("bad_host.com", "/", "404")]),
]  # fmt: skip


def pick_server(model: Model, host: str | None) -> Server:
    """nginx's server choice: exact name, then (our) one-label wildcard regexes, then the
    default server. nginx lowercases the Host and drops its port first."""
    name = (host or "").split(":")[0].lower().rstrip(".")
    by_host = {s.host: s for s in model.servers}
    if name in by_host and not by_host[name].is_wildcard and name != CATCH_ALL:
        return by_host[name]
    if "." in name:
        wildcard = "*." + name.split(".", 1)[1]
        if wildcard in by_host:
            return by_host[wildcard]
    return by_host[CATCH_ALL]


def route(model: Model, host: str | None, path: str) -> str:
    """What nginx would do with the request: a Service name, "404", "503" or "301" (nginx's
    automatic redirect)."""
    server = pick_server(model, host)
    exact = [loc for loc in server.locations if loc.match == LOC_EXACT and loc.path == path]
    if exact:
        return outcome(model, exact[0])
    # A location that proxies and is named path + "/" (exact or prefix): nginx answers with a
    # 301 to that name, before it picks a prefix.
    slashed = [loc for loc in server.locations if loc.match in (LOC_EXACT, LOC_PREFIX) and loc.path == path + "/"]
    if any(outcome(model, loc) not in ("404", "503") for loc in slashed):
        return "301"
    prefixes = [loc for loc in server.locations if loc.match != LOC_EXACT and path.startswith(loc.path)]
    return outcome(model, max(prefixes, key=lambda loc: len(loc.path)))


def outcome(model: Model, loc: Location) -> str:
    """What a location answers: its Service's name when it proxies, else its status."""
    target = loc.target
    if target.status:
        return str(target.status)
    upstream = model.upstream(target.upstream or "")
    if upstream is None or not upstream.available:
        return "503"
    return upstream.service.split("/", 1)[1].split(":", 1)[0]
