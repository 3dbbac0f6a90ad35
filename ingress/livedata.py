"""Model -> the records of the live data plane (see templates/lua/portolan.lua).

These are the parts of the model that change without touching nginx.conf: each upstream's
ready endpoints, each route's primary and canary upstreams, canary weights and balancing,
and which certificate each TLS host gets. nginx.conf names routes only (``set
$portolan_route``), so an endpoint, weight or certificate change renders the same text and
needs no reload; ingress/channel.py pushes these records instead.

Every value is built from validated model data (IPs checked by ingress/endpoints.py, names
from the model, header names and patterns from annotations.py); the channel percent-encodes
each one, so no value can run into the next.
"""

from __future__ import annotations

from urllib.parse import urlencode

from ingress.model import Location, Model, Server, Upstream
from ingress.pooling import Pooler, paths_record
from ingress.render import host_port
from ingress.settings import NginxSettings

DEFAULT_HOST = "h:"  # the certificate for SNI names no host matches (and for no SNI at all)


def peers(upstream: Upstream) -> str:
    """``ip:port ip:port`` ([ip]:port for IPv6), the balancer's peers."""
    if upstream.external is not None:
        return host_port(upstream.external, upstream.external_port)
    return " ".join(host_port(ip, port) for ip, port in upstream.endpoints)


def route(location: Location, settings: NginxSettings) -> str:
    """What the balancer needs for one location: u (primary upstream), lb, and the canary's
    cu, cw, ct and optional ch, chv, chp, cc; or st, the status a location without an upstream
    answers (the balancer of a pooled host fails it; 404 is the default backend's)."""
    if location.target.upstream is None:
        return urlencode({"st": location.target.status})
    fields: dict[str, str | int] = {"u": location.target.upstream, "lb": location.balance(settings),
                                    "un": log_name(location.target.service)}  # fmt: skip
    canary = location.canary
    if canary is not None:
        fields.update(cu=canary.upstream, cw=canary.weight, ct=canary.weight_total,
                      cn=canary.upstream.replace("_", "-"))  # fmt: skip
        if canary.header:
            fields["ch"] = canary.header
            if canary.header_value:
                fields["chv"] = canary.header_value
            elif canary.header_pattern:
                fields["chp"] = canary.header_pattern
        if canary.cookie:
            fields["cc"] = canary.cookie
    return urlencode(fields)


def log_name(service: str) -> str:
    """ingress-nginx's upstream name for the access log ("ns-service-port") of a Service label
    "ns/service:port"."""
    return service.replace("/", "-").replace(":", "-")


def server_records(server: Server, settings: NginxSettings, pooler: Pooler) -> dict[str, str]:
    """One server's routes, its paths when it can be pooled (whether or not it is, so the
    data is in before a configuration pools it), and its certificate's digest."""
    out = {f"r:{loc.route}": route(loc, settings) for loc in server.locations if loc.route}
    if pooler.pool(server, settings) is not None:
        out[f"p:{server.host}"] = paths_record(server)
    if server.cert is not None and not server.is_catch_all:
        out[f"h:{server.host}"] = server.cert
    return out


def zones(settings: NginxSettings) -> str:
    """The sizes in bytes of the two dicts (``data,certs``), as the Lua compares them with its
    own: a worker whose dicts differ serves a configuration older than a reload that resized one."""
    return ",".join(str(_size(text)) for text in (settings.lua_data_dict, settings.lua_certs_dict))


def _size(text: str) -> int:
    """A dict size as settings.py normalises it: a whole number of k or m."""
    return int(text[:-1]) << (20 if text.endswith("m") else 10)


class Records:
    """Every record nginx must hold for a model, each server's made once per Server object (the
    model reuses the Server of a host nothing touched): an endpoint change costs its upstream.
    ``pooler``: the renderer's, so whether a host can be pooled is decided once for both."""

    def __init__(self, pooler: Pooler | None = None) -> None:
        self.pooler = pooler if pooler is not None else Pooler()
        self._servers: dict[str, tuple[Server, NginxSettings, dict[str, str]]] = {}

    def __call__(self, model: Model) -> dict[str, str]:
        out: dict[str, str] = {}
        for upstream in model.upstreams:
            if not upstream.is_dns:  # a DNS ExternalName is resolved by nginx itself, per request
                out[f"u:{upstream.name}"] = peers(upstream)
        cache = self._servers
        for server in model.servers:
            found = cache.get(server.host)
            if found is None or found[0] is not server or found[1] is not model.settings:
                made = server_records(server, model.settings, self.pooler)
                found = cache[server.host] = (server, model.settings, made)
            out.update(found[2])
        if len(cache) > len(model.servers):
            hosts = {s.host for s in model.servers}
            self._servers = {h: v for h, v in cache.items() if h in hosts}
        out.update(model.extra_records)  # Gateway API match tables and routes (ingress/gateway)
        for pair in model.certificates:
            out[f"c:{pair.digest}"] = pair.pem.decode()
        out[DEFAULT_HOST] = model.default_cert
        return out


def records(model: Model) -> dict[str, str]:
    """Every record nginx must hold for ``model`` (made afresh; the applier keeps a Records)."""
    return Records()(model)
