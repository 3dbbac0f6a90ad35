r"""Snapshot -> model: a pure, deterministic function from our Ingresses (and the Services,
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
  the rule is dropped first (``/p/`` matches ``/p`` too). If an Exact ``/p`` exists it keeps
  ``= /p``.
* Prefix ``/`` -> ``location /``.
* ImplementationSpecific is Prefix (ingress-nginx without use-regex).

Longest path first and Exact before Prefix then hold across every Ingress of a host.

nginx's automatic redirect: when a location whose name ends in "/" proxies, nginx answers a
request for the name without that "/" itself, with a 301 to it, and before any regex location
is tried; ``location = /p/`` included. So no name ending in "/" (but "/") goes without an exact
location for the name without it. A Prefix pair has its ``= /p``. An Exact ``/p/`` gets a
``location = /p`` that serves what ``/p`` reaches anyway (the longest prefix location matching
it, at worst ``/``): the spec says ``/p`` does not match ``Exact /p/``, so the redirect must not
answer. (Regex mode, below, has no such name.)

Annotations (ingress/annotations.py) are parsed per Ingress before anything else; a bad one
rejects the whole Ingress. They mostly shape that Ingress's own locations, with these
host-wide effects, as in ingress-nginx:

* Regex mode: once any Ingress of a host has use-regex or rewrite-target, every non-Exact
  path of that host becomes a case-insensitive regex location (``~* "^path"``); paths of the
  other Ingresses are escaped and stay element-wise (``^/foo(/|$)``). nginx tries regex
  locations in order, so they are written as ingress-nginx's "Path Priority" says: by
  descending length of the path as the Ingress wrote it (then the greater path first), not of
  the regex rendered, whose ``(/|$)`` and ``[.]`` would let a shorter path go first.
  Exact paths keep ``location =`` (ingress-nginx makes them ``~*`` prefixes; the spec says
  exact), except one ending in "/": that becomes the case-sensitive anchored regex
  ``~ "^/p/\z"``, written before every other regex so that it still beats them all, as ``=``
  would. A ``= /p`` guard cannot work here: what ``/p`` reaches is the first regex to match
  it, which only nginx's PCRE can tell. ``\z``, not ``$``, which also matches before a final
  newline (``/p/%0A``).
* Server-level values (app-root, server-snippet) come from the oldest Ingress setting them.
* A canary Ingress claims no path: it adds an alternative backend (by header, then cookie,
  then canary-weight out of canary-weight-total) to the location another Ingress serves on
  the same host and path; alone it serves nothing.
* Session affinity: the cookie's Path is session-cookie-path, else the Ingress path as written
  (ingress-nginx's $location_path); a path that is a regex falls back to "/" with a note
  (ingress-nginx would send the regex text, which no browser path-matches).

Endpoints stay apart from routes: a location names a route (where it is: host and location),
the route names its upstreams and how to balance, the upstream holds the ready endpoint
addresses. Routes and upstreams are live data (ingress/livedata.py): a change of endpoints or
canary weights renders the same nginx.conf. A missing Service (or port) is a 503 route; an
upstream without ready endpoints answers 503 from the balancer.

ExternalName Services are proxied to the external name: an IP becomes an upstream block (with
keep-alive); a DNS name is resolved by nginx per request (``resolver`` from resolv.conf), so
a name that does not resolve yet costs that route a 502, not the whole configuration. As for
every backend, the Host header sent is the client's (ingress-nginx's default): an external
service that needs its own name must accept the client's Host.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import ingress.annotations as annotations_module  # (the name "annotations" is __future__'s)
from ingress import features, validate
from ingress.annotations import NONE, Annotations
from ingress.certs import CertError, CertPair, pair_from_secret
from ingress.endpoints import ServiceLookup
from ingress.l4 import StreamServer
from ingress.settings import NginxSettings
from ingress.validate import EXACT, PREFIX, Backend, IngressSpec, InvalidValue, PathRule, Rule, Tls
from kubewatch import EndpointSlice, Ingress, Secret, Service, ServicePort
from kubewatch.services import find_service_port

CATCH_ALL = "_"
TLS_SECRET_TYPE = "kubernetes.io/tls"

# nginx location modifiers, in the order the template lists them for one path.
LOC_EXACT, LOC_PREFIX, LOC_ROOT, LOC_REGEX = "=", "^~", "/", "~*"
LOC_EXACT_REGEX = "~"  # an Exact path ending in "/" on a regex-mode host (see above)
_LOC_ORDER = {LOC_EXACT_REGEX: 0, LOC_EXACT: 0, LOC_PREFIX: 1, LOC_REGEX: 2, LOC_ROOT: 3}


class Lookup(ServiceLookup, Protocol):
    """Read access to the objects Ingresses refer to (a kubewatch Store satisfies it)."""

    def get(self, kind: str, namespace: str, name: str) -> object | None: ...

    @property
    def generations(self) -> Mapping[str, int]:
        """Per kind, a number that changes whenever an object of the kind does."""
        ...


# "ns/name" -> (the Ingress record parsed, allow-snippets, what parse_ingress made of it).
ParseCache = dict[str, tuple[Ingress, bool, "Parsed | Rejection"]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a model is built from: our Ingresses, look-ups for what they name, settings, default certificate."""

    ingresses: tuple[Ingress, ...]  # ours (classes.owned), any order
    lookup: Lookup
    settings: NginxSettings
    default_cert: CertPair
    tcp_services: Mapping[str, str] | None = None  # --tcp-services-configmap data
    udp_services: Mapping[str, str] | None = None
    reserved_ports: frozenset[int] = frozenset()  # the controller's own listeners
    # What parse_ingress made of each Ingress ("ns/name" -> (the record parsed, allow-snippets, result)).
    # Pass one dict to the snapshots of successive reconciles: an Ingress is parsed again only
    # when its record is a new object (the store replaces a record on every change).
    parsed: ParseCache = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a location sends requests: an upstream by name, or a fixed status."""

    upstream: str | None
    status: int  # 0 when proxying
    service: str  # "ns/name:port" for comments and logs; "" for the built-in default backend
    resolved: bool = False  # an ExternalName DNS name nginx resolves per request (no balancer)


DEFAULT_BACKEND = Target(None, 404, "")


@dataclass(frozen=True, slots=True)
class Canary:
    """A canary Ingress's alternative backend for one location, chosen per request by the
    live balancer as ingress-nginx's is: a decisive header, else a decisive cookie, else the
    weight. All of it is data (ingress/livedata.py): changing it needs no reload."""

    upstream: str
    weight: int  # out of weight_total of the requests the header and cookie left undecided
    weight_total: int
    header: str | None  # the request header that decides: "always" / "never", unless ...
    header_value: str | None  # ... this value is set: only it routes to the canary
    header_pattern: str | None  # ... or this regex (no header_value): a match routes to the canary
    cookie: str | None  # "always" / "never" in this cookie decide when the header did not
    ingress: str


@dataclass(frozen=True, slots=True)
class SessionCookie:
    """The affinity cookie a location hands out to a client that has none."""

    name: str
    path: str
    max_age: int | None
    samesite: str | None  # None, Lax or Strict
    secure: bool  # always Secure; otherwise Secure over HTTPS only (ingress-nginx's default)
    domain: str | None = None  # a validated DNS name, perhaps with a leading dot

    @property
    def header(self) -> str:
        """The Set-Cookie value, attributes in lua-resty-cookie's order (ingress-nginx's):
        a new session key ($request_id), Max-Age, Domain, Path, Secure, HttpOnly, SameSite. Every
        piece is validated; $portolan_affinity_secure is "; Secure" on HTTPS connections."""
        text = f"{self.name}=$request_id"
        if self.max_age is not None:
            text += f"; Max-Age={self.max_age}"
        if self.domain is not None:
            text += f"; Domain={self.domain}"
        text += f"; Path={self.path}" + ("; Secure" if self.secure else "$portolan_affinity_secure") + "; HttpOnly"
        return text + (f"; SameSite={self.samesite}" if self.samesite else "")

    @property
    def var(self) -> str:
        return digest("s", self.header)


@dataclass(frozen=True, slots=True)
class Location:
    """One nginx location of a server: how it matches, the Ingress rule it serves and where requests go."""

    match: str  # LOC_EXACT | LOC_PREFIX | LOC_ROOT | LOC_REGEX | LOC_EXACT_REGEX
    path: str  # the nginx location argument
    rule: str  # "Prefix /foo" as the Ingress wrote it ("" for the default location)
    ingress: str  # "ns/name" ("" for the default backend)
    target: Target
    ann: Annotations = NONE  # the owning Ingress's annotations
    redirect_https: bool = False
    rewrite: str = ""  # the regex rewrite-target applies to ("" when none)
    canary: Canary | None = None
    zone: str = ""  # limit_req / limit_conn zone name (per Ingress)
    cookie: SessionCookie | None = None  # with affinity: cookie
    written: str = ""  # LOC_REGEX: the path as the Ingress wrote it, which orders regex locations
    route: str = ""  # names this location's live route (primary, canary, balancing; labels): set by build

    @property
    def hash_key(self) -> str:
        """What the balancer hashes on, as an nginx value ("": no hashing): the affinity cookie
        (or the request id that becomes it), else upstream-hash-by (ingress-nginx's order)."""
        if self.cookie is not None:
            return f"$portolan_affinity_{self.affinity_var}"
        return self.ann.upstream_hash_by or ""

    def balance(self, settings: NginxSettings) -> str:
        """The balancer's algorithm: chash when there is a hash key, else load-balance."""
        if self.hash_key:
            return "chash"
        return self.ann.load_balance or settings.load_balance

    @property
    def affinity_var(self) -> str:
        """Names the variables for the session cookie: cookie names may hold "-", variables not."""
        return digest("a", self.ann.session_cookie_name)


@dataclass(frozen=True, slots=True)
class Server:
    """One nginx server block: a host, its certificate and redirect, its locations in the order written."""

    host: str  # CATCH_ALL, an exact host, or "*.suffix"
    cert: str | None  # digest of the certificate; None = the default certificate
    ssl_redirect: bool
    locations: tuple[Location, ...]
    ingress: str  # the oldest Ingress naming the host
    app_root: str | None = None  # from the oldest Ingress of the host setting it
    snippet: str | None = None  # server-snippet (only with allow-snippet-annotations)
    secret: str = ""  # "ns/name" of the Secret the certificate came from ("" for the default)
    # Server-scope feature values (ingress/features/), from the oldest Ingress of the host setting each.
    features: tuple[Any, ...] = ()

    @property
    def is_catch_all(self) -> bool:
        return self.host == CATCH_ALL

    @property
    def is_wildcard(self) -> bool:
        return self.host.startswith("*.")


@dataclass(frozen=True, slots=True)
class Upstream:
    """The endpoints behind one Service port (or an ExternalName target) that routes balance over."""

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

    @property
    def has_block(self) -> bool:
        """Rendered as an ``upstream {}`` block: what locations and canaries can proxy to by name."""
        return self.available and not self.is_dns


@dataclass(frozen=True, slots=True)
class ListenerServer:
    """A Gateway listener's server block (ingress/gateway): a port and a hostname whose
    requests the balancer matches against the listener's live match table."""

    port: int  # nginx's port (after --listener-port-map)
    hostname: str  # "" for a listener without hostname: the port's default server
    route: str  # $portolan_route: "~g:<port>/<hostname>"
    listeners: tuple[str, ...]  # "ns/gateway/listener", for the comment
    tls: bool = False  # HTTPS (Terminate): certificates chosen live by SNI among the port's listeners
    # On the Ingresses' port: the server names it has there (validated hostnames and
    # wildcards); () on a port of its own, where the hostname alone is its name.
    shared: tuple[str, ...] = ()
    listener_port: int = 0  # the Gateway's port (redirects name it), before --listener-port-map


@dataclass(frozen=True, slots=True)
class Rejection:
    """An Ingress left out of the model and why (reported as a Warning Event on that version)."""

    ingress: str  # "ns/name"
    uid: str
    resource_version: str
    reason: str


@dataclass(frozen=True, slots=True)
class Model:
    """What nginx is to serve (servers, upstreams, certificates, zones, streams), and what was left out and why."""

    servers: tuple[Server, ...]
    upstreams: tuple[Upstream, ...]
    certificates: tuple[CertPair, ...]  # every pair the servers use, default included
    default_cert: str
    settings: NginxSettings
    ingresses: tuple[str, ...]  # served ("ns/name"), oldest first
    rejected: tuple[Rejection, ...] = ()
    notes: tuple[str, ...] = ()  # conflicts and fallbacks worth a log line
    rate_zones: tuple[tuple[str, int], ...] = ()  # (zone, requests per second)
    conn_zones: tuple[str, ...] = ()
    session_cookies: tuple[SessionCookie, ...] = ()  # the Set-Cookie values affinity hands out
    affinity_cookies: tuple[tuple[str, str], ...] = ()  # (cookie, variable suffix)
    streams: tuple[StreamServer, ...] = ()  # L4 (TCP/UDP services)
    # What feature values need at http level, each a tuple of strings naming it first
    # (("auth_cache",), ("auth_upstream", name, ...)): rendered by http.j2.
    http_needs: tuple[tuple[str, ...], ...] = ()
    listeners: tuple[ListenerServer, ...] = ()  # Gateway API listeners (ingress/gateway)
    extra_records: tuple[tuple[str, str], ...] = ()  # their live records (match tables, routes)
    upstream_index: dict[str, Upstream] = field(init=False, compare=False, repr=False)  # by name

    def __post_init__(self) -> None:
        object.__setattr__(self, "upstream_index", {u.name: u for u in self.upstreams})

    def upstream(self, name: str) -> Upstream | None:
        return self.upstream_index.get(name)

    def server(self, host: str) -> Server | None:
        return next((s for s in self.servers if s.host == host), None)


@dataclass(frozen=True, slots=True)
class _Claim:
    rule: PathRule
    namespace: str
    ingress: str
    ann: Annotations


@dataclass
class _Host:
    owner: str
    paths: dict[tuple[str, str], _Claim] = field(default_factory=dict)
    canaries: dict[tuple[str, str], _Claim] = field(default_factory=dict)
    default: tuple[Backend, str, str] | None = None
    tls: bool = False
    cert: CertPair | None = None
    secret: str = ""  # the certificate's Secret, "ns/name"
    regex: bool = False  # some Ingress of the host has use-regex or rewrite-target
    app_root: str | None = None
    snippet: str | None = None
    features: dict[str, Any] = field(default_factory=dict)  # server-scope values by group


def ingress_key(ing: Ingress) -> str:
    return f"{ing.namespace}/{ing.name}"


# An Ingress's annotations, their notes and its spec.
Parsed = tuple[Annotations, tuple[str, ...], IngressSpec]


def parse_ingress(snapshot: Snapshot, ing: Ingress, key: str) -> Parsed | Rejection:
    """What ``ing`` says, or why it is rejected, parsed once per record (``key``, its
    "ns/name", is unique in a snapshot)."""
    allow = snapshot.settings.allow_snippet_annotations
    cached = snapshot.parsed.get(key)
    if cached is not None and cached[0] is ing and cached[1] == allow:
        return cached[2]
    found = parse_record(ing, key, allow_snippets=allow)
    snapshot.parsed[key] = (ing, allow, found)
    return found


def parse_record(ing: Ingress, key: str, *, allow_snippets: bool) -> Parsed | Rejection:
    """What ``ing`` says, or why it is rejected: every validator an Ingress meets, uncached.
    The admission webhook calls this too, so it refuses exactly what the model would."""
    try:
        validate.namespace(ing.namespace)
        validate.object_name(ing.name)
        validate.uid(ing.uid)
        ann, notes = annotations_module.parse(ing.annotations or {}, allow_snippets=allow_snippets)
        return (ann, tuple(notes), validate.ingress_spec(ing.spec, regex=ann.regex))
    except InvalidValue as exc:
        return Rejection(key, ing.uid, ing.resource_version, str(exc))


# One Ingress as a host's build sees it: the record, its "ns/name", what parse_ingress made of it.
Member = tuple[Ingress, str, "Parsed"]


def _accumulate(acc: _Host, ing: Ingress, key: str, parsed: Parsed, host: str, lookup: Lookup,
                notes: list[str]) -> None:  # fmt: skip
    """What one Ingress (in age order) adds to ``host``, which it touches."""
    ann, _, spec = parsed
    rules = [rule for rule in spec.rules if (rule.host or CATCH_ALL) == host]
    if ann.canary:
        # A canary claims no path: it only offers an alternative for paths another Ingress
        # serves (alone it serves nothing: 404, as in ingress-nginx).
        for p in _served_paths(rules):
            acc.canaries.setdefault(_slot(p, ann.regex), _Claim(p, ing.namespace, key, ann))
        return
    _claim_rules(acc, ing, key, ann, rules, host, notes)
    if spec.default_backend is not None and acc.default is None:
        acc.default = (spec.default_backend, ing.namespace, key)
    if host != CATCH_ALL:
        _take_tls(acc, ing.namespace, key, spec.tls, host, lookup, notes)


def _claim_rules(acc: _Host, ing: Ingress, key: str, ann: Annotations, rules: list[Rule], host: str,
                 notes: list[str]) -> list[tuple[PathRule, str]]:  # fmt: skip
    """A non-canary Ingress's rules for ``host`` claim their paths: the paths an older
    Ingress already holds, with that Ingress ("ns/name")."""
    if rules:
        _adopt_server_settings(acc, ann)
    lost: list[tuple[PathRule, str]] = []
    for rule in rules:
        for p in rule.paths:
            holder = _claim_path(acc, p, _Claim(p, ing.namespace, key, ann), host, notes)
            if holder is not None:
                lost.append((p, holder))
    return lost


def lost_paths(host: str, members: list[Member], key: str) -> list[tuple[PathRule, str]]:
    """The paths of Ingress ``key`` (one of ``members``, oldest first) on ``host`` that an
    older member holds, with the holder: what build_host leaves out of ``key`` with a note.
    Claims only, so no look-up is made (for the admission webhook)."""
    acc = _Host(owner="")
    for ing, k, (ann, _, spec) in members:
        if ann.canary:
            continue
        rules = [rule for rule in spec.rules if (rule.host or CATCH_ALL) == host]
        lost = _claim_rules(acc, ing, k, ann, rules, host, [])
        if k == key:
            return lost
    return []


def _served_paths(rules: list[Rule]) -> Iterator[PathRule]:
    """The paths of ``rules`` with a Service backend (resource backends are not served)."""
    return (p for rule in rules for p in rule.paths if p.backend is not None)


def _adopt_server_settings(acc: _Host, ann: Annotations) -> None:
    """The server-level annotations of an Ingress with rules for the host: regex matching if
    any has it, the app root and the server snippet of the oldest that sets them."""
    acc.regex = acc.regex or ann.regex
    if acc.app_root is None and ann.app_root is not None:
        acc.app_root = ann.app_root
    if acc.snippet is None and ann.server_snippet is not None:
        acc.snippet = ann.server_snippet
    for value in features.of_scope(ann.features, features.SERVER):
        acc.features.setdefault(value.group, value)


def _claim_path(acc: _Host, p: PathRule, claim: _Claim, host: str, notes: list[str]) -> str | None:
    """``p`` served by ``claim``'s Ingress unless an older one holds it (a note if another,
    and that Ingress is returned)."""
    key = claim.ingress
    if p.backend is None:
        notes.append(f"{key}: {p.path_type} {p.path} on {host}: resource backends are not supported")
        return None
    slot = _slot(p, claim.ann.regex)
    held = acc.paths.get(slot)
    if held is None:
        acc.paths[slot] = claim
    elif held.ingress != key:
        notes.append(f"{key}: {p.match_type} {p.path} on {host} is already served by {held.ingress}")
        return held.ingress
    return None


def _take_tls(acc: _Host, namespace: str, key: str, tls: tuple[Tls, ...], host: str, lookup: Lookup,
              notes: list[str]) -> None:  # fmt: skip
    """HTTPS for ``host`` if a TLS entry covers it (the first that does), with its certificate
    unless an older Ingress gave one."""
    entry = next((t for t in tls if not t.hosts or host in t.hosts), None)
    if entry is None:
        return
    acc.tls = True
    if acc.cert is None and entry.secret is not None:
        pair, problem = _certificate(lookup, namespace, entry.secret, host)
        if pair is not None:
            acc.cert = pair
            acc.secret = f"{namespace}/{entry.secret}"
        else:
            notes.append(f"{key}: TLS for {host}: {problem}; using the default certificate")


class _Recorder:
    """A Lookup that remembers what it answered, so a cached host can be checked cheaply."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self.seen: list[tuple[str, tuple[str, ...], object]] = []

    def get(self, kind: str, namespace: str, name: str) -> object | None:
        found = self.lookup.get(kind, namespace, name)
        self.seen.append(("get", (kind, namespace, name), found))
        return found

    def service(self, namespace: str, name: str) -> Service | None:
        found = self.lookup.service(namespace, name)
        self.seen.append(("service", (namespace, name), found))
        return found

    def slices_for_service(self, namespace: str, service: str) -> tuple[EndpointSlice, ...]:
        raise AssertionError("endpoints are resolved after the hosts, not while building one")

    @property
    def generations(self) -> Mapping[str, int]:
        return self.lookup.generations


@dataclass(frozen=True, slots=True)
class Extras:
    """What a host's locations need at http level: rate and connection zones, affinity cookies."""

    rate_zones: tuple[tuple[str, int], ...] = ()  # (zone, requests per second)
    conn_zones: tuple[str, ...] = ()
    session_cookies: tuple[SessionCookie, ...] = ()
    affinity_cookies: tuple[tuple[str, str], ...] = ()  # (cookie, variable suffix)
    http_needs: tuple[tuple[str, ...], ...] = ()  # what feature values need at http level (Model.http_needs)

    @classmethod
    def of(cls, locations: Iterable[Location]) -> Extras | None:
        every = list(locations)
        sticky = [(loc, loc.cookie) for loc in every if loc.target.upstream and loc.cookie is not None]
        found = cls(
            tuple(sorted({(loc.zone, loc.ann.limit_rps) for loc in every if loc.ann.limit_rps})),
            tuple(sorted({loc.zone for loc in every if loc.ann.limit_connections})),
            tuple(sorted({cookie for _, cookie in sticky}, key=lambda c: c.var)),
            tuple(sorted({(cookie.name, loc.affinity_var) for loc, cookie in sticky})),
            tuple(sorted({need for loc in every for v in loc.ann.features for need in getattr(v, "http_needs", ())})),
        )
        return found if found != NO_EXTRAS else None

    @classmethod
    def union(cls, parts: Iterable[Extras]) -> Extras:
        found = list(parts)
        cookies = {c.var: c for part in found for c in part.session_cookies}
        return cls(
            tuple(sorted({z for part in found for z in part.rate_zones})),
            tuple(sorted({z for part in found for z in part.conn_zones})),
            tuple(cookies[var] for var in sorted(cookies)),
            tuple(sorted({c for part in found for c in part.affinity_cookies})),
            tuple(sorted({n for part in found for n in part.http_needs})),
        )


NO_EXTRAS = Extras()


@dataclass(frozen=True, slots=True)
class HostBuilt:
    """One host as built from its Ingresses, with what it looked up to be built (so a cache can
    tell when it must be built again) and its share of the whole model."""

    members: tuple[Ingress, ...]  # the records it was built from, in age order
    settings: NginxSettings
    seen: tuple[tuple[str, tuple[str, ...], object], ...]  # look-ups made, with their answers
    server: Server
    notes: tuple[str, ...]
    upstreams: dict[str, Upstream]  # without endpoints
    recipes: dict[str, tuple[Service, ServicePort]]  # how to find each upstream's endpoints
    cert: CertPair | None
    extras: Extras | None  # None: the host needs nothing at http level

    def still(self, members: list[Member], lookup: Lookup, settings: NginxSettings, stable: bool) -> bool:
        """Built from these very objects (``stable``: no Service or Secret changed since)."""
        if self.settings is not settings or len(self.members) != len(members):
            return False
        if any(a is not b[0] for a, b in zip(self.members, members, strict=True)):
            return False
        return stable or all(getattr(lookup, method)(*args) is found for method, args, found in self.seen)


def build_host(host: str, members: list[Member], lookup: Lookup, settings: NginxSettings) -> HostBuilt:
    recorder = _Recorder(lookup)
    notes: list[str] = []
    acc = _Host(owner=members[0][1] if members else "")
    for ing, key, parsed in members:
        _accumulate(acc, ing, key, _resolved(parsed, ing, key, recorder, settings, notes), host, recorder, notes)
    upstreams: dict[str, Upstream] = {}
    recipes: dict[str, tuple[Service, ServicePort]] = {}

    def target(ns: str, backend: Backend) -> Target:
        return _resolve(recorder, ns, backend, upstreams, recipes, notes)

    locations = _locations(acc, target, settings, notes)
    redirect = acc.tls and settings.ssl_redirect
    if not any(loc.match == LOC_ROOT for loc in locations):
        if acc.default is not None:
            backend, ns, owner = acc.default
            locations.append(Location(LOC_ROOT, "/", "defaultBackend", owner, target(ns, backend),
                                      redirect_https=redirect))  # fmt: skip
        else:
            locations.append(Location(LOC_ROOT, "/", "", "", DEFAULT_BACKEND, redirect_https=redirect))
    locations += _redirect_guards(locations)
    locations.sort(key=_location_order)
    # A route per location, named by where it is (host and location), not by what it does: a
    # change of canary weight or endpoints then changes data, never the config. Locations that
    # answer with a status have one too: request metrics find their labels by route.
    locations = [replace(loc, route=digest("r", f"{host} {loc.match} {loc.path}")) for loc in locations]
    server = Server(host, acc.cert.digest if acc.cert is not None else None, redirect, tuple(locations), acc.owner,
                    acc.app_root, acc.snippet, acc.secret, _server_features(acc, host, notes))  # fmt: skip
    return HostBuilt(tuple(m[0] for m in members), settings, tuple(recorder.seen), server, tuple(notes), upstreams,
                      recipes, acc.cert, Extras.of(server.locations))  # fmt: skip


def _resolved(parsed: Parsed, ing: Ingress, key: str, lookup: Lookup, settings: NginxSettings,
              notes: list[str]) -> Parsed:  # fmt: skip
    """``parsed`` with its feature values resolved (Secrets, ConfigMaps, settings: looked up
    through the host's recorder, so a change of them builds the host again)."""
    ann = parsed[0]
    ctx = features.Context(ing.namespace, key, lookup, settings, notes)
    found = features.resolve(ann.features, ctx)
    if found == ann.features:
        return parsed
    return (replace(ann, features=found), *parsed[1:])


def _server_features(acc: _Host, host: str, notes: list[str]) -> tuple[Any, ...]:
    if acc.features and host == CATCH_ALL:
        # The catch-all's TLS context serves every handshake: client certificates there would
        # apply to hosts that never asked for them.
        notes.append(f"{', '.join(sorted(acc.features))} on a rule without host: ignored")
        return ()
    return tuple(acc.features[f.group] for f in features.FEATURES if f.group in acc.features)


def host_order(host: str) -> tuple[int, str]:
    """Catch-all first, then exact hosts, then wildcards (nginx's own precedence too)."""
    if host == CATCH_ALL:
        return (0, "")
    return (2 if host.startswith("*.") else 1, host)


def _slot(p: PathRule, regex: bool) -> tuple[str, str]:
    if p.match_type == EXACT:
        return (EXACT, p.path)
    if regex:
        return (LOC_REGEX, p.path)
    return (p.match_type, p.path.rstrip("/") or "/")


def digest(kind: str, text: str) -> str:
    """A name for nginx zones and variables made from user text: a digest, not the text
    ("ns_name", a cookie name with "-"), so it holds only [0-9a-f] after a letter."""
    return kind + hashlib.sha256(text.encode()).hexdigest()[:12]


def zone_name(ingress: str) -> str:
    """The name of an Ingress's rate and connection zones ("namespace/name")."""
    return digest("z", ingress)


def _location_order(loc: Location) -> tuple[int, int, int, tuple[int, ...], str]:
    """nginx tries regex locations in the order they appear and looks the others up by name
    (their place only keeps the file stable). Exact regexes first: they stand for "=". Then
    longest first; for a regex, the path as written, a tie going to the greater path (what
    ingress-nginx's two stable sorts give; hence the negated code points), then the regex."""
    if loc.match == LOC_REGEX:
        return (1, -len(loc.written), _LOC_ORDER[loc.match], tuple(-ord(c) for c in loc.written), loc.path)
    return (0 if loc.match == LOC_EXACT_REGEX else 1, -len(loc.path), _LOC_ORDER[loc.match], (), loc.path)


def _redirect_guards(locations: list[Location]) -> list[Location]:
    """``= /p`` for every name ``/p/`` nginx looks up as a prefix or exact location without
    one, serving what ``/p`` reaches anyway: the longest prefix location that matches it (the
    root at worst). Else nginx's automatic redirect answers ``/p`` with a 301 to ``/p/``.
    Only for hosts without regex locations, which could match ``/p`` first: regex mode has no
    such names (see _locations)."""
    named = {loc.path for loc in locations if loc.match == LOC_EXACT}
    guards: list[Location] = []
    for loc in locations:
        bare = loc.path[:-1]
        if loc.match not in (LOC_EXACT, LOC_PREFIX) or not loc.path.endswith("/") or not bare or bare in named:
            continue
        prefixes = [p for p in locations if p.match in (LOC_PREFIX, LOC_ROOT) and bare.startswith(p.path)]
        guards.append(replace(max(prefixes, key=lambda p: len(p.path)), match=LOC_EXACT, path=bare))
        named.add(bare)
    return guards


def _escaped(path: str) -> str:
    """A plain path as regex text. Paths hold only [A-Za-z0-9._~-/]; "." is the one regex
    metacharacter among them."""
    return path.replace(".", "[.]")


def _prefix_regex(path: str) -> str:
    """A plain Prefix path as a case-insensitive regex that still matches element-wise."""
    return "^" + _escaped(path) + ("" if path == "/" else "(/|$)")


def _locations(
    acc: _Host, resolve: Callable[[str, Backend], Target], settings: NginxSettings, notes: list[str]
) -> list[Location]:
    exact_paths = {norm for (mtype, norm) in acc.paths if mtype == EXACT}
    out: list[Location] = []
    for slot, claim in sorted(acc.paths.items()):
        mtype, norm = slot
        rule, ann, owner = claim.rule, claim.ann, claim.ingress
        assert rule.backend is not None
        tgt = resolve(claim.namespace, rule.backend)
        redirect = ann.force_ssl_redirect or (
            acc.tls and (settings.ssl_redirect if ann.ssl_redirect is None else ann.ssl_redirect)
        )

        base = Location(LOC_ROOT, "/", f"{rule.path_type} {rule.path}", owner, tgt, ann, redirect, "",
                        _canary(acc, slot, claim, tgt, resolve, notes), zone_name(owner),
                        _session_cookie(claim, notes))  # fmt: skip
        if mtype == EXACT and acc.regex and norm != "/" and norm.endswith("/"):
            # Not "= /p/": nginx's automatic redirect would answer /p before any regex is tried.
            out.append(replace(base, match=LOC_EXACT_REGEX, path="^" + _escaped(norm) + "\\z"))
        elif mtype == EXACT:
            out.append(replace(base, match=LOC_EXACT, path=norm))
        elif acc.regex:
            # Regex mode for the whole host: ingress-nginx makes every path of the host a
            # case-insensitive regex once one Ingress of it asks for use-regex or rewrite-target.
            regex = "^" + norm if ann.regex else _prefix_regex(norm.rstrip("/") or "/")
            out.append(replace(base, match=LOC_REGEX, path=regex, written=rule.path,
                               rewrite=regex if ann.rewrite_target is not None else ""))  # fmt: skip
        elif norm == "/":
            out.append(base)
        else:
            if norm not in exact_paths:
                out.append(replace(base, match=LOC_EXACT, path=norm))
            out.append(replace(base, match=LOC_PREFIX, path=norm + "/"))
    return out


def _canary(
    acc: _Host,
    slot: tuple[str, str],
    claim: _Claim,
    primary: Target,
    resolve: Callable[[str, Backend], Target],
    notes: list[str],
) -> Canary | None:
    found = acc.canaries.get(slot)
    if found is None and slot[0] != EXACT:  # a canary on the same path in the other mode
        plain = slot[1].rstrip("/") or "/"
        found = acc.canaries.get((PREFIX, plain)) or acc.canaries.get((LOC_REGEX, slot[1]))
    if found is None:
        return None
    assert found.rule.backend is not None
    alt = resolve(found.namespace, found.rule.backend)
    if primary.upstream is None or alt.upstream is None:
        notes.append(f"{found.ingress}: canary for {claim.rule.path} has no backend to split with; ignored")
        return None
    if primary.resolved or alt.resolved:
        # The balancer splits between peers it knows; a DNS name is resolved by nginx per request
        # on its own path, so such a pair cannot be split: said, not silently half-served.
        notes.append(f"{found.ingress}: canary for {claim.rule.path} with an ExternalName Service named by DNS "
                     "is not supported; ignored")  # fmt: skip
        return None
    ann = found.ann
    # As in ingress-nginx: the value and the pattern only refine canary-by-header, and a value
    # makes the pattern moot.
    value = ann.canary_by_header_value if ann.canary_by_header else None
    pattern = ann.canary_by_header_pattern if ann.canary_by_header and value is None else None
    return Canary(alt.upstream, ann.canary_weight, ann.canary_weight_total, ann.canary_by_header, value, pattern,
                  ann.canary_by_cookie, found.ingress)  # fmt: skip


def _session_cookie(claim: _Claim, notes: list[str]) -> SessionCookie | None:
    ann = claim.ann
    if ann.affinity != "cookie":
        return None
    path = ann.session_cookie_path
    if path is None:
        path = claim.rule.path
        if not validate.is_plain_path(path):
            notes.append(f"{claim.ingress}: regex path {path} needs session-cookie-path; the cookie's Path is /")
            path = "/"
    max_age = ann.session_cookie_max_age if ann.session_cookie_max_age is not None else ann.session_cookie_expires
    return SessionCookie(ann.session_cookie_name, path, max_age, ann.session_cookie_samesite,
                         ann.session_cookie_secure, ann.session_cookie_domain)  # fmt: skip


def _certificate(lookup: Lookup, namespace: str, name: str, host: str) -> tuple[CertPair | None, str]:
    secret = lookup.get("secrets", namespace, name)
    if not isinstance(secret, Secret):
        return None, f"secret {namespace}/{name} not found"
    if secret.type != TLS_SECRET_TYPE:
        return None, f"secret {namespace}/{name} is of type {secret.type}, not {TLS_SECRET_TYPE}"
    try:
        pair = pair_from_secret(secret)
    except CertError as exc:
        return None, f"secret {namespace}/{name}: {exc}"
    if pair.names and not pair.covers(host):
        return None, f"the certificate in {namespace}/{name} does not cover {host}"
    return pair, ""


def upstream_name(namespace: str, service: str, port: str) -> str:
    # Namespaces and Service names are DNS labels and port names IANA service names: none
    # holds "_", so this cannot collide the way "ns-svc-port" can.
    return f"{namespace}_{service}_{port}"


def _resolve(lookup: Lookup, ns: str, backend: Backend, upstreams: dict[str, Upstream],
             recipes: dict[str, tuple[Service, ServicePort]], notes: list[str]) -> Target:  # fmt: skip
    label = f"{ns}/{backend.service}:{backend.port_label}"
    svc = lookup.service(ns, backend.service)
    if svc is None:
        notes.append(f"service {ns}/{backend.service} not found: 503")
        return Target(None, 503, label)
    if svc.type == "ExternalName":
        try:
            external = validate.external_name(svc.external_name, f"service {ns}/{svc.name} spec.externalName")
        except InvalidValue as exc:
            notes.append(f"{exc}: 503")
            return Target(None, 503, label)
        port = backend.port_number
        if port is None:
            sp = find_service_port(svc, name=backend.port_name)
            # Range-checked: a manifest can hold any integer, and nginx -t would fail on it (a 503 instead).
            port = sp.port if sp is not None and 0 < sp.port < 65536 else None
        if port is None:
            notes.append(f"service {ns}/{svc.name} has no port {backend.port_label}: 503")
            return Target(None, 503, label)
        name = upstream_name(ns, backend.service, backend.port_label)
        upstreams[name] = Upstream(name, label, (), external, port)
        return Target(name, 0, label, resolved=not validate.is_ip(external))
    sp = find_service_port(svc, name=backend.port_name, number=backend.port_number)
    if sp is None:
        notes.append(f"service {ns}/{svc.name} has no port {backend.port_label}: 503")
        return Target(None, 503, label)
    # Named after the resolved Service port, so "port: {name: http}" and "port: {number: 80}"
    # for the same port share one upstream (and its keep-alive pool).
    canonical = sp.name or str(sp.port)
    name = upstream_name(ns, backend.service, canonical)
    if name in upstreams:  # an earlier location's: its port name was checked then
        return Target(name, 0, label)
    if sp.name:
        try:
            validate.port_name(sp.name, f"service {ns}/{svc.name} port name")
        except InvalidValue as exc:
            notes.append(f"{exc}: 503")
            return Target(None, 503, label)
    # Endpoints come later, for all hosts at once (build): they are data, not part of a host.
    upstreams[name] = Upstream(name, f"{ns}/{svc.name}:{canonical}", ())
    recipes[name] = (svc, sp)
    return Target(name, 0, label)
