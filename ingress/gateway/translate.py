"""Gateway API objects -> listener server blocks, live routing records, upstreams and status.

What nginx.conf gets is only what must be structure: one server block per (nginx port,
listener hostname), whose single ``location /`` names the listener's match table
(``$portolan_route "~g:<port>/<hostname>"``). Everything an HTTPRoute says is data pushed to
the Lua balancer (templates/lua/portolan.lua):

* ``g:<port>/<hostname>`` the listener's matches, one per line, already in the spec's
  precedence order, so the balancer takes the first that matches the request (host, path,
  method, headers, query parameters) and finds its route;
* ``r:gw/<ns>/<route>/<rule>`` a rule's weighted backends (``ws=<weight>:<upstream> ...``,
  ``!500`` standing for a backend that cannot be used, whose share the spec answers with 500);
* ``u:<upstream>`` endpoints, shared with Ingresses naming the same Service port.

So adding, changing or removing an HTTPRoute, a ReferenceGrant or an endpoint needs no
reload; a listener added, removed or renamed does.

Listener selection is nginx's: exact server names first, then the longest ``*.suffix`` (which
in nginx, as in the spec, covers one or more labels), then the port's default server (the
listener without hostname, or a generated one answering 404). A host that a more specific
listener claims never reaches the routes of a wildcard or empty one (listener isolation).

Precedence (the spec's tie-breakers, in order): the longest matching precise hostname, the
longest matching hostname, Exact path, then RegularExpression (our choice, as Envoy Gateway:
a regex is more specific than a prefix; longer patterns first), then PathPrefix by length;
then a method, more headers, more query parameters, the oldest route, namespace/name, and the
rule and match order within a route.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from ingress import validate
from ingress.certs import CertError, CertPair, pair_from_secret
from ingress.endpoints import ready_endpoints
from ingress.gateway import filters, hostnames
from ingress.model import ListenerServer, Lookup, Upstream, upstream_name
from kubewatch import SECRETS, GenericObject, Namespace, Secret
from kubewatch.services import find_service_port

GROUP = "gateway.networking.k8s.io"
API_VERSION = f"{GROUP}/v1"
HTTP_ROUTE = "HTTPRoute"
SUPPORTED_PROTOCOLS = ("HTTP", "HTTPS")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
INVALID = "!500"
# GatewayClass status.supportedFeatures (GEP-2162; sorted, as the CRD wants): what our tests
# cover. The conformance suite infers what to run from it, so only what works is listed.
SUPPORTED_FEATURES = tuple(sorted((
    "Gateway", "GatewayHTTPListenerIsolation", "GatewayPort8080", "HTTPRoute", "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode", "HTTPRoute308RedirectStatusCode", "HTTPRouteBackendTimeout",
    "HTTPRouteHostRewrite", "HTTPRouteMethodMatching", "HTTPRouteParentRefPort", "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite", "HTTPRoutePortRedirect", "HTTPRouteQueryParamMatching",
    "HTTPRouteResponseHeaderModification", "HTTPRouteSchemeRedirect", "ReferenceGrant",
)))  # a backend that cannot be used: its share of the requests gets a 500

# Exact and PathPrefix values as the CRD allows them (checked again: manifests skip the CRD).
_PATH = re.compile(r"^/[-A-Za-z0-9/._~!$&'()*+,;=:@%]*$")
_BAD_PATH = ("//", "/./", "/../", "%2f", "%2F", "#")
_SECTION_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,251}[a-z0-9])?$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$")


class Refused(ValueError):
    """A route (or listener) value we cannot serve: the reason and message of its condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def condition(kind: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    # lastTransitionTime is left out: /status is recomputed on every pass, and the status
    # writer keeps the time of a condition whose status did not change.
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message,
            "observedGeneration": generation}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Match:
    """One HTTPRouteMatch on one effective hostname: what the balancer checks, and its rank."""

    route: str  # the rule's route record
    host: str | None
    path_kind: str  # "e" exact, "x" regex, "p" prefix
    path: str
    method: str | None
    headers: tuple[tuple[str, str, str], ...]  # (kind "he"/"hr", nginx variable, value)
    queries: tuple[tuple[str, str, str], ...]  # (kind "qe"/"qr", name, value)
    order: tuple[str, str, int, int]  # creationTimestamp, ns/name, rule, match

    def rank(self) -> tuple[Any, ...]:
        host = self.host or ""
        precise = 0 if host.startswith("*.") else len(host)
        path_rank = {"e": 0, "x": 1, "p": 2}[self.path_kind]
        return (-precise, -len(host), path_rank, -len(self.path), self.method is None,
                -len(self.headers), -len(self.queries), self.order)  # fmt: skip

    def record(self) -> str:
        fields: list[tuple[str, str]] = [("r", self.route)]
        if self.host is not None:
            fields.append(("h", self.host))
        fields.append((self.path_kind, self.path))
        if self.method is not None:
            fields.append(("m", self.method))
        fields.extend((kind, f"{name}:{value}") for kind, name, value in self.headers)
        fields.extend((kind, f"{name}:{value}") for kind, name, value in self.queries)
        return urlencode(fields)


