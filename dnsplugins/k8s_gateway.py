"""k8s_gateway: answer the external names of a cluster's Ingresses, Gateway API routes and LoadBalancer Services.

The syntax and semantics of the external CoreDNS plugin of that name (github.com/ori-edge/k8s_gateway),
so that a cluster's DNS gives its HTTP names the addresses its ingress controller publishes, with no
external-dns in between.

## Syntax

```
k8s_gateway [ZONES...] {
    resources RESOURCE...
    ttl TTL
    apex APEX
    secondary SECONDARY
    kubeconfig KUBECONFIG [CONTEXT]
    manifests PATH
    fallthrough [ZONES...]
}
```

* **ZONES**: the zones answered, default the block's.
* `resources`: which kinds are looked up, and in which order (the first kind with an address for the
  name answers): `Ingress`, `Service`, `HTTPRoute`, `GRPCRoute`. Default all, in the external
  plugin's order: HTTPRoute, GRPCRoute, Ingress, Service. `TLSRoute` and `VirtualServer`, which the
  external plugin knows, are accepted and not served (logged once).
* `ttl`: the TTL of A and AAAA records, 0 to 3600, default 60 (the SOA and NS records keep 60).
* `apex`: the name of this server under each zone, default `dns1.kube-system`: the SOA's MNAME and the
  NS record are `APEX.ZONE`; `APEX.ZONE` answers the addresses found for the name `APEX` (a
  LoadBalancer Service named `dns1` in `kube-system`, say).
* `secondary`: a peer server's apex, published as a second NS record with its addresses as glue.
* Where the objects come from, as in the kubernetes plugin: `kubeconfig` (path and context),
  `manifests` (a file or directory of manifests, re-read when it changes), else the pod's service
  account. A kubernetes plugin reading the same cluster shares the store and the watches: one watch
  per kind in the process (Services are watched twice only if the kubernetes plugin selects them
  with `namespaces` or `labels`: one watch cannot serve two selections). A cluster without the
  Gateway API's CRDs, or that does not let us list them, is reported once and its routes are not
  served; the other kinds are. (RBAC: list and watch on the kinds of `resources`, see
  deploy/dns/rbac.yaml.)
* `fallthrough [ZONES]`: a name with no address goes to the next plugin (any query type).

A name is looked up as the whole name and as the part below the zone:

* an Ingress by its `spec.rules[].host`; its addresses are `status.loadBalancer.ingress[].ip`
  (what `portolan ingress --publish-status-address` writes);
* an HTTPRoute or GRPCRoute by its `spec.hostnames`; its addresses are the `status.addresses` of type
  IPAddress of the Gateways in its `parentRefs` (namespace: the route's unless given);
* a Service of type LoadBalancer by its `coredns.io/hostname` annotation, else its
  `external-dns.alpha.kubernetes.io/hostname` annotation (either a single valid DNS name), else
  `NAME.NAMESPACE` below the zone; its addresses are `spec.externalIPs` if any, else
  `status.loadBalancer.ingress[].ip`.

Host names in statuses (a cloud load balancer's) are not resolved: the external plugin asks the
system resolver at query time, which would make an answer depend on another server's; such entries
are left out. Wildcard hosts match only themselves, as in the external plugin.

Answers (authoritative): A or AAAA with the addresses found; a name without an address of that family
is NXDOMAIN with the SOA (NOERROR if it has addresses of the other family, and at the apex); SOA for
any name; NS at the apex (with glue), NODATA elsewhere; NODATA for other types. Until the watched
kinds have synced, every query is SERVFAIL.

Hot path: answers depend only on the question and the watched objects, so they are remembered as
wire bytes per question until one of the kinds read changes, and sent from the hot path. Answers
passed on by `fallthrough` are never remembered.

## Examples

```corefile
example.com {
    k8s_gateway {
        manifests cluster.yaml
        resources Ingress Service
        ttl 30
        apex exdns-1-k8s-gateway.kube-system
        secondary exdns-2-k8s-gateway.kube-system
    }
}
```

```corefile
cluster.local example.com {
    kubernetes cluster.local {
        manifests cluster.yaml
    }
    k8s_gateway example.com {
        manifests cluster.yaml
        fallthrough
    }
    whoami
}
```
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, NS, RR, SOA, A, DNSRecord

from corefile import Dispenser
from dnsplugins.kubernetes.config import ttl_arg
from dnsplugins.kubernetes.shared import ClusterRef
from dnsserver.logs import plugin_log
from dnsserver.memo import AnswerMemo
from dnsserver.plugin import (
    Fallthrough,
    Next,
    Plugin,
    Property,
    SetupContext,
    match_zone,
    parse_properties,
    plugin_zones,
)
from dnsserver.request import Request
from dnsserver.wire.consts import NOERROR, NXDOMAIN, SERVFAIL, TYPE_A, TYPE_AAAA, TYPE_NS, TYPE_SOA
from dnsserver.wire.query import FastQuery
from kubewatch import (
    GATEWAYS,
    GRPC_ROUTES,
    HTTP_ROUTES,
    INGRESSES,
    SERVICES,
    ClusterConfig,
    GenericObject,
    Ingress,
    Service,
    Store,
    WatchSpec,
)
from kubewatch.services import is_ip
from kubewatch.shared import Membership

log = plugin_log("k8s_gateway")

DEFAULT_TTL = 60
SOA_TTL = 60  # the external plugin's ttlSOA: SOA, NS and glue records, whatever `ttl` says
DEFAULT_APEX = "dns1.kube-system"
HOSTMASTER = "hostmaster"
SOA_SERIAL = 12345  # the external plugin's constant serial
MEMO_LIMIT = 100_000

# Resource name -> the kinds its look-up reads. The order of this table is the default order.
RESOURCES: dict[str, tuple[str, ...]] = {
    "HTTPRoute": (HTTP_ROUTES.name, GATEWAYS.name),
    "GRPCRoute": (GRPC_ROUTES.name, GATEWAYS.name),
    "Ingress": (INGRESSES.name,),
    "Service": (SERVICES.name,),
}
NOT_SERVED = ("TLSRoute", "VirtualServer")  # the external plugin's, accepted for its Corefiles


@dataclass
class GatewayConfig:
    """The `k8s_gateway` directive parsed."""

    zones: list[str]
    resources: list[str] = field(default_factory=lambda: list(RESOURCES))
    ttl: int = DEFAULT_TTL
    apex: str = DEFAULT_APEX
    secondary: str = ""
    kubeconfig: str | None = None
    context: str | None = None
    manifests: str | None = None
    fallthrough: Fallthrough = field(default_factory=Fallthrough)

    @property
    def cluster(self) -> ClusterRef:
        return ClusterRef(self.manifests, self.kubeconfig, self.context)

    def watch_specs(self) -> list[WatchSpec]:
        kinds = dict.fromkeys(k for r in self.resources for k in RESOURCES[r])
        return [WatchSpec(k) for k in kinds]


def _one_arg(d: Dispenser, args: list[str]) -> str:
    if not args:
        raise d.arg_err()
    return args[0]


def _resources(d: Dispenser, ctx: SetupContext, cfg: GatewayConfig, prop: str, args: list[str]) -> None:
    if not args:
        raise d.err("Incorrectly formated 'resource' parameter")  # the external plugin's words
    wanted: list[str] = []
    for a in args:
        if a in NOT_SERVED:
            log.warning("resource %s is not served here", a)
        elif a not in RESOURCES:
            raise d.err(f"unknown resource {a!r}; known: {', '.join(RESOURCES)}")
        elif a not in wanted:
            wanted.append(a)
    cfg.resources = wanted


def _ttl(d: Dispenser, ctx: SetupContext, cfg: GatewayConfig, prop: str, args: list[str]) -> None:
    # kubernetes' check, on the first argument only (further ones are ignored here).
    cfg.ttl = ttl_arg(d, [_one_arg(d, args)])


def _name(d: Dispenser, ctx: SetupContext, cfg: GatewayConfig, prop: str, args: list[str]) -> None:
    """`apex`, `secondary`: a relative name, kept lower-case without a trailing dot."""
    setattr(cfg, prop, _one_arg(d, args).lower().rstrip("."))


def _kubeconfig(d: Dispenser, ctx: SetupContext, cfg: GatewayConfig, prop: str, args: list[str]) -> None:
    if len(args) not in (1, 2):
        raise d.arg_err()
    cfg.kubeconfig = ctx.path(args[0])
    cfg.context = args[1] if len(args) == 2 else None


def _manifests(d: Dispenser, ctx: SetupContext, cfg: GatewayConfig, prop: str, args: list[str]) -> None:
    if len(args) != 1:
        raise d.arg_err()
    cfg.manifests = ctx.path(args[0])


def _fallthrough(d: Dispenser, ctx: SetupContext, cfg: GatewayConfig, prop: str, args: list[str]) -> None:
    cfg.fallthrough.set(args, ctx)


PROPERTIES: dict[str, Property[GatewayConfig]] = {
    "resources": _resources,
    "ttl": _ttl,
    "apex": _name,
    "secondary": _name,
    "kubeconfig": _kubeconfig,
    "manifests": _manifests,
    "fallthrough": _fallthrough,
}


def parse(d: Dispenser, ctx: SetupContext) -> GatewayConfig:
    d.next()
    cfg = GatewayConfig(zones=plugin_zones(d.remaining_args(), ctx))
    parse_properties(d, ctx, cfg, PROPERTIES)
    if cfg.manifests is not None and cfg.kubeconfig is not None:
        raise d.err("manifests and kubeconfig cannot both be set")
    return cfg


# -- what the objects say -----------------------------------------------------------------------------

Addresses = list[str]
Index = dict[str, Addresses]  # host name (lower case, no trailing dot) -> addresses, in object order


def _ips(entries: Any) -> Addresses:
    """The `ip` of each status.loadBalancer.ingress entry that has a valid one."""
    out: Addresses = []
    if isinstance(entries, list):
        for e in entries:
            ip = e.get("ip") if isinstance(e, dict) else None
            if isinstance(ip, str) and is_ip(ip):
                out.append(ip)
    return out


def _add(index: Index, host: Any, addrs: Addresses) -> None:
    if isinstance(host, str) and host and addrs:
        index.setdefault(host.lower().rstrip("."), []).extend(addrs)


def ingress_index(store: Store) -> Index:
    index: Index = {}
    for ing in store.iter(INGRESSES):
        assert isinstance(ing, Ingress)
        lb = ing.status.get("loadBalancer")
        addrs = _ips(lb.get("ingress")) if isinstance(lb, dict) else []
        rules = ing.spec.get("rules")
        for rule in rules if isinstance(rules, list) else ():
            if isinstance(rule, dict):
                _add(index, rule.get("host"), addrs)
    return index


def service_index(store: Store) -> Index:
    index: Index = {}
    for svc in store.iter(SERVICES):
        assert isinstance(svc, Service)
        if svc.type != "LoadBalancer":
            continue
        # externalIPs, when set, replace the status entirely (as the external plugin reads them).
        addrs = [ip for ip in svc.external_ips if is_ip(ip)] or [a for a in svc.load_balancer if is_ip(a)]
        _add(index, svc.hostname_annotation or f"{svc.name}.{svc.namespace}", addrs)
    return index


def gateway_addresses(gw: GenericObject) -> Addresses:
    """A Gateway's status.addresses of type IPAddress (the type when none is given)."""
    out: Addresses = []
    addresses = gw.status.get("addresses")
    for a in addresses if isinstance(addresses, list) else ():
        if isinstance(a, dict) and a.get("type", "IPAddress") == "IPAddress":
            value = a.get("value")
            if isinstance(value, str) and is_ip(value):
                out.append(value)
    return out


