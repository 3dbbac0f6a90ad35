"""Snapshot -> model: a pure, deterministic function from our Ingresses (and the Services,
EndpointSlices and Secrets they name) to servers, locations and upstreams.

Same input, same output, byte for byte once rendered: every collection is sorted, nothing
depends on dict or arrival order. Conflicts are settled by age: Ingresses are visited oldest
first (creationTimestamp, then namespace/name) and the first to claim a host+path+pathType,
a host's TLS certificate or a host's default backend keeps it.

How Ingress v1 matching maps onto nginx locations (nginx's own rules: ``=`` beats every
prefix; among prefixes the longest wins, and ``^~`` stops the regex search, of which we emit
none):

* Exact ``/p``  -> ``location = /p``.
* Prefix ``/p`` -> ``location = /p`` + ``location ^~ /p/``. nginx prefixes are
  character-wise (``/p`` would match ``/pq``); the pair is element-wise. A trailing slash in
  the rule is dropped first (``/p/`` matches ``/p`` too), and having ``= /p`` also avoids
  nginx's automatic 301 from ``/p`` to ``/p/``. If an Exact ``/p`` exists it keeps ``= /p``.
* Prefix ``/`` -> ``location /``.
* ImplementationSpecific is Prefix (ingress-nginx without use-regex).

Longest path first and Exact before Prefix then hold across every Ingress of a host.

Endpoints stay apart from routes: a location names an upstream; the upstream holds the ready
endpoint addresses. A missing Service (or port) is a 503 route; an upstream without ready
endpoints is rendered as a 503 too.

ExternalName Services are proxied to the external name: an IP becomes an upstream block (with
keep-alive); a DNS name is resolved by nginx per request (``resolver`` from resolv.conf), so
a name that does not resolve yet costs that route a 502, not the whole configuration. As for
every backend, the Host header sent is the client's (ingress-nginx's default): an external
service that needs its own name must accept the client's Host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ingress import validate
from ingress.certs import CertError, CertPair, load_pair
from ingress.settings import NginxSettings
from ingress.validate import EXACT, Backend, InvalidValue, PathRule
from kubewatch import EndpointSlice, Ingress, Secret, Service, ServicePort
from kubewatch.services import find_service_port, upstream_endpoints

CATCH_ALL = "_"
TLS_SECRET_TYPE = "kubernetes.io/tls"

# nginx location modifiers, in the order the template lists them for one path.
LOC_EXACT, LOC_PREFIX, LOC_ROOT = "=", "^~", "/"
_LOC_ORDER = {LOC_EXACT: 0, LOC_PREFIX: 1, LOC_ROOT: 2}


class Lookup(Protocol):
    """Read access to the objects Ingresses refer to (a kubewatch Store satisfies it)."""

    def service(self, namespace: str, name: str) -> Service | None: ...

    def slices_for_service(self, namespace: str, service: str) -> tuple[EndpointSlice, ...]: ...

    def get(self, kind: str, namespace: str, name: str) -> object | None: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    ingresses: tuple[Ingress, ...]  # ours (classes.owned), any order
    lookup: Lookup
    settings: NginxSettings
    default_cert: CertPair


@dataclass(frozen=True, slots=True)
class Target:
    """Where a location sends requests: an upstream by name, or a fixed status."""

    upstream: str | None
    status: int  # 0 when proxying
    service: str  # "ns/name:port" for comments and logs; "" for the built-in default backend


DEFAULT_BACKEND = Target(None, 404, "")


@dataclass(frozen=True, slots=True)
class Location:
    match: str  # LOC_EXACT | LOC_PREFIX | LOC_ROOT
    path: str  # the nginx location argument
    rule: str  # "Prefix /foo" as the Ingress wrote it ("" for the default location)
    ingress: str  # "ns/name" ("" for the default backend)
    target: Target


@dataclass(frozen=True, slots=True)
class Server:
    host: str  # CATCH_ALL, an exact host, or "*.suffix"
    cert: str | None  # digest of the certificate; None = the default certificate
    ssl_redirect: bool
    locations: tuple[Location, ...]
    ingress: str  # the oldest Ingress naming the host

    @property
    def is_catch_all(self) -> bool:
        return self.host == CATCH_ALL

    @property
    def is_wildcard(self) -> bool:
        return self.host.startswith("*.")


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    service: str  # "ns/name:port"
    endpoints: tuple[tuple[str, int], ...]  # ready (ip, port), sorted
    external: str | None = None  # ExternalName target (IP or DNS name)
    external_port: int = 0

    @property
    def is_dns(self) -> bool:
        """An ExternalName that is a DNS name: resolved by nginx at request time."""
        return self.external is not None and not validate.is_ip(self.external)

    @property
    def available(self) -> bool:
        return bool(self.endpoints) or self.external is not None


@dataclass(frozen=True, slots=True)
class Rejection:
    ingress: str  # "ns/name"
    uid: str
    resource_version: str
    reason: str


@dataclass(frozen=True, slots=True)
class Model:
    servers: tuple[Server, ...]
    upstreams: tuple[Upstream, ...]
    certificates: tuple[CertPair, ...]  # every pair the servers use, default included
    default_cert: str
    settings: NginxSettings
    ingresses: tuple[str, ...]  # served ("ns/name"), oldest first
    rejected: tuple[Rejection, ...] = ()
    notes: tuple[str, ...] = ()  # conflicts and fallbacks worth a log line
    upstream_index: dict[str, Upstream] = field(default_factory=dict, compare=False, repr=False)

    def upstream(self, name: str) -> Upstream | None:
        return self.upstream_index.get(name)

    def server(self, host: str) -> Server | None:
        return next((s for s in self.servers if s.host == host), None)


@dataclass
class _Host:
    owner: str
    paths: dict[tuple[str, str], tuple[PathRule, str, str]] = field(default_factory=dict)  # -> (rule, ns, ingress)
    default: tuple[Backend, str, str] | None = None
    tls: bool = False
    cert: CertPair | None = None


def ingress_key(ing: Ingress) -> str:
    return f"{ing.namespace}/{ing.name}"


def _age(ing: Ingress) -> tuple[str, str, str]:
    return (ing.created, ing.namespace, ing.name)


def build(snapshot: Snapshot, exclude: Iterable[str] = ()) -> Model:
    """The model of ``snapshot`` without the Ingresses named in ``exclude`` ("ns/name")."""
    excluded = frozenset(exclude)
    lookup = snapshot.lookup
    hosts: dict[str, _Host] = {}
    rejected: list[Rejection] = []
    notes: list[str] = []
    served: list[str] = []
    for ing in sorted(snapshot.ingresses, key=_age):
        key = ingress_key(ing)
        if key in excluded:
            continue
        try:
            validate.namespace(ing.namespace)
            validate.object_name(ing.name)
            spec = validate.ingress_spec(ing.spec)
        except InvalidValue as exc:
            rejected.append(Rejection(key, ing.uid, ing.resource_version, str(exc)))
            continue
        served.append(key)
        named: list[str] = []
        for rule in spec.rules:
            host = rule.host or CATCH_ALL
            acc = hosts.setdefault(host, _Host(owner=key))
            if host not in named:
                named.append(host)
            for p in rule.paths:
                if p.backend is None:
                    notes.append(f"{key}: {p.path_type} {p.path} on {host}: resource backends are not supported")
                    continue
                norm = p.path if p.match_type == EXACT else (p.path.rstrip("/") or "/")
                slot = (p.match_type, norm)
                if slot in acc.paths:
                    holder = acc.paths[slot][2]
                    if holder != key:
                        notes.append(f"{key}: {p.match_type} {p.path} on {host} is already served by {holder}")
                    continue
                acc.paths[slot] = (p, ing.namespace, key)
        if not spec.rules:
            named.append(CATCH_ALL)
            hosts.setdefault(CATCH_ALL, _Host(owner=key))
        if spec.default_backend is not None:
            for host in named:
                acc = hosts[host]
                if acc.default is None:
                    acc.default = (spec.default_backend, ing.namespace, key)
        for host in named:
            if host == CATCH_ALL:
                continue
            acc = hosts[host]
            for tls in spec.tls:
                if tls.hosts and host not in tls.hosts:
                    continue
                acc.tls = True
                if acc.cert is None and tls.secret is not None:
                    pair, problem = _certificate(lookup, ing.namespace, tls.secret, host)
                    if pair is not None:
                        acc.cert = pair
                    else:
                        notes.append(f"{key}: TLS for {host}: {problem}; using the default certificate")
                break

    # Always a catch-all server: nginx would otherwise make the first server of the port
    # the default, and unknown hosts would reach some Ingress's routes instead of a 404.
    hosts.setdefault(CATCH_ALL, _Host(owner=""))
    upstreams: dict[str, Upstream] = {}

    def target(ns: str, backend: Backend) -> Target:
        return _resolve(lookup, ns, backend, upstreams, notes)

    servers = []
    for host in sorted(hosts, key=_host_order):
        acc = hosts[host]
        locations = _locations(acc, target)
        if not any(loc.match == LOC_ROOT for loc in locations):
            if acc.default is not None:
                backend, ns, owner = acc.default
                locations.append(Location(LOC_ROOT, "/", "defaultBackend", owner, target(ns, backend)))
            else:
                locations.append(Location(LOC_ROOT, "/", "", "", DEFAULT_BACKEND))
        locations.sort(key=lambda loc: (-len(loc.path), _LOC_ORDER[loc.match], loc.path))
        servers.append(
            Server(
                host,
                acc.cert.digest if acc.cert is not None else None,
                acc.tls and snapshot.settings.ssl_redirect,
                tuple(locations),
                acc.owner,
            )
        )
    certs = {snapshot.default_cert.digest: snapshot.default_cert}
    for acc in hosts.values():
        if acc.cert is not None:
            certs[acc.cert.digest] = acc.cert
    ordered = tuple(upstreams[name] for name in sorted(upstreams))
    return Model(
        servers=tuple(servers),
        upstreams=ordered,
        certificates=tuple(certs[d] for d in sorted(certs)),
        default_cert=snapshot.default_cert.digest,
        settings=snapshot.settings,
        ingresses=tuple(served),
        rejected=tuple(rejected),
        notes=tuple(dict.fromkeys(notes)),
        upstream_index={u.name: u for u in ordered},
    )


def _host_order(host: str) -> tuple[int, str]:
    """Catch-all first, then exact hosts, then wildcards (nginx's own precedence too)."""
    if host == CATCH_ALL:
        return (0, "")
    return (2 if host.startswith("*.") else 1, host)


def _locations(acc: _Host, resolve: Callable[[str, Backend], Target]) -> list[Location]:
    exact_paths = {norm for (mtype, norm) in acc.paths if mtype == EXACT}
    out: list[Location] = []
    for (mtype, norm), (rule, ns, owner) in sorted(acc.paths.items()):
        assert rule.backend is not None
        tgt = resolve(ns, rule.backend)
        label = f"{rule.path_type} {rule.path}"
        if mtype == EXACT:
            out.append(Location(LOC_EXACT, norm, label, owner, tgt))
        elif norm == "/":
            out.append(Location(LOC_ROOT, "/", label, owner, tgt))
        else:
            if norm not in exact_paths:
                out.append(Location(LOC_EXACT, norm, label, owner, tgt))
            out.append(Location(LOC_PREFIX, norm + "/", label, owner, tgt))
    return out


def _certificate(lookup: Lookup, namespace: str, name: str, host: str) -> tuple[CertPair | None, str]:
    secret = lookup.get("secrets", namespace, name)
    if not isinstance(secret, Secret):
        return None, f"secret {namespace}/{name} not found"
    if secret.type != TLS_SECRET_TYPE:
        return None, f"secret {namespace}/{name} is of type {secret.type}, not {TLS_SECRET_TYPE}"
    try:
        pair = load_pair(secret.data.get("tls.crt", b""), secret.data.get("tls.key", b""))
    except CertError as exc:
        return None, f"secret {namespace}/{name}: {exc}"
    if pair.names and not pair.covers(host):
        return None, f"the certificate in {namespace}/{name} does not cover {host}"
    return pair, ""


def upstream_name(namespace: str, service: str, port: str) -> str:
    # Namespaces and Service names are DNS labels and port names IANA service names: none
    # holds "_", so this cannot collide the way "ns-svc-port" can.
    return f"{namespace}_{service}_{port}"


def _resolve(lookup: Lookup, ns: str, backend: Backend, upstreams: dict[str, Upstream], notes: list[str]) -> Target:
    label = f"{ns}/{backend.service}:{backend.port_label}"
    svc = lookup.service(ns, backend.service)
    if svc is None:
        notes.append(f"service {ns}/{backend.service} not found: 503")
        return Target(None, 503, label)
    name = upstream_name(ns, backend.service, backend.port_label)
    if svc.type == "ExternalName":
        try:
            external = validate.external_name(svc.external_name, f"service {ns}/{svc.name} spec.externalName")
        except InvalidValue as exc:
            notes.append(f"{exc}: 503")
            return Target(None, 503, label)
        port = backend.port_number
        if port is None:
            sp = find_service_port(svc, name=backend.port_name)
            port = sp.port if sp is not None else None
        if port is None:
            notes.append(f"service {ns}/{svc.name} has no port {backend.port_label}: 503")
            return Target(None, 503, label)
        upstreams[name] = Upstream(name, label, (), external, port)
        return Target(name, 0, label)
    sp = find_service_port(svc, name=backend.port_name, number=backend.port_number)
    if sp is None:
        notes.append(f"service {ns}/{svc.name} has no port {backend.port_label}: 503")
        return Target(None, 503, label)
    if sp.name:
        try:
            validate.port_name(sp.name, f"service {ns}/{svc.name} port name")
        except InvalidValue as exc:
            notes.append(f"{exc}: 503")
            return Target(None, 503, label)
    # Named after the resolved Service port, so "port: {name: http}" and "port: {number: 80}"
    # for the same port share one upstream (and its keep-alive pool).
    canonical = sp.name or str(sp.port)
    name = upstream_name(ns, backend.service, canonical)
    if name not in upstreams:
        upstreams[name] = Upstream(name, f"{ns}/{svc.name}:{canonical}", _endpoints(lookup, svc, sp, notes))
    return Target(name, 0, label)


def _endpoints(lookup: Lookup, svc: Service, sp: ServicePort, notes: list[str]) -> tuple[tuple[str, int], ...]:
    """Ready endpoints, each address checked: they land unquoted in ``server`` lines, and
    kubewatch keeps addresses as written (a manifest can hold anything)."""
    try:
        found = upstream_endpoints(lookup, svc, sp)
    except ValueError as exc:  # an address that is no IP at all breaks its sort
        notes.append(f"service {svc.namespace}/{svc.name}: bad endpoint address ({exc}); no endpoints used")
        return ()
    good = []
    for address, port in found:
        if not validate.is_ip(address) or not 0 < port < 65536:
            notes.append(f"service {svc.namespace}/{svc.name}: endpoint {address!r}:{port} ignored")
            continue
        good.append((validate.ip(address, "endpoint"), port))
    return tuple(good)