@dataclass
class _Listener:
    gateway: GenericObject
    name: str
    port: int  # as the Gateway says
    nginx_port: int
    protocol: str
    hostname: str | None
    allowed_from: str
    selector: dict[str, Any] | None
    kinds: list[str]
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    attached: int = 0
    cert: CertPair | None = None  # HTTPS: the certificateRefs' Secret
    # The effective hostnames of the routes it took, and which routes ("ns/name") name each.
    route_hosts: dict[str, set[str]] = field(default_factory=dict)

    def specificity(self) -> tuple[int, int]:
        """nginx's order among a port's server names: exact, then longer wildcards, then none."""
        if self.hostname is None:
            return (2, 0)
        return (1, -len(self.hostname)) if self.hostname.startswith("*.") else (0, 0)

    @property
    def valid(self) -> bool:
        return all(c["status"] == "True" for k, c in self.conditions.items() if k != "Conflicted") and \
            self.conditions.get("Conflicted", {}).get("status") != "True"  # fmt: skip

    @property
    def key(self) -> str:
        return f"{self.nginx_port}/{self.hostname or '_'}"


@dataclass
class GatewayModel:
    """What the Gateway API objects add to the model, and the status they are owed."""

    listeners: tuple[ListenerServer, ...] = ()
    certificates: dict[str, CertPair] = field(default_factory=dict)  # by digest
    records: dict[str, str] = field(default_factory=dict)
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Inputs:
    """The Gateway API objects of one pass, and what they are judged against."""

    classes: tuple[GenericObject, ...]
    gateways: tuple[GenericObject, ...]
    routes: tuple[GenericObject, ...]
    grants: tuple[GenericObject, ...]
    namespaces: Mapping[str, Namespace]
    controller_name: str
    port_map: Mapping[int, int]
    reserved_ports: frozenset[int]  # nginx ports a listener may not take (the Ingress ports, health)
    addresses: tuple[str, ...]  # for Gateway status.addresses
    programmed: bool = True  # whether nginx serves the last configuration
    # nginx ports the Ingresses listen on ("HTTP" / "HTTPS"), and the hosts their rules name.
    shared_ports: Mapping[int, str] = field(default_factory=dict)
    ingress_hosts: frozenset[str] = frozenset()


