"""How a cluster name is answered: the Kubernetes DNS spec 1.1.0, and CoreDNS's behaviour where the
spec is silent (NXDOMAIN versus NODATA, the TXT quirks, SRV weights, PTR for endpoints).

Pure functions of the store's state: the plugin memoises what they return per store version.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RR, SOA, SRV, TXT, A

from dnsplugins.kubernetes.config import KubernetesConfig, is_reverse
from dnsserver.plugin import match_zone
from dnsserver.wire.consts import (
    NOERROR,
    NXDOMAIN,
    REFUSED,
    TYPE_A,
    TYPE_AAAA,
    TYPE_AXFR,
    TYPE_CNAME,
    TYPE_IXFR,
    TYPE_NS,
    TYPE_PTR,
    TYPE_SOA,
    TYPE_SRV,
    TYPE_TXT,
)
from kubewatch import EndpointPort, Service, ServicePort, Store
from kubewatch.services import (
    endpoint_hostname,
    endpoint_ready,
    external_name_target,
    ip_family,
    ready_addresses,
)

DNS_VERSION = "1.1.0"
DNS_VERSION_TTL = 28800
MAX_CNAME_CHASE = 10


@dataclass
class Answer:
    """What the cluster's records say about one question: rcode, sections, and how it may be kept."""

    rcode: int = NOERROR
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    extra: list[RR] = field(default_factory=list)
    soa: bool = False  # add the zone's SOA to the authority section (every negative answer)
    upstream: str | None = None  # an out-of-zone CNAME target to resolve through the server itself
    memo: bool = True  # may be kept until the store changes

    @property
    def name_error(self) -> bool:
        return self.rcode == NXDOMAIN


def nodata() -> Answer:
    return Answer(soa=True)


def nxdomain() -> Answer:
    return Answer(rcode=NXDOMAIN, soa=True)


@dataclass
class Backend:
    ip: str
    port: int  # -1: the endpoint slice publishes no port (kept for A/AAAA, dropped for SRV)
    hostname: str | None  # set for endpoint backends (headless services and endpoint names)


def zone_as_asked(qname: str, zone: str) -> str:
    """The zone's labels as the client spelled them (answers keep the question's case)."""
    return qname[len(qname) - len(zone):] if zone != "." else "."


def ip_from_dashes(label: str) -> str | None:
    """A pod label to an address: three dashes and no "--" is IPv4, anything else IPv6."""
    text = label.replace("-", "." if label.count("-") == 3 and "--" not in label else ":")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def ip_from_reverse(name: str) -> str | None:
    """`4.3.2.1.in-addr.arpa.` -> 1.2.3.4; 32 nibbles of ip6.arpa -> the IPv6 address; else None."""
    labels = name.rstrip(".").split(".")
    try:
        if name.endswith(".in-addr.arpa.") and len(labels) == 6:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        if name.endswith(".ip6.arpa.") and len(labels) == 34:
            nibbles = "".join(reversed(labels[:32]))
            if len(nibbles) != 32:
                return None
            return str(ipaddress.IPv6Address(int(nibbles, 16)))
    except ValueError:
        return None
    return None