def route_index(store: Store, kind: str) -> Index:
    index: Index = {}
    for route in store.iter(kind):
        assert isinstance(route, GenericObject)
        addrs: Addresses = []
        refs = route.spec.get("parentRefs")
        for ref in refs if isinstance(refs, list) else ():
            if not isinstance(ref, dict) or ref.get("kind", "Gateway") != "Gateway":
                continue
            ns, name = ref.get("namespace") or route.namespace, ref.get("name")
            gw = store.get(GATEWAYS, ns, name) if isinstance(ns, str) and isinstance(name, str) else None
            if isinstance(gw, GenericObject):
                addrs += gateway_addresses(gw)
        hostnames = route.spec.get("hostnames")
        for host in hostnames if isinstance(hostnames, list) else ():
            _add(index, host, addrs)
    return index


INDEXERS: dict[str, Callable[[Store], Index]] = {
    "HTTPRoute": lambda s: route_index(s, HTTP_ROUTES.name),
    "GRPCRoute": lambda s: route_index(s, GRPC_ROUTES.name),
    "Ingress": ingress_index,
    "Service": service_index,
}


class Hostnames:
    """The host-name indexes of the configured resources, rebuilt when a kind they read changes."""

    def __init__(self, store: Store, resources: list[str]) -> None:
        self.store = store
        self.resources = resources
        self.kinds = sorted({k for r in resources for k in RESOURCES[r]})
        self.built_at = -1
        self.indexes: list[Index] = []

    @property
    def version(self) -> int:
        """Grows with every change of a kind read (a sum of per-kind counters that only grow)."""
        gens = self.store.generations
        return sum(gens[k] for k in self.kinds)

    def lookup(self, keys: list[str]) -> Addresses:
        """The addresses of the first resource, in the configured order, that has any for one of `keys`."""
        version = self.version
        if version != self.built_at:
            self.indexes = [INDEXERS[r](self.store) for r in self.resources]
            self.built_at = version
        for index in self.indexes:
            found = [a for k in keys for a in index.get(k, ())]
            if found:
                return list(dict.fromkeys(found))
        return []