def _meta(obj: GenericObject, kind: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": obj.name, "generation": obj.generation}
    if obj.namespace:
        meta["namespace"] = obj.namespace
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def granted(grants: Iterable[GenericObject], from_kind: str, from_ns: str, to_ns: str, to_kind: str,
            to_name: str) -> bool:  # fmt: skip
    """Whether a ReferenceGrant in ``to_ns`` lets a ``from_kind`` of ``from_ns`` refer to the object."""
    for grant in grants:
        if grant.namespace != to_ns:
            continue
        froms, tos = _list(grant.spec.get("from")), _list(grant.spec.get("to"))
        if not any(isinstance(f, dict) and f.get("group") == GROUP and f.get("kind") == from_kind
                   and f.get("namespace") == from_ns for f in froms):  # fmt: skip
            continue
        if any(isinstance(t, dict) and (t.get("group") or "") == "" and t.get("kind") == to_kind
               and t.get("name") in (None, "", to_name) for t in tos):  # fmt: skip
            return True
    return False


def _selector_matches(selector: dict[str, Any], labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels, matchExpressions) against a Namespace's labels."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def translate(inputs: Inputs, lookup: Lookup) -> GatewayModel:
    """The listener servers, records, upstreams and status of ``inputs``."""
    out = GatewayModel()
    ours = {c.name: c for c in inputs.classes if c.spec.get("controllerName") == inputs.controller_name}
    for gc in sorted(ours.values(), key=lambda c: c.name):
        out.statuses.append({**_meta(gc, "GatewayClass"), "status": {
            "conditions": [condition("Accepted", True, "Accepted", "", gc.generation)],
            "supportedFeatures": [{"name": f} for f in SUPPORTED_FEATURES]}})  # fmt: skip
    gateways = sorted((g for g in inputs.gateways if g.spec.get("gatewayClassName") in ours),
                      key=lambda g: (g.created, g.namespace, g.name))  # fmt: skip
    listeners: dict[tuple[str, str], list[_Listener]] = {}
    every: list[_Listener] = []
    for gw in gateways:
        found = listeners[(gw.namespace, gw.name)] = [_listener(gw, spec, inputs, lookup) for spec in
                                                      _list(gw.spec.get("listeners")) if isinstance(spec, dict)]
        every.extend(found)
    _conflicts(every)
    tables: dict[str, list[Match]] = {}
    rule_routes: dict[str, str] = {}
    routes = sorted(inputs.routes, key=lambda r: (r.created, r.namespace, r.name))
    for route in routes:
        status = _route(route, listeners, inputs, lookup, tables, rule_routes, out)
        if status is not None:
            out.statuses.append(status)
    # Listener servers: the valid listeners, one block per (nginx port, hostname).
    servers: dict[str, ListenerServer] = {}
    taken: dict[int, set[str]] = {}  # server names per shared port: the Ingress hosts first
    for li in sorted((li for li in every if li.valid), key=lambda li: (li.nginx_port, li.specificity())):
        server = _server(li, inputs, taken.setdefault(li.nginx_port, set(inputs.ingress_hosts)), out)
        if server is not None:
            servers[li.key] = server
        _tables(li.key, tables.get(li.key, []), out.records)
    out.listeners = tuple(sorted(servers.values(), key=lambda s: (s.port, s.hostname)))
    out.records.update(rule_routes)
    for gw in gateways:
        out.statuses.append(_gateway_status(gw, listeners[(gw.namespace, gw.name)], inputs))
    return out


def _tables(key: str, matches: list[Match], records: dict[str, str]) -> None:
    """A listener's match records. Every match on a precise hostname outranks every other (the
    first tie-breaker), and only one precise hostname fits a request: so each precise host's
    matches are a record of their own, ``g:<listener>|<host>``, which the balancer tries before
    ``g:<listener>`` (wildcard and hostname-less matches). A request costs its host's matches,
    not every route's on the listener."""
    by_host: dict[str, list[Match]] = {}
    for m in sorted(matches, key=Match.rank):
        host = m.host if m.host is not None and not m.host.startswith("*.") else ""
        by_host.setdefault(host, []).append(m)
    records[f"g:{key}"] = "\n".join(m.record() for m in by_host.pop("", []))
    for host, found in by_host.items():
        records[f"g:{key}|{host}"] = "\n".join(m.record() for m in found)


def _server(li: _Listener, inputs: Inputs, taken: set[str], out: GatewayModel) -> ListenerServer | None:
    """The listener's server block (None: nothing of it to serve), and its certificates' records.

    On a port of its own, a listener's block has its hostname as server name (none: the
    port's default server), and the port's certificates are its listeners' ("h:<port>/<name>").
    On the Ingresses' port, a host an Ingress rule names stays the Ingress's: the listener's
    block names its hostname and its routes' hostnames that no Ingress (nor a more specific
    listener) names, and the Ingress catch-all stays the port's default server. Certificates
    there go where the Ingresses' are ("h:<name>"), for the names the listener got."""
    label = (f"{li.gateway.namespace}/{li.gateway.name}/{li.name}",)
    tls = li.protocol == "HTTPS"
    if li.nginx_port not in inputs.shared_ports:
        if li.cert is not None:
            out.certificates[li.cert.digest] = li.cert
            out.records[f"h:{li.nginx_port}/{li.hostname or ''}"] = li.cert.digest
        return ListenerServer(li.nginx_port, li.hostname or "", f"~g:{li.key}", label, tls, (), li.port)
    wanted = ([li.hostname] if li.hostname else []) + sorted(set(li.route_hosts) - {li.hostname or ""})
    names = tuple(n for n in dict.fromkeys(wanted) if n not in taken)
    for host in sorted(set(li.route_hosts) & inputs.ingress_hosts):
        out.notes.append(f"HTTPRoute {', '.join(sorted(li.route_hosts[host]))}: {host} on port {li.nginx_port} "
                         "is served by its Ingress (an Ingress keeps its hosts on a shared port)")  # fmt: skip
    taken.update(names)
    if not names:
        return None
    if li.cert is not None:
        out.certificates[li.cert.digest] = li.cert
        out.records.update((f"h:{n}", li.cert.digest) for n in names)
    return ListenerServer(li.nginx_port, li.hostname or "", f"~g:{li.key}", label, tls, names, li.port)


def _listener(gw: GenericObject, spec: dict[str, Any], inputs: Inputs, lookup: Lookup) -> _Listener:
    gen = gw.generation
    name = str(spec.get("name") or "")
    port = spec.get("port")
    port = port if isinstance(port, int) and 0 < port < 65536 else 0
    protocol = str(spec.get("protocol") or "")
    hostname = spec.get("hostname")
    allowed = _dict(spec.get("allowedRoutes"))
    namespaces = _dict(allowed.get("namespaces"))
    selector = namespaces.get("selector")
    li = _Listener(gw, name, port, inputs.port_map.get(port, port), protocol,
                   hostname if isinstance(hostname, str) and hostname else None,
                   str(namespaces.get("from") or "Same"), selector if isinstance(selector, dict) else None, [])
    problem = _unacceptable(li, inputs)
    accepted = condition("Accepted", problem is None, "Accepted" if problem is None else problem[0],
                         problem[1] if problem else "", gen)  # fmt: skip
    resolved = condition("ResolvedRefs", True, "ResolvedRefs", "", gen)
    kinds = allowed.get("kinds")
    if isinstance(kinds, list) and kinds:
        good = [HTTP_ROUTE for k in kinds if isinstance(k, dict) and k.get("group", GROUP) == GROUP
                and k.get("kind") == HTTP_ROUTE]  # fmt: skip
        li.kinds = sorted(set(good))
        if len(good) != len(kinds):
            resolved = condition("ResolvedRefs", False, "InvalidRouteKinds", "only HTTPRoute is supported", gen)
    else:
        li.kinds = [HTTP_ROUTE]
    if protocol == "HTTPS" and accepted["status"] == "True":
        tls = _dict(spec.get("tls"))
        if tls.get("mode", "Terminate") != "Terminate":
            accepted = condition("Accepted", False, "UnsupportedValue", "HTTPS listeners terminate TLS", gen)
        else:
            li.cert, problem = _certificate(gw, _list(tls.get("certificateRefs")), inputs, lookup)
            if problem is not None:
                resolved = condition("ResolvedRefs", False, problem[0], problem[1], gen)
    li.conditions = {"Accepted": accepted, "ResolvedRefs": resolved}
    return li


def _unacceptable(li: _Listener, inputs: Inputs) -> tuple[str, str] | None:
    """Why the listener cannot be Accepted (reason, message), if it cannot."""
    gw = li.gateway
    try:  # they name the listener in nginx.conf's comments
        validate.namespace(gw.namespace)
        validate.object_name(gw.name)
        named = bool(_SECTION_NAME.match(li.name))
    except validate.InvalidValue:
        named = False
    if not named:
        return "UnsupportedValue", "invalid Gateway or listener name"
    if li.protocol not in SUPPORTED_PROTOCOLS:
        return "UnsupportedProtocol", f"protocol {li.protocol!r} is not supported"
    if not li.port:
        return "PortUnavailable", "invalid port"
    if li.nginx_port in inputs.reserved_ports:
        return "PortUnavailable", f"port {li.nginx_port} is taken by the controller"
    shared = inputs.shared_ports.get(li.nginx_port)
    if shared is not None and shared != li.protocol:
        return "PortUnavailable", f"port {li.nginx_port} serves Ingresses over {shared}"
    if li.hostname is not None and not hostnames.valid(li.hostname):
        return "UnsupportedValue", f"invalid hostname {li.hostname!r}"
    if li.allowed_from not in ("Same", "All", "Selector"):
        return "UnsupportedValue", f"allowedRoutes from {li.allowed_from!r}"
    return None


def _certificate(gw: GenericObject, refs: list[Any], inputs: Inputs,
                 lookup: Lookup) -> tuple[CertPair | None, tuple[str, str] | None]:  # fmt: skip
    """The first certificateRef's pair, or the reason and message of ResolvedRefs False."""
    if not refs or not isinstance(refs[0], dict):
        return None, ("InvalidCertificateRef", "an HTTPS listener needs a certificateRef")
    ref = refs[0]
    name, ns = ref.get("name"), ref.get("namespace") or gw.namespace
    if (ref.get("group") or "") != "" or ref.get("kind", "Secret") != "Secret" or not isinstance(name, str):
        return None, ("InvalidCertificateRef", "certificateRefs name Secrets")
    if ns != gw.namespace and not granted(inputs.grants, "Gateway", gw.namespace, ns, "Secret", name):
        return None, ("RefNotPermitted", f"certificateRef to {ns}/{name} is not permitted by a ReferenceGrant")
    secret = lookup.get(SECRETS.name, str(ns), name)
    if not isinstance(secret, Secret):
        return None, ("InvalidCertificateRef", f"secret {ns}/{name} not found")
    try:
        return pair_from_secret(secret), None
    except CertError as exc:
        return None, ("InvalidCertificateRef", f"secret {ns}/{name}: {exc}")


def _conflicts(every: list[_Listener]) -> None:
    """Listeners that nginx cannot tell apart (same port and hostname, or one port for two
    protocols) are all Conflicted: the spec lets no one of them win."""
    by_port: dict[int, list[_Listener]] = {}
    for li in every:
        if li.conditions["Accepted"]["status"] == "True":
            by_port.setdefault(li.nginx_port, []).append(li)
    for group in by_port.values():
        protocols = {li.protocol for li in group}
        for li in group:
            gen = li.gateway.generation
            if len(protocols) > 1:
                li.conditions["Conflicted"] = condition("Conflicted", True, "ProtocolConflict",
                                                        "another listener on this port has another protocol", gen)
            elif sum(1 for o in group if o.hostname == li.hostname) > 1:
                li.conditions["Conflicted"] = condition("Conflicted", True, "HostnameConflict",
                                                        "another listener has this port and hostname", gen)
            else:
                li.conditions["Conflicted"] = condition("Conflicted", False, "NoConflicts", "", gen)


def _gateway_status(gw: GenericObject, listeners: list[_Listener], inputs: Inputs) -> dict[str, Any]:
    gen = gw.generation
    valid = [li for li in listeners if li.valid]
    bad = [li.name for li in listeners if not li.valid]
    if not listeners or not valid:
        accepted = condition("Accepted", False, "ListenersNotValid", f"no valid listener: {', '.join(bad)}", gen)
    elif bad:
        accepted = condition("Accepted", True, "ListenersNotValid", f"listeners not valid: {', '.join(bad)}", gen)
    else:
        accepted = condition("Accepted", True, "Accepted", "", gen)
    ok = accepted["status"] == "True" and inputs.programmed and bool(inputs.addresses)
    programmed = condition("Programmed", ok, "Programmed" if ok else "Pending", "", gen)
    # spec.addresses: ours are the controller's (published or bound); nothing else can be assigned.
    for address in _list(gw.spec.get("addresses")):
        kind = address.get("type", "IPAddress") if isinstance(address, dict) else None
        value = address.get("value") if isinstance(address, dict) else None
        if kind not in ("IPAddress", "Hostname"):
            accepted = condition("Accepted", False, "UnsupportedAddress", f"address type {kind!r}", gen)
        elif value and value not in inputs.addresses:
            programmed = condition("Programmed", False, "AddressNotUsable", f"{value} is not this controller's",
                                   gen)  # fmt: skip
    out_listeners = []
    for li in listeners:
        conditions = dict(li.conditions)
        served = li.valid and inputs.programmed
        conditions["Programmed"] = condition("Programmed", served, "Programmed" if served else "Invalid", "", gen)
        out_listeners.append({"name": li.name, "attachedRoutes": li.attached,
                              "supportedKinds": [{"group": GROUP, "kind": k} for k in li.kinds],
                              "conditions": [conditions[k] for k in ("Accepted", "Programmed", "ResolvedRefs",
                                                                     "Conflicted") if k in conditions]})  # fmt: skip
    return {**_meta(gw, "Gateway"), "status": {
        "addresses": [{"type": "IPAddress", "value": a} for a in inputs.addresses],
        "conditions": [accepted, programmed], "listeners": out_listeners}}  # fmt: skip


# ------------------------------------------------------------------ routes


def _route(route: GenericObject, listeners: dict[tuple[str, str], list[_Listener]], inputs: Inputs,
           lookup: Lookup, tables: dict[str, list[Match]], rule_routes: dict[str, str],
           out: GatewayModel) -> dict[str, Any] | None:  # fmt: skip
    """The route's matches on the listeners that take it, and its status (None when no
    parentRef names a Gateway of ours: not ours to report)."""
    gen = route.generation
    parents: list[dict[str, Any]] = []
    dropped: list[tuple[int, Refused]] = []
    try:
        rules, dropped = _rules(route)
        problem: Refused | None = None
    except Refused as exc:
        rules, problem = [], exc
    resolved_problem: tuple[str, str] | None = None
    for index, rule in rules:
        record, issue = _backends(route, rule, inputs, lookup, out)
        rule_routes[f"r:{rule_name(route, index)}"] = record
        if issue is not None and resolved_problem is None:
            resolved_problem = issue
    raw_hosts = route.spec.get("hostnames") or []
    route_hosts: list[str | None] = [h for h in raw_hosts if isinstance(h, str)] or [None]
    for ref in _list(route.spec.get("parentRefs")):
        if not isinstance(ref, dict) or ref.get("group", GROUP) != GROUP or ref.get("kind", "Gateway") != "Gateway":
            continue
        gw_key = (str(ref.get("namespace") or route.namespace), str(ref.get("name") or ""))
        if gw_key not in listeners:
            continue  # not a Gateway of ours
        relevant = [li for li in listeners[gw_key]
                    if ref.get("sectionName") in (None, li.name) and ref.get("port") in (None, li.port)]  # fmt: skip
        if problem is not None:
            accepted = condition("Accepted", False, problem.reason, str(problem), gen)
        else:
            accepted = _attach(route, relevant, route_hosts, inputs, rules, tables)
        if resolved_problem is not None:
            resolved = condition("ResolvedRefs", False, resolved_problem[0], resolved_problem[1], gen)
        else:
            resolved = condition("ResolvedRefs", True, "ResolvedRefs", "", gen)
        parent = {k: ref[k] for k in ("group", "kind", "namespace", "name", "sectionName", "port") if k in ref}
        found = [accepted, resolved]
        if dropped and problem is None:
            # The spec's "drop" form: the other rules are served (we keep no last good state).
            found.append(condition("PartiallyInvalid", True, dropped[0][1].reason, "Dropped Rule " + "; ".join(
                f"{i}: {exc}" for i, exc in dropped), gen))  # fmt: skip
        parents.append({"parentRef": parent, "controllerName": inputs.controller_name, "conditions": found})
    if not parents:
        return None
    return {**_meta(route, HTTP_ROUTE), "status": {"parents": parents}}


def _attach(route: GenericObject, relevant: list[_Listener], route_hosts: list[str | None], inputs: Inputs,
            rules: Rules, tables: dict[str, list[Match]]) -> dict[str, Any]:  # fmt: skip
    """One parentRef's Accepted condition; the route's matches go to each listener that takes it."""
    gen = route.generation
    if not relevant:
        return condition("Accepted", False, "NoMatchingParent", "no listener matches the parentRef", gen)
    allowed = [li for li in relevant if _allows(li, route, inputs.namespaces)]
    if not allowed:
        return condition("Accepted", False, "NotAllowedByListeners", "no listener of the parentRef allows this route",
                         gen)  # fmt: skip
    taken = [(li, hosts) for li in allowed if (hosts := hostnames.effective(li.hostname, route_hosts))]
    if not taken:
        return condition("Accepted", False, "NoMatchingListenerHostname",
                         "no listener hostname intersects the route's hostnames", gen)  # fmt: skip
    for li, hosts in taken:
        li.attached += 1
        for host in hosts:
            if host is not None:
                li.route_hosts.setdefault(host, set()).add(f"{route.namespace}/{route.name}")
        if li.valid:
            _add_matches(route, rules, hosts, tables.setdefault(li.key, []))
    return condition("Accepted", True, "Accepted", "", gen)


def _allows(li: _Listener, route: GenericObject, namespaces: Mapping[str, Namespace]) -> bool:
    if HTTP_ROUTE not in li.kinds:
        return False
    if li.allowed_from == "All":
        return True
    if li.allowed_from == "Same":
        return route.namespace == li.gateway.namespace
    if li.allowed_from == "Selector" and li.selector is not None:
        ns = namespaces.get(route.namespace)
        return ns is not None and _selector_matches(li.selector, ns.labels)
    return False


Rules = list[tuple[int, dict[str, Any]]]  # (index in the route, rule)


def _rules(route: GenericObject) -> tuple[Rules, list[tuple[int, Refused]]]:
    """The route's valid rules, and the ones dropped with why (the spec's PartiallyInvalid);
    Refused when the route as a whole cannot be accepted (every rule bad, a bad hostname)."""
    rules = route.spec.get("rules")
    if rules is None:
        rules = [{}]
    if not isinstance(rules, list):
        raise Refused("UnsupportedValue", "rules is not a list")
    for h in route.spec.get("hostnames") or []:
        if not isinstance(h, str) or not hostnames.valid(h):
            raise Refused("UnsupportedValue", f"invalid hostname {h!r}")
    good: Rules = []
    dropped: list[tuple[int, Refused]] = []
    for index, rule in enumerate(rules):
        try:
            if not isinstance(rule, dict):
                raise Refused("UnsupportedValue", "a rule is not an object")
            for match in rule.get("matches") or []:
                _check_match(match)
            try:
                filters.fields(rule)
            except filters.FilterError as exc:
                raise Refused(exc.reason, str(exc)) from None
            good.append((index, rule))
        except Refused as exc:
            dropped.append((index, exc))
    if not good and dropped:
        raise dropped[0][1]
    return good, dropped


def _check_match(match: Any) -> None:
    if not isinstance(match, dict):
        raise Refused("UnsupportedValue", "a match is not an object")
    path = match.get("path") or {}
    kind = path.get("type", "PathPrefix")
    value = path.get("value", "/")
    if not isinstance(value, str) or not value:
        raise Refused("UnsupportedValue", "path value must be a string")
    if kind in ("Exact", "PathPrefix"):
        if not _PATH.match(value) or any(b in value for b in _BAD_PATH) or value.endswith(("/..", "/.")):
            raise Refused("UnsupportedValue", f"invalid path {value!r}")
    elif kind == "RegularExpression":
        try:
            re.compile(value)
        except re.error as exc:
            raise Refused("UnsupportedValue", f"invalid path regex {value!r}: {exc}") from None
    else:
        raise Refused("UnsupportedValue", f"path type {kind!r} is not supported")
    method = match.get("method")
    if method is not None and method not in METHODS:
        raise Refused("UnsupportedValue", f"method {method!r} is not supported")
    for field_name in ("headers", "queryParams"):
        for h in _list(match.get(field_name)):
            _check_field(field_name, h)


def _check_field(field_name: str, h: Any) -> None:
    """A header or query parameter match: a token name, a string value, Exact or a regex."""
    if not isinstance(h, dict) or not isinstance(h.get("name"), str) or not _HEADER_NAME.match(h["name"]):
        raise Refused("UnsupportedValue", f"invalid {field_name} name")
    if not isinstance(h.get("value"), str):
        raise Refused("UnsupportedValue", f"invalid {field_name} value")
    kind = h.get("type", "Exact")
    if kind == "RegularExpression":
        try:
            re.compile(h["value"])
        except re.error as exc:
            raise Refused("UnsupportedValue", f"invalid {field_name} regex: {exc}") from None
    elif kind != "Exact":
        raise Refused("UnsupportedValue", f"{field_name} type {kind!r} is not supported")


def rule_name(route: GenericObject, index: int) -> str:
    """The route record of one rule."""
    return f"gw/{route.namespace}/{route.name}/{index}"


def _add_matches(route: GenericObject, rules: Rules, effective: list[str | None], table: list[Match]) -> None:
    key = f"{route.namespace}/{route.name}"
    for r_index, rule in rules:
        matches = rule.get("matches") or [{}]
        for m_index, match in enumerate(matches):
            path = match.get("path") or {}
            kind = path.get("type", "PathPrefix")
            value = path.get("value", "/")
            if kind == "Exact":
                pk, pv = "e", value
            elif kind == "RegularExpression":
                # Matched against the whole path: anchored here, so the Lua only runs it.
                pk, pv = "x", f"^(?:{value})\\z"
            else:
                pk, pv = "p", value.rstrip("/") or "/"  # element-wise: "/abc/" is "/abc"
            headers: dict[str, tuple[str, str, str]] = {}
            for h in match.get("headers") or []:
                var = "http_" + h["name"].lower().replace("-", "_")
                value_h = f"^(?:{h['value']})\\z" if h.get("type") == "RegularExpression" else h["value"]
                headers.setdefault(var, ("hr" if h.get("type") == "RegularExpression" else "he", var, value_h))
            queries: dict[str, tuple[str, str, str]] = {}
            for q in match.get("queryParams") or []:
                value_q = f"^(?:{q['value']})\\z" if q.get("type") == "RegularExpression" else q["value"]
                queries.setdefault(q["name"], ("qr" if q.get("type") == "RegularExpression" else "qe", q["name"],
                                               value_q))  # fmt: skip
            name = rule_name(route, r_index)
            for host in effective:
                table.append(Match(name, host, pk, pv, match.get("method"), tuple(headers.values()),
                                   tuple(queries.values()), (route.created, key, r_index, m_index)))  # fmt: skip


def _backends(route: GenericObject, rule: dict[str, Any], inputs: Inputs, lookup: Lookup,
              out: GatewayModel) -> tuple[str, tuple[str, str] | None]:  # fmt: skip
    """A rule's route record (``ws=<weight>:<upstream or !500> ...``, its filters' fields) and
    the first problem with its backendRefs (reason, message) for ResolvedRefs."""
    refs = rule.get("backendRefs")
    shares: list[str] = []
    issue: tuple[str, str] | None = None
    for ref in refs or []:
        if not isinstance(ref, dict):
            continue
        weight = ref.get("weight", 1)
        if not isinstance(weight, int) or weight < 0:
            weight = 0
        target, problem = _backend(route, ref, inputs, lookup, out)
        if problem is not None and issue is None:
            issue = problem
        if weight > 0:
            shares.append(f"{weight}:{target}")
    # No backend with a weight (none at all, or all 0): every request gets a 500.
    fields = [("ws", " ".join(shares) or f"1:{INVALID}"), ("lb", "round_robin"),
              ("un", f"{route.namespace}-{route.name}")]  # fmt: skip
    return urlencode(fields + filters.fields(rule)), issue


def _backend(route: GenericObject, ref: dict[str, Any], inputs: Inputs, lookup: Lookup,
             out: GatewayModel) -> tuple[str, tuple[str, str] | None]:  # fmt: skip
    name = ref.get("name")
    ns = ref.get("namespace") or route.namespace
    if (ref.get("group") or "") != "" or ref.get("kind", "Service") != "Service":
        return INVALID, ("InvalidKind", f"backendRef {ref.get('group')}/{ref.get('kind')} is not supported")
    if not isinstance(name, str) or not isinstance(ns, str):
        return INVALID, ("BackendNotFound", "backendRef without a name")
    if ns != route.namespace and not granted(inputs.grants, HTTP_ROUTE, route.namespace, ns, "Service", name):
        # The message must not tell whether the Service exists.
        return INVALID, ("RefNotPermitted", f"backendRef to {ns}/{name} is not permitted by a ReferenceGrant")
    svc = lookup.service(ns, name)
    port = ref.get("port")
    if svc is None or svc.is_external_name:
        return INVALID, ("BackendNotFound", f"service {ns}/{name} not found")
    sp = find_service_port(svc, number=port) if isinstance(port, int) else None
    if sp is None:
        return INVALID, ("BackendNotFound", f"service {ns}/{name} has no port {port}")
    canonical = sp.name or str(sp.port)
    upstream = upstream_name(ns, name, canonical)
    if upstream not in out.upstreams:
        out.upstreams[upstream] = Upstream(upstream, f"{ns}/{name}:{canonical}",
                                           ready_endpoints(lookup, svc, sp, out.notes))  # fmt: skip
    return upstream, None