class Answerer:
    """Answers one qname/qtype against the store, for one plugin configuration."""

    def __init__(self, store: Store, cfg: KubernetesConfig) -> None:
        self.store = store
        self.cfg = cfg
        # The addresses of ns.dns.<zone>, the one NS name; set once at start-up (this host's interfaces).
        self.ns_ips: list[str] = []
        self.forward_zones = [z for z in cfg.zones if z != "."]

    # -- helpers -------------------------------------------------------------------------------------

    def rr(self, name: str, rtype: int, rdata: object, ttl: int | None = None) -> RR:
        return RR(name, rtype, 1, self.cfg.ttl if ttl is None else ttl, rdata)

    def address_rr(self, name: str, ip: str) -> RR:
        """The A or AAAA record for `ip`, by its family."""
        return self.rr(name, TYPE_AAAA, AAAA(ip)) if ip_family(ip) == 6 else self.rr(name, TYPE_A, A(ip))

    def soa(self, zone: str) -> RR:
        ttl = self.cfg.ttl
        serial = int(self.store.last_change) & 0xFFFFFFFF
        return RR(zone, TYPE_SOA, 1, min(ttl, 300),
                  SOA(f"ns.dns.{zone}", f"hostmaster.{zone}", (serial, 7200, 1800, 86400, ttl)))

    def exposed(self, ns: str) -> bool:
        """Namespace served: allowed by `namespaces` and present (through `namespace_labels`) in the store."""
        if self.cfg.namespaces and ns not in self.cfg.namespaces:
            return False
        return self.store.namespace(ns) is not None

    # -- entry point ---------------------------------------------------------------------------------

    def answer(self, qname: str, name: str, zone: str, qtype: int) -> Answer:
        """`qname` as the client spelled it, `name` lower-cased, `zone` the plugin zone it is in."""
        if qtype in (TYPE_AXFR, TYPE_IXFR):
            return Answer(rcode=REFUSED, memo=True)
        zone_asked = zone_as_asked(qname, zone)
        if is_reverse(zone):
            return self.reverse(name, zone, qtype)
        prefix = name[: len(name) - len(zone)] if zone != "." else name
        parts = [p for p in prefix.rstrip(".").split(".") if p] if prefix not in ("", ".") else []
        if not parts:
            return self.apex(qname, zone_asked, qtype)
        if len(parts) == 1 and parts[0] == "dns-version":
            if qtype == TYPE_TXT:
                return Answer(answer=[self.rr(qname, TYPE_TXT, TXT(DNS_VERSION), DNS_VERSION_TTL)])
            return nxdomain()
        if parts == ["ns", "dns"]:
            return self.addresses(qname, self.ns_ips, qtype) if self.ns_ips else nxdomain()
        if parts[-1] not in ("svc", "pod"):
            return nxdomain()
        return self.cluster_name(qname, zone_asked, parts, qtype)

    def cluster_name(self, qname: str, zone_asked: str, parts: list[str], qtype: int) -> Answer:
        """A name under svc or pod (its labels below the zone are `parts`, the last one svc or pod)."""
        kind = parts[-1]
        if qtype == TYPE_SOA:
            return nodata()  # below the apex SOA is NODATA, for names that exist or not
        if len(parts) == 1:
            return nxdomain() if qtype == TYPE_TXT else nodata()
        ns = parts[-2]
        if len(parts) == 2:
            if not self.exposed(ns):
                return nxdomain()
            return nxdomain() if qtype == TYPE_TXT else nodata()
        if kind == "pod":
            return self.pod(qname, parts[:-2], ns, qtype) if len(parts) == 3 else nxdomain()
        svc = parts[-3]
        if len(parts) == 3:
            return self.service(qname, zone_asked, ns, svc, qtype)
        if len(parts) == 4:
            return self.service(qname, zone_asked, ns, svc, qtype, endpoint=parts[0])
        if len(parts) == 5:
            return self.service(qname, zone_asked, ns, svc, qtype, port=parts[0].lstrip("_"),
                                proto=parts[1].lstrip("_"))
        return nxdomain()

    # -- apex, pods ----------------------------------------------------------------------------------

    def apex(self, qname: str, zone_asked: str, qtype: int) -> Answer:
        if qtype == TYPE_SOA:
            return Answer(answer=[self.soa(zone_asked)])
        if qtype == TYPE_NS:
            target = f"ns.dns.{zone_asked}"
            return Answer(answer=[self.rr(qname, TYPE_NS, NS(target))],
                          extra=[self.address_rr(target, ip) for ip in self.ns_ips])
        if qtype == TYPE_TXT:
            return nxdomain()  # CoreDNS's quirk: TXT at names that exist only as structure is NXDOMAIN
        return nodata()

    def addresses(self, qname: str, ips: list[str], qtype: int) -> Answer:
        want = 6 if qtype == TYPE_AAAA else 4
        if qtype not in (TYPE_A, TYPE_AAAA):
            return nodata()
        recs = [self.address_rr(qname, ip) for ip in dict.fromkeys(ips) if ip_family(ip) == want]
        return Answer(answer=recs) if recs else nodata()

    def pod(self, qname: str, labels: list[str], ns: str, qtype: int) -> Answer:
        mode = self.cfg.pods
        if mode == "disabled" or not self.exposed(ns):
            return nxdomain()
        ip = ip_from_dashes(labels[0])
        if ip is None:
            return nxdomain()
        # pods_by_ip never holds pods being deleted (kubewatch's index leaves them out).
        if mode == "verified" and not any(p.namespace == ns and p.ip == ip for p in self.store.pods_by_ip(ip)):
            return nxdomain()
        if qtype == TYPE_TXT:
            return nodata()
        return self.addresses(qname, [ip], qtype)

    # -- services ------------------------------------------------------------------------------------

    def backends(self, svc: Service, endpoint: str | None, port: str | None, proto: str | None,
                 ) -> list[Backend] | None:
        """The service's backends for this name; None when the name does not exist.

        A backend without a published port (no ports at all, or a slice port of "all ports") has
        port -1: it answers A/AAAA and is left out of SRV."""

        def wanted(p: ServicePort | EndpointPort) -> bool:  # the _port._proto labels, if asked
            return port is None or (p.name.lower() == port and p.protocol.lower() == proto)

        if svc.headless or endpoint is not None:
            out: list[Backend] = []
            for ep in ready_addresses(self.store, svc, self.cfg.endpoint_pod_names):
                if endpoint is not None and ep.hostname.lower() != endpoint:
                    continue
                ports = [p for p in ep.ports if wanted(p)]
                if port is not None and not ports:
                    continue
                numbers = [p.port if p.port is not None else -1 for p in ports] or [-1]
                out += [Backend(ep.ip, n, ep.hostname) for n in numbers]
            return out or None
        sports = [sp for sp in svc.ports if wanted(sp)]
        if port is not None and not sports:
            return None
        if self.cfg.ignore_empty_service and not ready_addresses(self.store, svc):
            return None
        numbers = [sp.port for sp in sports] or [-1]
        return [Backend(ip, n, None) for n in numbers for ip in svc.cluster_ips] or None

    def service(self, qname: str, zone_asked: str, ns: str, name: str, qtype: int, endpoint: str | None = None,
                port: str | None = None, proto: str | None = None) -> Answer:
        if not self.exposed(ns):
            return nxdomain()
        svc = self.store.service(ns, name)
        if svc is None:
            return nxdomain()
        if svc.is_external_name:
            target = external_name_target(svc)
            if target is None or endpoint is not None or port is not None:
                return nxdomain()
            return self.external_name(qname, target, qtype)
        found = self.backends(svc, endpoint, port, proto)
        if found is None:
            return nxdomain()
        if qtype in (TYPE_A, TYPE_AAAA):
            return self.addresses(qname, [b.ip for b in found], qtype)
        if qtype == TYPE_SRV:
            return self.srv(qname, zone_asked, svc, found, endpoint is not None)
        return nodata()  # the name exists; no records of this type (TXT, CNAME, MX, ...)

    def srv(self, qname: str, zone_asked: str, svc: Service, found: list[Backend], endpoint_query: bool) -> Answer:
        base = f"{svc.name}.{svc.namespace}.svc.{zone_asked}"
        by_endpoint = svc.headless or endpoint_query
        return self.srv_records(qname, found, lambda b: f"{b.hostname}.{base}" if by_endpoint else base)

    def srv_records(self, qname: str, found: list[Backend], target_of: Callable[[Backend], str]) -> Answer:
        """SRV records for `found` (each backend's target named by `target_of`), with the targets' addresses."""
        weight = max(1, 100 // len(found))  # CoreDNS: spread 100 over every backend, ports -1 included
        a = Answer()
        seen: set[tuple[str, int]] = set()
        glue: set[tuple[str, str]] = set()
        for b in found:
            if b.port < 0:
                continue
            target = target_of(b)
            if (target, b.port) not in seen:
                seen.add((target, b.port))
                a.answer.append(self.rr(qname, TYPE_SRV, SRV(0, weight, b.port, target)))
            if (target, b.ip) not in glue:
                glue.add((target, b.ip))
                a.extra.append(self.address_rr(target, b.ip))
        return a if a.answer else nodata()

    def external_name(self, qname: str, target: str, qtype: int) -> Answer:
        target = target if target.endswith(".") else target + "."
        cname = self.rr(qname, TYPE_CNAME, CNAME(target))
        if qtype == TYPE_CNAME:
            return Answer(answer=[cname])
        if qtype not in (TYPE_A, TYPE_AAAA):
            return nodata()
        a = Answer(answer=[cname])
        # Inside our zones: chase it here (bounded, loop-safe); elsewhere: the server resolves it.
        seen = {qname.lower()}
        current = target
        for _ in range(MAX_CNAME_CHASE):
            # The root never counts as ours here: a target outside every named zone goes upstream.
            zone = match_zone(self.forward_zones, current.lower())
            if zone is None:
                a.upstream = current
                a.memo = False
                return a
            if current.lower() in seen:
                return a
            seen.add(current.lower())
            sub = self.answer(current, current.lower(), zone, qtype)
            a.answer += sub.answer
            a.memo = a.memo and sub.memo
            nxt = next((r for r in sub.answer if r.rtype == TYPE_CNAME), None)
            if nxt is None or sub.upstream is not None:
                a.upstream = sub.upstream
                return a
            current = str(nxt.rdata.label)
        return a

    # -- reverse -------------------------------------------------------------------------------------

    def reverse(self, name: str, zone: str, qtype: int) -> Answer:
        if name == zone:
            if qtype == TYPE_SOA:
                return Answer(answer=[self.soa(zone)])
            return nodata()
        ip = ip_from_reverse(name)
        if ip is None:
            return nxdomain()
        targets = self.ptr_targets(ip)
        if not targets:
            return nxdomain()
        if qtype != TYPE_PTR:
            return nodata()
        return Answer(answer=[self.rr(name, TYPE_PTR, PTR(t)) for t in targets])

    def ptr_targets(self, ip: str) -> list[str]:
        primary = self.cfg.primary
        for svc in self.store.services_by_ip(ip):
            if not self.cfg.namespaces or svc.namespace in self.cfg.namespaces:
                return [f"{svc.name}.{svc.namespace}.svc.{primary}"]
        out: list[str] = []
        for sl, ep in self.store.endpoints_by_ip(ip):
            if sl.service_name is None or (self.cfg.namespaces and sl.namespace not in self.cfg.namespaces):
                continue
            if not endpoint_ready(ep):
                continue
            host = endpoint_hostname(ep, ip, self.cfg.endpoint_pod_names)
            t = f"{host}.{sl.service_name}.{sl.namespace}.svc.{primary}"
            if t not in out:
                out.append(t)
        return out


__all__ = ["QTYPE", "Answer", "Answerer", "ip_from_dashes", "ip_from_reverse"]
