"""k8s_external: answer for Services' external addresses in a zone of its own, from outside the cluster.

## Syntax

```
k8s_external [ZONES...] {
    apex APEX
    headless
    ttl TTL
    fallthrough [ZONES...]
}
```

* **ZONES** are the zones answered; default the server block's zones.
* `apex` is the label under which the zone's own records live (default `dns`): the NS is
  `ns1.APEX.ZONE`, the SOA's mailbox `hostmaster.APEX.ZONE`.
* `headless`: a headless Service without external IPs answers with its ready endpoints' addresses.
* `ttl` of every record (default 5, 0 to 3600).
* `fallthrough [ZONES]`: a name error in those zones goes to the next plugin.

The names are `SERVICE.NAMESPACE.ZONE`, `_PORT._PROTO.SERVICE.NAMESPACE.ZONE` (SRV) and, with
`headless`, `ENDPOINT.SERVICE.NAMESPACE.ZONE`. A Service's external addresses are its
`spec.externalIPs` then its `status.loadBalancer.ingress` (each an IP, or a hostname, answered as a
CNAME whose target is then looked up through this very server, as CoreDNS's upstream does), once per
port of the Service (a Service without ports has none, as in CoreDNS). A and AAAA give the addresses
of the asked family, SRV one record per address and port with the address as glue, targets
`SERVICE.NAMESPACE.ZONE` (`ENDPOINT.SERVICE.NAMESPACE.ZONE` for endpoints); other types are NODATA.
At the apex: SOA (serial: the last change of the watched objects), NS `ns1.APEX.ZONE` with the
addresses the kubernetes plugin publishes for `ns.dns` as glue; `ns1.APEX.ZONE` has those A/AAAA.
Every answer without records carries the SOA; an unknown namespace, Service or port is NXDOMAIN.

It needs the kubernetes plugin in the same block and reads its watch cache: no watch of its own.
Answers that need no lookup are kept per question until the watched objects change and sent from
wire bytes on the hot path; k8s_external hands queries outside its zones on to the store after it
(cache, kubernetes), so a block that loads it keeps its hot path.

## Examples

```corefile
. {
    k8s_external example.org
    kubernetes cluster.local {
        manifests cluster.yaml
    }
}
```

```corefile
. {
    k8s_external example.org {
        apex ns
        headless
        ttl 30
        fallthrough
    }
    kubernetes cluster.local {
        manifests cluster.yaml
    }
    forward . 127.0.0.1:5301
}
```
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from dnslib import AAAA, CNAME, NS, PTR, RR, SOA, SRV, A, DNSRecord

from corefile import CorefileError, Dispenser
from dnsplugins.autopath import key_name, store_after
from dnsplugins.forward.upstream import ask_self
from dnsplugins.kubernetes.answers import ip_from_reverse
from dnsplugins.kubernetes.config import ttl_arg
from dnsplugins.kubernetes.kubernetes import Kubernetes
from dnsserver.memo import AnswerMemo
from dnsserver.plugin import BlockView, Fallthrough, FastStore, Next, Plugin, SetupContext, match_zone, plugin_zones
from dnsserver.request import Request
from dnsserver.wire.consts import (
    NOERROR,
    NXDOMAIN,
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    TYPE_NS,
    TYPE_PTR,
    TYPE_SOA,
    TYPE_SRV,
)
from dnsserver.wire.query import FastQuery
from kubewatch import SERVICES, Service
from kubewatch.services import ip_family, ready_addresses

MEMO_LIMIT = 100_000


@dataclass
class Target:
    """One external address of a Service for one port: an IP or a hostname (`host`), and the SRV target."""

    host: str
    port: int
    key: str  # the owner name of the address in SRV answers, below the zone


@dataclass
class Reply:
    """What one question gets: rcode, records, whether the SOA goes in, and hostnames still to look up."""

    rcode: int = NOERROR
    answer: list[RR] = field(default_factory=list)
    extra: list[RR] = field(default_factory=list)
    soa: bool = False
    lookups: list[tuple[str, int, str]] = field(default_factory=list)  # (hostname, qtype, section) to ask


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class K8sExternal(Plugin):
    """`k8s_external`: Services' external IPs (and load balancer addresses) in an outside zone."""

    name = "k8s_external"

    def __init__(self, ctx: SetupContext, zones: list[str]) -> None:
        self.ctx = ctx
        self.zones = zones
        self.apex = "dns"
        self.headless = False
        self.ttl = 5
        self.fallthrough = Fallthrough()
        self.kube: Kubernetes | None = None
        self.memo = AnswerMemo(MEMO_LIMIT)
        self.next_store: FastStore | None = None
        self.next_shuffle = False
        self.where: Callable[[str], CorefileError] = partial(CorefileError, "", 0)  # setup: at the directive

    def check_block(self, block: BlockView) -> None:
        """Once the block is built: the kubernetes plugin whose cache is read, and the store after this one."""
        plugins = list(block.plugins)
        self.kube = next((p for p in plugins if isinstance(p, Kubernetes)), None)
        if self.kube is None:
            raise self.where("kubernetes plugin not loaded")
        self.next_store, self.next_shuffle = store_after(plugins, self)

    # -- the hot path ---------------------------------------------------------------------------------

    def fast_answer(self, data: bytes, q: FastQuery, key: bytes, client: tuple[str, int], proto: str,
                    shuffle: bool, max_size: int) -> bytes | None:
        """A kept answer of ours for this version of the watch cache; for a name outside our zones, the
        next store's; otherwise None (the chain)."""
        kube = self.kube
        if kube is None:
            return None
        out = self.memo.fast_answer(data, q, key, kube.store.version, shuffle, max_size)
        if out is not None:
            return out
        name = key_name(key)
        store = self.next_store
        if name is None or store is None or match_zone(self.zones, name) is not None:
            return None
        return store.fast_answer(data, q, key, client, proto, shuffle or self.next_shuffle, max_size)

    # -- the chain ------------------------------------------------------------------------------------

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        zone = match_zone(self.zones, req.name)
        kube = self.kube
        if zone is None or kube is None or req.qclass != 1:
            return await next(req)
        version = kube.store.version
        known = self.memo.reply(req.wire, version)
        if known is not None:
            return known
        r = self.answer(req, zone)
        if r.rcode == NXDOMAIN and self.fallthrough.covers(req.name):
            return await next(req)
        reply = req.reply(r.rcode, aa=True)
        for rec in r.answer:
            reply.add_answer(rec)
        for rec in r.extra:
            reply.add_ar(rec)
        for host, qtype, section in r.lookups:
            # A hostname of a load balancer: looked up through this very server, as CoreDNS's upstream.
            found = await ask_self(self.ctx.instance, host.lower(), qtype)
            if found is not None:
                for rec in found.rr:
                    (reply.add_answer if section == "answer" else reply.add_ar)(rec)
                if section == "answer" and found.header.tc:
                    reply.header.tc = 1
        if r.soa or not reply.rr:
            reply.add_auth(self.soa(zone))
        if not r.lookups and kube.store.synced:
            self.memo.remember(req.wire, version, reply)
        return reply

    def rr(self, name: str, rtype: int, rdata: object) -> RR:
        return RR(name, rtype, 1, self.ttl, rdata)

    def soa(self, zone: str) -> RR:
        serial = int(self.kube.store.last_change) & 0xFFFFFFFF if self.kube is not None else 0
        return self.rr(zone, TYPE_SOA, SOA(f"ns1.{self.apex}.{zone}", f"hostmaster.{self.apex}.{zone}",
                                            (serial, 7200, 1800, 86400, self.ttl)))

    def ns_addresses(self, owner: str, qtype: int | None) -> list[RR]:
        """The name server's addresses (those the kubernetes plugin publishes), as records of `owner`;
        only those of `qtype`'s family when given."""
        ips = self.kube.answerer.ns_ips if self.kube is not None else []
        out: list[RR] = []
        for ip in ips:
            t = TYPE_AAAA if ip_family(ip) == 6 else TYPE_A
            if qtype is None or qtype == t:
                out.append(self.rr(owner, t, AAAA(ip) if t == TYPE_AAAA else A(ip)))
        return out

    def answer(self, req: Request, zone: str) -> Reply:
        name, qtype = req.name, req.qtype
        if name == zone:
            if qtype == TYPE_SOA:
                return Reply(answer=[self.soa(zone)])
            if qtype == TYPE_NS:
                ns = f"ns1.{self.apex}.{req.qname[len(req.qname) - len(zone):] if zone != '.' else '.'}"
                return Reply(answer=[self.rr(zone, TYPE_NS, NS(f"ns1.{self.apex}.{zone}"))],
                             extra=self.ns_addresses(ns, None))
            return Reply(soa=True)
        apex = f"{self.apex}.{zone}"
        if name == apex or name.endswith("." + apex):
            base = name[: len(name) - len(zone)].rstrip(".").split(".")
            if len(base) == 1:
                return Reply(soa=True)
            if len(base) == 2 and base[0] == "ns1":
                return Reply(answer=self.ns_addresses(req.qname, qtype if qtype in (TYPE_A, TYPE_AAAA) else -1))
            return Reply(rcode=NXDOMAIN, soa=True)
        if qtype == TYPE_PTR:
            ip = ip_from_reverse(name)
            if ip is not None:
                return self.reverse(req.qname, ip)
        found, rcode = self.targets(name, zone)
        if not found:
            return Reply(rcode=rcode, soa=True)
        if qtype in (TYPE_A, TYPE_AAAA):
            return self.addresses(req.qname, found, qtype)
        if qtype == TYPE_SRV:
            return self.srv(req.qname, found, zone)
        return Reply(soa=True)

    @staticmethod
    def split(name: str, zone: str) -> tuple[list[str], str | None, str | None, str | None] | None:
        """The labels of `name` below `zone` as (namespace, service) from the right, and the endpoint or
        the port and protocol labels before them; None for a name with more labels than that."""
        segs = [s for s in (name[: len(name) - len(zone)] if zone != "." else name).split(".") if s]
        head, tail = segs[:-2], segs[-2:]
        if len(head) == 1:
            return tail, head[0].lstrip("_"), None, None
        if len(head) == 2:
            return tail, None, head[0].lstrip("_"), head[1].lstrip("_")
        return (tail, None, None, None) if not head else None

    def targets(self, name: str, zone: str) -> tuple[list[Target], int]:
        """The addresses behind `name` and the rcode when there are none, as CoreDNS's External gives them."""
        assert self.kube is not None
        store, answerer = self.kube.store, self.kube.answerer
        parts = self.split(name, zone)
        if parts is not None and not parts[0]:
            return [], NOERROR  # the zone itself: handled as the apex before
        if parts is None or not answerer.exposed(parts[0][-1]):
            return [], NXDOMAIN
        tail, endpoint, port, proto = parts
        if len(tail) == 1:
            return [], NOERROR  # a namespace: exists, holds no records
        svc = store.service(tail[1], tail[0])
        if svc is None:
            return [], NXDOMAIN

        def wanted(p_name: str, p_proto: str) -> bool:
            return port is None or (p_name.lower() == port and p_proto.lower() == proto)

        external = list(svc.external_ips) + list(svc.load_balancer)
        out: list[Target] = []
        key = f"{svc.name}.{svc.namespace}"
        if self.headless and not external and (svc.headless or endpoint is not None):
            for ep in ready_addresses(store, svc, self.kube.cfg.endpoint_pod_names):
                if endpoint is None or ep.hostname.lower() == endpoint:
                    out += [Target(ep.ip, p.port, f"{ep.hostname}.{key}") for p in ep.ports
                            if wanted(p.name, p.protocol) and p.port is not None]
        else:
            out = [Target(host, sp.port, key) for host in external for sp in svc.ports if wanted(sp.name, sp.protocol)]
        return out, (NOERROR if out else NXDOMAIN)

    def addresses(self, qname: str, found: list[Target], qtype: int) -> Reply:
        r = Reply()
        seen: set[str] = set()
        for t in found:
            if not _is_ip(t.host):
                r.answer.append(self.rr(qname, TYPE_CNAME, CNAME(t.host.rstrip(".") + ".")))
                r.lookups.append((t.host.rstrip(".") + ".", qtype, "answer"))
                continue
            if t.host in seen:
                continue
            seen.add(t.host)
            fam = ip_family(t.host)
            if fam == 4 and qtype == TYPE_A:
                r.answer.append(self.rr(qname, TYPE_A, A(t.host)))
            elif fam == 6 and qtype == TYPE_AAAA:
                r.answer.append(self.rr(qname, TYPE_AAAA, AAAA(t.host)))
        return r

    def srv(self, qname: str, found: list[Target], zone: str) -> Reply:
        weight = max(1, 100 // len(found))  # CoreDNS: 100 spread over every address and port, at least 1
        r = Reply()
        seen: set[tuple[str, int]] = set()
        glue: set[tuple[str, str]] = set()
        for t in found:
            target = t.host.rstrip(".") + "." if not _is_ip(t.host) else f"{t.key}.{zone.lstrip('.')}"
            if (target, t.port) not in seen:
                seen.add((target, t.port))
                r.answer.append(self.rr(qname, TYPE_SRV, SRV(0, weight, t.port, target)))
            if (target, t.host) in glue:
                continue
            glue.add((target, t.host))
            if _is_ip(t.host):
                fam = ip_family(t.host)
                r.extra.append(self.rr(target, TYPE_AAAA if fam == 6 else TYPE_A,
                                       AAAA(t.host) if fam == 6 else A(t.host)))
            else:
                r.lookups += [(target, TYPE_A, "extra"), (target, TYPE_AAAA, "extra")]
        return r

    def reverse(self, qname: str, ip: str) -> Reply:
        """PTR for an external address: every Service that has it, named in the first zone."""
        assert self.kube is not None
        names = sorted(f"{s.name}.{s.namespace}.{self.zones[0]}" for s in self.kube.store.iter(SERVICES)
                       if isinstance(s, Service) and (ip in s.external_ips or ip in s.load_balancer))
        if not names:
            return Reply(rcode=NXDOMAIN, soa=True)
        return Reply(answer=[self.rr(qname, TYPE_PTR, PTR(n)) for n in dict.fromkeys(names)])


def setup(d: Dispenser, ctx: SetupContext) -> K8sExternal:
    plugin: K8sExternal | None = None
    while d.next():
        plugin = K8sExternal(ctx, plugin_zones(d.remaining_args(), ctx))
        plugin.where = partial(d.err_at, d.token())
        while d.next_block():
            prop = d.val()
            args = d.remaining_args()
            if prop == "ttl":
                plugin.ttl = ttl_arg(d, args)
            elif prop == "apex":
                if not args:
                    raise d.arg_err()
                plugin.apex = args[0].strip(".").lower()
            elif prop == "headless":
                plugin.headless = True
            elif prop == "fallthrough":
                plugin.fallthrough.set(args, ctx)
            else:
                raise d.unknown_property()
    assert plugin is not None
    return plugin
