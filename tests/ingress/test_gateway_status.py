"""Gateway API status as the spec words it, one table: objects in, the conditions (type,
status, reason) of each listener and route parent out, observedGeneration on each."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ingress.gateway.translate import Inputs, translate
from kubewatch import (
    GATEWAY_CLASSES,
    GATEWAYS,
    HTTP_ROUTES,
    NAMESPACES,
    REFERENCE_GRANTS,
    GenericObject,
    Namespace,
    Store,
)
from tests.ingress import gateway_objects as g
from tests.ingress import objects as o
from tests.ingress.tlsutil import Authority

B, R, L, P = g.backend, g.rule, g.listener, g.parent


def build(*objs: g.Obj, reserved: frozenset[int] = frozenset({8443})) -> dict[str, Any]:
    """Every status item of ``objs`` (plus Services a and e, in default and other), by "Kind ns/name"."""
    store = Store()
    o.put(store, o.service("a", ("http", 80, "http")), o.endpoint_slice("a", ["10.0.0.1"], 8080),
          o.service("e", ("http", 80, "http"), namespace="other"), *objs)  # fmt: skip

    def of(kind: str) -> tuple[GenericObject, ...]:
        return tuple(x for x in store.iter(kind) if isinstance(x, GenericObject))

    inputs = Inputs(of(GATEWAY_CLASSES.name), of(GATEWAYS.name), of(HTTP_ROUTES.name), of(REFERENCE_GRANTS.name),
                    {n.name: n for n in store.iter(NAMESPACES) if isinstance(n, Namespace)}, g.CONTROLLER, {}, reserved,
                    ("192.0.2.1",))  # fmt: skip
    found = translate(inputs, store)
    out = {}
    for item in found.statuses:
        meta = item["metadata"]
        out[f"{item['kind']} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " ")] = item
    return out


def conditions(items: list[dict[str, Any]], generation: int) -> dict[str, tuple[str, str]]:
    for c in items:
        assert c["observedGeneration"] == generation, c
    return {c["type"]: (c["status"], c["reason"]) for c in items}


@dataclass
class Case:
    """Objects, and the conditions (and attachedRoutes) they must give."""

    name: str
    objects: list[g.Obj]
    # "listener <gw>/<listener>" -> conditions; "route <ns>/<name> <parent index>" -> conditions
    want: dict[str, dict[str, tuple[str, str]]]
    attached: dict[str, int] = field(default_factory=dict)  # "<gw>/<listener>" -> attachedRoutes

    def __str__(self) -> str:
        return self.name


OK = ("True", "Accepted")
RESOLVED = ("True", "ResolvedRefs")
GW = [g.gateway_class()]

CASES = [
    Case("accepted and resolved", [*GW, g.gateway("gw", L()), g.route("r", R(B("a")))],
         {"listener gw/http": {"Accepted": OK, "Programmed": ("True", "Programmed"), "ResolvedRefs": RESOLVED,
                               "Conflicted": ("False", "NoConflicts")},
          "route default/r 0": {"Accepted": OK, "ResolvedRefs": RESOLVED}}, {"gw/http": 1}),
    Case("unsupported protocol, reserved port",
         [*GW, g.gateway("gw", L("tcp", protocol="TCP", port=9000), L("busy", port=8443), L("http"))],
         {"listener gw/tcp": {"Accepted": ("False", "UnsupportedProtocol")},
          "listener gw/busy": {"Accepted": ("False", "PortUnavailable")},
          "listener gw/http": {"Accepted": OK}}),
    Case("invalid route kinds", [*GW, g.gateway("gw", L(kinds=[{"kind": "TCPRoute"}]))],
         {"listener gw/http": {"ResolvedRefs": ("False", "InvalidRouteKinds")}}),
    Case("hostname conflict across Gateways", [*GW, g.gateway("gw", L(hostname="a.com")),
                                               g.gateway("gw2", L(hostname="a.com")), g.gateway("gw3", L("b"))],
         {"listener gw/http": {"Conflicted": ("True", "HostnameConflict"), "Programmed": ("False", "Invalid")},
          "listener gw2/http": {"Conflicted": ("True", "HostnameConflict")},
          "listener gw3/b": {"Conflicted": ("False", "NoConflicts")}}),
    Case("HTTPS: a missing Secret, another namespace's without a grant, no certificateRefs",
         [*GW, g.gateway("gw", {**L("missing", 443, "HTTPS", "a.com"), "tls": {"certificateRefs": [{"name": "nope"}]}},
                         {**L("foreign", 443, "HTTPS", "b.com"),
                          "tls": {"certificateRefs": [{"name": "x", "namespace": "other"}]}},
                         {**L("none", 443, "HTTPS", "c.com")})],
         {"listener gw/missing": {"ResolvedRefs": ("False", "InvalidCertificateRef"),
                                  "Programmed": ("False", "Invalid")},
          "listener gw/foreign": {"ResolvedRefs": ("False", "RefNotPermitted")},
          "listener gw/none": {"ResolvedRefs": ("False", "InvalidCertificateRef")}}),
    Case("HTTP and HTTPS on one port", [*GW, g.gateway("gw", L("plain", 80), L("tls", 80, "HTTPS", "a.com"))],
         {"listener gw/plain": {"Conflicted": ("True", "ProtocolConflict")},
          "listener gw/tls": {"Conflicted": ("True", "ProtocolConflict")}}),
    Case("not allowed by listeners (Same)",
         [*GW, g.gateway("gw", L()), g.route("r", R(B("e")), namespace="other", parents=[P(namespace="default")])],
         {"route other/r 0": {"Accepted": ("False", "NotAllowedByListeners")}}, {"gw/http": 0}),
    Case("allowed by a namespace selector",
         [*GW, g.namespace("other", {"team": "x"}), g.namespace("third"),
          g.gateway("gw", L(allowed="Selector", selector={"matchLabels": {"team": "x"}})),
          g.route("r", R(B("e")), namespace="other", parents=[P(namespace="default")]),
          g.route("r", R(), namespace="third", parents=[P(namespace="default")])],
         {"route other/r 0": {"Accepted": OK}, "route third/r 0": {"Accepted": ("False", "NotAllowedByListeners")}},
         {"gw/http": 1}),
    Case("no matching listener hostname",
         [*GW, g.gateway("gw", L(hostname="*.example.com")), g.route("r", R(B("a")), hostnames=["a.example.net"])],
         {"route default/r 0": {"Accepted": ("False", "NoMatchingListenerHostname")}}, {"gw/http": 0}),
    Case("no matching parent (sectionName, port)",
         [*GW, g.gateway("gw", L()), g.route("r", R(B("a")), parents=[P(section="nope"), P(port=81), P(port=80)])],
         {"route default/r 0": {"Accepted": ("False", "NoMatchingParent")},
          "route default/r 1": {"Accepted": ("False", "NoMatchingParent")}, "route default/r 2": {"Accepted": OK}},
         {"gw/http": 1}),
    Case("unsupported values", [*GW, g.gateway("gw", L()),
                                g.route("r", R(B("a"), matches=[g.match("/x", "Glob")])),
                                g.route("m", R(B("a"), matches=[g.match(method="BREW")]))],
         {"route default/r 0": {"Accepted": ("False", "UnsupportedValue")},
          "route default/m 0": {"Accepted": ("False", "UnsupportedValue")}}, {"gw/http": 0}),
    Case("filters we cannot program",
         [*GW, g.gateway("gw", L()),
          g.route("mirror", R(B("a"), filters=[{"type": "RequestMirror", "requestMirror": {"backendRef": B("a")}}])),
          g.route("both", R(B("a"), filters=[{"type": "RequestRedirect", "requestRedirect": {}},
                                             {"type": "URLRewrite", "urlRewrite": {}}])),
          g.route("prefix", R(B("a"), matches=[g.match("/x", "Exact")], filters=[{"type": "URLRewrite", "urlRewrite": {
              "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/y"}}}])),
          g.route("code", R(filters=[{"type": "RequestRedirect", "requestRedirect": {"statusCode": 418}}])),
          g.route("time", {**R(B("a")), "timeouts": {"request": "1.5s"}})],
         {"route default/mirror 0": {"Accepted": ("False", "UnsupportedValue")},
          "route default/both 0": {"Accepted": ("False", "IncompatibleFilters")},
          "route default/prefix 0": {"Accepted": ("False", "UnsupportedValue")},
          "route default/code 0": {"Accepted": ("False", "UnsupportedValue")},
          "route default/time 0": {"Accepted": ("False", "UnsupportedValue")}}),
    Case("a bad rule beside good ones is dropped (PartiallyInvalid); all bad refuse the route",
         [*GW, g.gateway("gw", L()),
          g.route("part", R(B("a")), R(B("a"), filters=[{"type": "RequestMirror"}]), R(B("a"), matches=[g.match(
              "/x", "Glob")])), g.route("all", R(B("a"), filters=[{"type": "RequestMirror"}]))],
         {"route default/part 0": {"Accepted": OK, "PartiallyInvalid": ("True", "UnsupportedValue")},
          "route default/all 0": {"Accepted": ("False", "UnsupportedValue"), "PartiallyInvalid": None}}),
    Case("backend not found, invalid kind, not permitted",
         [*GW, g.gateway("gw", L()), g.route("nf", R(B("missing"))), g.route("port", R(B("a", port=81))),
          g.route("kind", R(B("a", kind="Pod"))), g.route("np", R(B("e", namespace="other")))],
         {"route default/nf 0": {"Accepted": OK, "ResolvedRefs": ("False", "BackendNotFound")},
          "route default/port 0": {"ResolvedRefs": ("False", "BackendNotFound")},
          "route default/kind 0": {"ResolvedRefs": ("False", "InvalidKind")},
          "route default/np 0": {"Accepted": OK, "ResolvedRefs": ("False", "RefNotPermitted")}}, {"gw/http": 4}),
    Case("a ReferenceGrant permits; one for another name does not",
         [*GW, g.gateway("gw", L()), g.route("r", R(B("e", namespace="other"))),
          g.grant("let", "other", "default", to_name="e"),
          g.route("r", R(B("a", namespace="default")), namespace="third", parents=[P(namespace="default")]),
          g.grant("let", "default", "third", to_name="zzz")],
         {"route default/r 0": {"ResolvedRefs": RESOLVED},
          "route third/r 0": {"ResolvedRefs": ("False", "RefNotPermitted")}}),
    Case("a route on a whole Gateway counts on each listener it meets",
         [*GW, g.gateway("gw", L("a", hostname="a.com"), L("b", hostname="b.com"), L("c", hostname="c.com")),
          g.route("r", R(B("a")), hostnames=["a.com", "b.com"])],
         {"route default/r 0": {"Accepted": OK}}, {"gw/a": 1, "gw/b": 1, "gw/c": 0}),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_status(case: Case) -> None:
    items = build(*case.objects)
    for key, want in case.want.items():
        what, name, *index = key.split(" ")
        if what == "listener":
            gw_name, listener = name.split("/")
            item = items[f"Gateway default/{gw_name}"]
            status = next(li for li in item["status"]["listeners"] if li["name"] == listener)
            got = conditions(status["conditions"], item["metadata"]["generation"])
        else:
            item = items[f"HTTPRoute {name}"]
            parent = item["status"]["parents"][int(index[0])]
            assert parent["controllerName"] == g.CONTROLLER
            got = conditions(parent["conditions"], item["metadata"]["generation"])
        assert {k: got.get(k) for k in want} == want, key
    for key, count in case.attached.items():
        gw_name, listener = key.split("/")
        status = items[f"Gateway default/{gw_name}"]["status"]
        assert next(li for li in status["listeners"] if li["name"] == listener)["attachedRoutes"] == count, key


def test_gateway_and_class_status() -> None:
    items = build(g.gateway_class(), g.gateway_class("theirs", "example.com/other"),
                  g.gateway("gw", L(), generation=3), g.gateway("bad", L("tcp", protocol="TCP")),
                  g.gateway("foreign", L(), class_name="theirs"))  # fmt: skip
    assert "GatewayClass theirs" not in items
    assert "Gateway default/foreign" not in items
    assert conditions(items["GatewayClass portolan"]["status"]["conditions"], 1) == {"Accepted": OK}
    features = [f["name"] for f in items["GatewayClass portolan"]["status"]["supportedFeatures"]]
    assert features == sorted(features)
    assert {"Gateway", "HTTPRoute", "ReferenceGrant"} <= set(features)
    gw = items["Gateway default/gw"]["status"]
    assert conditions(gw["conditions"], 3) == {"Accepted": OK, "Programmed": ("True", "Programmed")}
    assert gw["addresses"] == [{"type": "IPAddress", "value": "192.0.2.1"}]
    assert gw["listeners"][0]["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]
    bad = items["Gateway default/bad"]["status"]
    assert conditions(bad["conditions"], 1) == {"Accepted": ("False", "ListenersNotValid"),
                                                "Programmed": ("False", "Pending")}  # fmt: skip


def test_requested_addresses() -> None:
    def gw(name: str, *addresses: dict[str, str]) -> g.Obj:
        made = g.gateway(name, L(hostname=f"{name}.example.com"))  # distinct: no HostnameConflict
        return {**made, "spec": {**made["spec"], "addresses": list(addresses)}}

    items = build(*GW, gw("mine", {"type": "IPAddress", "value": "192.0.2.1"}), gw("other", {"value": "203.0.113.9"}),
                  gw("odd", {"type": "example.com/custom", "value": "x"}))  # fmt: skip
    assert conds_of(items, "mine") == {"Accepted": OK, "Programmed": ("True", "Programmed")}
    assert conds_of(items, "other")["Programmed"] == ("False", "AddressNotUsable")
    assert conds_of(items, "odd")["Accepted"] == ("False", "UnsupportedAddress")


def conds_of(items: dict[str, Any], gateway: str) -> dict[str, tuple[str, str]]:
    return conditions(items[f"Gateway default/{gateway}"]["status"]["conditions"], 1)


def test_unrelated_parents_get_no_entry() -> None:
    items = build(*GW, g.gateway("gw", L()), g.route("r", R(B("a")), parents=[P("elsewhere"), P()]))
    parents = items["HTTPRoute default/r"]["status"]["parents"]
    assert [p["parentRef"] for p in parents] == [{"name": "gw"}]
    assert "HTTPRoute default/lonely" not in build(*GW, g.route("lonely", R(B("a")), parents=[P("elsewhere")]))


def test_shared_ports_name_each_route_host_once_per_port(authority: Authority) -> None:
    # Listeners on both Ingress ports: each port's blocks name the routes' hosts no Ingress
    # names there (on port 80 the exact listener keeps its host from the hostname-less one).
    store = Store()
    https = {**L("https", 443, "HTTPS"), "tls": {"certificateRefs": [{"name": "cert"}]}}
    o.put(store, *GW, o.tls_secret("cert", *authority.issue("a.com", "b.com")),
          g.gateway("gw", L("http", 80), https, L("exact", 80, hostname="b.com")),
          g.route("r", R(), hostnames=["a.com", "b.com", "ingress.com"]))  # fmt: skip

    def of(kind: str) -> tuple[GenericObject, ...]:
        return tuple(x for x in store.iter(kind) if isinstance(x, GenericObject))

    inputs = Inputs(of(GATEWAY_CLASSES.name), of(GATEWAYS.name), of(HTTP_ROUTES.name), (), {}, g.CONTROLLER, {},
                    frozenset(), (), shared_ports={80: "HTTP", 443: "HTTPS"},
                    ingress_hosts=frozenset({"ingress.com"}))  # fmt: skip
    found = translate(inputs, store)
    assert {(s.port, s.hostname): s.shared for s in found.listeners} == {
        (80, ""): ("a.com",), (80, "b.com"): ("b.com",), (443, ""): ("a.com", "b.com")}
    # Certificates on the Ingresses' HTTPS port are found by name, as the Ingresses' are.
    assert found.records["h:a.com"] == found.records["h:b.com"]