def _family(ip: str) -> int:
    return ipaddress.ip_address(ip).version


class K8sGateway(Plugin):
    """`k8s_gateway`: A/AAAA for the external names of Ingresses, routes and LoadBalancer Services."""

    name = "k8s_gateway"

    def __init__(self, cfg: GatewayConfig, cluster: ClusterConfig | None = None) -> None:
        self.cfg = cfg
        self.cluster = cluster
        # Its own store until started (tests fill it directly); start() swaps in the shared one.
        self.store = Store()
        self.hostnames = Hostnames(self.store, cfg.resources)
        self.membership: Membership | None = None
        self.memo = AnswerMemo(MEMO_LIMIT)

    async def start(self) -> None:
        self.membership = self.cfg.cluster.join(self.cfg.watch_specs(), self.cluster)
        self.store = self.hostnames.store = self.membership.store
        self.hostnames.built_at = -1
        self.memo = AnswerMemo(MEMO_LIMIT)
        await self.membership.start()
        if not await self.membership.wait_synced(timeout=5.0):
            log.warning("starting server with unsynced Kubernetes API")

    async def stop(self) -> None:
        if self.membership is not None:
            await self.membership.stop()

    @property
    def synced(self) -> bool:
        if self.membership is not None:
            return self.membership.synced
        return all(self.store.is_synced(k) for k in self.hostnames.kinds)

    def is_ready(self) -> bool:
        return self.synced

    def fast_answer(self, data: bytes, q: FastQuery, key: bytes, client: tuple[str, int], proto: str,
                    shuffle: bool, max_size: int) -> bytes | None:
        """The hot path: a remembered answer, while no kind it was made from has changed."""
        return self.memo.fast_answer(data, q, key, self.hostnames.version, shuffle, max_size)

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        zone = match_zone(self.cfg.zones, req.name)
        if zone is None or req.qclass != 1:
            return await next(req)
        if not self.synced:
            return req.reply(SERVFAIL)
        version = self.hostnames.version
        known = self.memo.reply(req.wire, version)
        if known is not None:
            return known
        reply = self.answer(req, zone)
        if reply is None:
            return await next(req)
        self.memo.remember(req.wire, version, reply)
        return reply

    # -- answers -----------------------------------------------------------------------------------

    def soa(self, zone: str) -> RR:
        mname = f"{self.cfg.apex}.{zone}"
        return RR(zone, TYPE_SOA, 1, SOA_TTL,
                  SOA(mname, f"{HOSTMASTER}.{mname}", (SOA_SERIAL, 7200, 1800, 86400, SOA_TTL)))

    def addresses_of(self, name: str) -> Addresses:
        return self.hostnames.lookup([name]) if name else []

    def answer(self, req: Request, zone: str) -> DNSRecord | None:  # noqa: C901  (the external plugin's cases)
        """The reply for `req` in `zone`, or None to pass it on (fallthrough)."""
        qname, name, qtype = req.qname, req.name, req.qtype
        zone_asked = qname[len(qname) - len(zone):] if zone != "." else "."
        apex_name = f"{self.cfg.apex}.{zone}"
        reply = req.reply(NOERROR, aa=True)
        if name == apex_name or name.endswith("." + apex_name):
            # The server's own name: only APEX.ZONE itself exists below it.
            addrs = self.addresses_of(self.cfg.apex) if name == apex_name else None
            if addrs is None:
                reply.header.rcode = NXDOMAIN
            else:
                for rr in self.address_rrs(qname, addrs, qtype, SOA_TTL):
                    reply.add_answer(rr)
            if not reply.rr:
                reply.add_auth(self.soa(zone_asked))
            return reply
        at_apex = name == zone
        full = name.rstrip(".") if name != "." else "."
        below = name[: len(name) - len(zone)].rstrip(".") if zone != "." else full
        keys = [full] + ([below] if below and below != full else [])
        addrs = self.hostnames.lookup(keys)
        if not addrs and self.cfg.fallthrough.covers(name):
            return None
        if qtype in (TYPE_A, TYPE_AAAA):
            rrs = self.address_rrs(qname, addrs, qtype, self.cfg.ttl)
            for rr in rrs:
                reply.add_answer(rr)
            if not rrs:
                # NXDOMAIN unless the apex, or a name with addresses of the other family (RFC 4074 3).
                if not at_apex and not addrs:
                    reply.header.rcode = NXDOMAIN
                reply.add_auth(self.soa(zone_asked))
        elif qtype == TYPE_SOA:
            reply.add_answer(self.soa(zone_asked))
        elif qtype == TYPE_NS and at_apex:
            servers = [self.cfg.apex] + ([self.cfg.secondary] if self.cfg.secondary else [])
            for server in servers:
                target = f"{server}.{zone_asked}"
                reply.add_answer(RR(zone_asked, TYPE_NS, 1, SOA_TTL, NS(target)))
                for rr in self.address_rrs(target, self.addresses_of(server), TYPE_A, SOA_TTL):
                    reply.add_ar(rr)
        else:
            reply.add_auth(self.soa(zone_asked))
        return reply

    @staticmethod
    def address_rrs(name: str, addrs: Addresses, qtype: int, ttl: int) -> list[RR]:
        if qtype == TYPE_AAAA:
            return [RR(name, TYPE_AAAA, 1, ttl, AAAA(ip)) for ip in addrs if _family(ip) == 6]
        if qtype == TYPE_A:
            return [RR(name, TYPE_A, 1, ttl, A(ip)) for ip in addrs if _family(ip) == 4]
        return []


def setup(d: Dispenser, ctx: SetupContext) -> K8sGateway:
    cfg = parse(d, ctx)
    return K8sGateway(cfg, cfg.cluster.config_at(d))
