"""Pooled hosts: many hosts in one server block, their paths matched by the live balancer.

Why: Debian's lua-nginx-module (0.10.23; fixed upstream in 0.10.26) creates an OpenSSL
context for every server and every location when nginx loads its configuration, whether or
not Lua runs there. A host of two Prefix paths is seven of them; at 10,000 hosts that was
1.5 GB of nginx master memory and seconds per reload. Most hosts at that scale differ only in
where each path goes, which is data: such a host joins a *pool*, one server block listing
its name, whose single ``location /`` names the route ``~``. The balancer then finds the
host's ``p:`` record (exact paths, prefix paths, default) and matches ``$uri`` the way
nginx would match the locations the host would otherwise get (templates/lua/portolan.lua).

A host is poolable when nothing of its own server block is more than that: an exact name
(no wildcard, no catch-all), no app-root or server-snippet, and each location an Exact,
Prefix or default one whose annotations are the defaults except what is live data anyway
(canary, ssl-redirect, which the pool's key holds) and which proxies round-robin to a
Service or answers 404 (built-in default backend) or 503. Anything else, including every
annotation added in future (checked against the defaults, not listed), keeps its own block.

Pools are keyed by what the server block must say: HTTPS redirect on every location or on
none (a host mixing them keeps its block), and HSTS. Below ``host-pool-threshold``
poolable hosts, each keeps its own block: a pooled request pays one path match in Lua.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ingress.annotations import NONE, Annotations
from ingress.model import DEFAULT_BACKEND, LOC_EXACT, LOC_PREFIX, LOC_ROOT, Location, Server
from ingress.settings import NginxSettings

POOLED_ROUTE = "~"  # $portolan_route of a pool's location: route by host and path

# Annotation fields whose effect a pool keeps: live data (canary, load-balance when it is
# round-robin), the pool's key (ssl-redirect), or nothing without the annotation that uses
# them (affinity's cookie settings: affinity itself is not neutral). Server-level ones are
# checked on the Server.
_NEUTRAL: dict[str, Any] = {
    "ssl_redirect": None,
    "force_ssl_redirect": False,
    "canary": False,
    "canary_weight": 0,
    "canary_weight_total": 100,
    "canary_by_header": None,
    "canary_by_header_value": None,
    "canary_by_header_pattern": None,
    "canary_by_cookie": None,
    "load_balance": None,
    "affinity_mode": NONE.affinity_mode,
    "session_cookie_name": NONE.session_cookie_name,
    "session_cookie_path": None,
    "session_cookie_expires": None,
    "session_cookie_max_age": None,
    "session_cookie_samesite": None,
    "session_cookie_secure": False,
    "session_cookie_domain": None,
    "app_root": None,
    "server_snippet": None,
}


@dataclass(frozen=True, slots=True, order=True)
class Pool:
    """What a pool's server block says beyond its names."""

    redirect: bool  # HTTP to HTTPS on every path
    hsts: bool  # Strict-Transport-Security on HTTPS answers

    @property
    def key(self) -> str:
        """The block's name among fragments (a host can hold no ":")."""
        return f"pool:{'redirect' if self.redirect else 'plain'}{'+hsts' if self.hsts else ''}"


def _neutral(ann: Annotations, seen: Seen) -> bool:
    found = seen.get(id(ann))
    if found is None or found[0] is not ann:
        found = seen[id(ann)] = (ann, replace(ann, **_NEUTRAL) == NONE)
    return found[1]


def _location_poolable(loc: Location, settings: NginxSettings, seen: Seen) -> bool:
    if loc.match not in (LOC_EXACT, LOC_PREFIX, LOC_ROOT) or loc.rewrite or loc.cookie is not None:
        return False
    target = loc.target
    if target.upstream is None:
        if target.status != 503 and target != DEFAULT_BACKEND:
            return False
    elif target.resolved or loc.hash_key or loc.balance(settings) != "round_robin":
        return False
    return _neutral(loc.ann, seen)


Seen = dict[int, tuple[Annotations, bool]]  # annotations checked, by identity


def pool_of(server: Server, settings: NginxSettings, seen: Seen | None = None) -> Pool | None:
    """The pool ``server`` can join, or None when it needs a block of its own."""
    if (server.is_catch_all or server.is_wildcard or server.app_root is not None or server.snippet is not None
            or server.features):  # fmt: skip
        return None
    memo = {} if seen is None else seen
    redirects = {loc.redirect_https for loc in server.locations}
    if len(redirects) != 1 or not all(_location_poolable(loc, settings, memo) for loc in server.locations):
        return None
    return Pool(redirects.pop(), server.ssl_redirect and settings.hsts)


def paths_record(server: Server) -> str:
    """The ``p:`` record of a poolable host: ``e<path>=<route>`` (exact), ``p<path>=<route>``
    (prefix, ending in "/"), ``d=<route>`` (the rest), space-separated; a route that answers
    with a status says so in its own record. Paths hold no space or "=" (ingress/validate.py)."""
    parts = []
    for loc in server.locations:
        kind = {LOC_EXACT: "e", LOC_PREFIX: "p"}.get(loc.match, "d")
        parts.append(f"{kind}{'' if kind == 'd' else loc.path}={loc.route}")
    return " ".join(parts)


class Pooler:
    """Which servers join which pool, decided once per Server object (the model reuses the
    Server of a host nothing touched), so a change costs its hosts."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[Server, NginxSettings, Pool | None]] = {}
        self._seen: Seen = {}

    def pool(self, server: Server, settings: NginxSettings) -> Pool | None:
        found = self._known.get(server.host)
        if found is None or found[0] is not server or found[1] is not settings:
            found = self._known[server.host] = (server, settings, pool_of(server, settings, self._seen))
        return found[2]

    def split(self, servers: tuple[Server, ...], settings: NginxSettings) -> tuple[list[Server], dict[Pool, list[str]]]:
        """The servers that keep their own block, and each pool's names (in model order)."""
        pools: dict[Pool, list[str]] = {}
        own: list[Server] = []
        for server in servers:
            pool = self.pool(server, settings)
            if pool is None:
                own.append(server)
            else:
                pools.setdefault(pool, []).append(server.host)
        if sum(map(len, pools.values())) < settings.host_pool_threshold:
            own, pools = list(servers), {}
        if len(self._known) > 2 * len(servers) + 64:  # hosts gone for good
            hosts = {s.host for s in servers}
            self._known = {h: v for h, v in self._known.items() if h in hosts}
        if len(self._seen) > 4 * len(servers) + 64:  # annotations of Ingresses since changed
            self._seen = {}
        return own, pools
