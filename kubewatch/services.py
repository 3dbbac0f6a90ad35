"""Service and EndpointSlice semantics shared by the DNS plugin and the ingress controller.

One place for the rules both consumers must agree on: which endpoints are ready, what an
endpoint's DNS hostname is, how a Service port reaches an endpoint port, and what headless,
ExternalName and dual-stack mean.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple, Protocol

from kubewatch.records import Endpoint, EndpointPort, EndpointSlice, Service, ServicePort

# CoreDNS uses a pod name as endpoint hostname only while it fits in one DNS label.
MAX_LABEL = 63


class SliceSource(Protocol):
    """Where the EndpointSlices of a Service are found (the store)."""

    def slices_for_service(self, namespace: str, service: str) -> tuple[EndpointSlice, ...]: ...


def ip_family(ip: str) -> int:
    """4 or 6, from the textual form (both families never share a character set here)."""
    return 6 if ":" in ip else 4


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_headless(svc: Service) -> bool:
    return svc.headless


def is_external_name(svc: Service) -> bool:
    return svc.type == "ExternalName"


def cluster_ips(svc: Service, family: int | None = None) -> tuple[str, ...]:
    """The Service's ClusterIPs (dual-stack: one per family), optionally of one family."""
    if family is None:
        return svc.cluster_ips
    return tuple(ip for ip in svc.cluster_ips if ip_family(ip) == family)


def external_name_target(svc: Service) -> str | None:
    """The CNAME target of an ExternalName Service; None if unset or an IP (CoreDNS: no CNAME)."""
    if svc.type != "ExternalName" or not svc.external_name or is_ip(svc.external_name):
        return None
    return svc.external_name


def endpoint_ready(ep: Endpoint, publish_not_ready: bool = False) -> bool:
    """conditions.ready true or unset is ready.

    The EndpointSlice controller already marks every endpoint ready when the Service has
    publishNotReadyAddresses; honouring the flag here too covers slices written by hand.
    """
    return publish_not_ready or ep.ready is not False


def dashed_ip(ip: str) -> str:
    """The label CoreDNS derives from an IP: dots (v4) or colons (v6) to dashes.

    A v6 form ending in a dash gets a trailing "0" so the label does not end with "-"
    ("2001:db8::" -> "2001-db8--0").
    """
    if "." in ip:  # checked first, as CoreDNS does, so a v4-mapped v6 keeps its colons
        return ip.replace(".", "-")
    dashed = ip.replace(":", "-")
    return dashed + "0" if dashed.endswith("-") else dashed


def endpoint_hostname(ep: Endpoint, address: str, pod_names: bool = False) -> str:
    """The endpoint's hostname: its hostname field; else (``pod_names``, CoreDNS's
    endpoint_pod_names) the targetRef pod name if it fits a label; else the dashed IP."""
    if ep.hostname:
        return ep.hostname
    if pod_names and ep.target_name and len(ep.target_name) <= MAX_LABEL and ep.target_kind in (None, "Pod"):
        return ep.target_name
    return dashed_ip(address)


class EndpointAddress(NamedTuple):
    """One ready address of a Service, as DNS and ingress consume it."""

    ip: str
    hostname: str
    ports: tuple[EndpointPort, ...]  # the slice's ports; empty means none published
    node_name: str | None
    zone: str | None
    target_name: str | None
    slice_name: str


def is_ip_slice(sl: EndpointSlice) -> bool:
    return sl.address_type in ("IPv4", "IPv6")


def ready_addresses(store: SliceSource, svc: Service, pod_names: bool = False) -> list[EndpointAddress]:
    """Every ready address of every IP EndpointSlice of the Service, in slice-name order."""
    result = []
    for sl in store.slices_for_service(svc.namespace, svc.name):
        if not is_ip_slice(sl):
            continue
        for ep in sl.endpoints:
            if not endpoint_ready(ep, svc.publish_not_ready):
                continue
            for addr in ep.addresses:
                result.append(
                    EndpointAddress(
                        addr,
                        endpoint_hostname(ep, addr, pod_names),
                        sl.ports,
                        ep.node_name,
                        ep.zone,
                        ep.target_name,
                        sl.name,
                    )
                )
    return result


def find_service_port(svc: Service, name: str | None = None, number: int | None = None) -> ServicePort | None:
    """The Service port named ``name`` or numbered ``number`` (an Ingress backend's port)."""
    for sp in svc.ports:
        if name is not None and sp.name == name:
            return sp
        if number is not None and sp.port == number:
            return sp
    return None


def endpoint_port(sp: ServicePort, sl: EndpointSlice) -> int | None:
    """The port on the endpoints of ``sl`` that Service port ``sp`` forwards to.

    The EndpointSlice controller names slice ports after the Service ports and stores the
    resolved container port, so a named targetPort is resolved through the slice port of
    the same name (and protocol). A numeric targetPort is the fallback; a named one that
    no slice port resolves gives None.
    """
    for p in sl.ports:
        if p.name == sp.name and p.protocol == sp.protocol and p.port is not None:
            return p.port
    if isinstance(sp.target_port, int):
        return sp.target_port
    return None


def upstream_endpoints(store: SliceSource, svc: Service, sp: ServicePort) -> list[tuple[str, int]]:
    """Ready (ip, port) pairs behind a Service port, de-duplicated and sorted: what an
    ingress upstream proxies to (never the ClusterIP)."""
    found: set[tuple[str, int]] = set()
    for sl in store.slices_for_service(svc.namespace, svc.name):
        if not is_ip_slice(sl):
            continue
        port = endpoint_port(sp, sl)
        if port is None or port <= 0:
            continue
        for ep in sl.endpoints:
            if endpoint_ready(ep, svc.publish_not_ready):
                for addr in ep.addresses:
                    found.add((addr, port))
    return sorted(found, key=lambda pair: (ip_family(pair[0]), ipaddress.ip_address(pair[0]), pair[1]))
