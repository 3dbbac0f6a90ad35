"""kubernetes `multicluster ZONES`: names in those zones are answered from the Multi-Cluster Services
API, as CoreDNS's findMultiClusterServices does, instead of from Services:

* `SERVICE.NAMESPACE.svc.ZONE`: a ServiceImport (multicluster.x-k8s.io/v1alpha1). ClusterSetIP: its
  `spec.ips` for A/AAAA, SRV per `spec.ports` (an import without ports has no records: NXDOMAIN, as in
  CoreDNS). Headless: every ready address of the EndpointSlices labelled
  `multicluster.kubernetes.io/service-name=SERVICE`, whatever their source cluster.
* `ENDPOINT.CLUSTER.SERVICE.NAMESPACE.svc.ZONE`: the addresses of that endpoint hostname in the slices
  labelled `multicluster.kubernetes.io/source-cluster=CLUSTER`; SRV targets of headless imports are
  named so. (`ENDPOINT.SERVICE...` alone matches only endpoints of slices without a cluster id.)
* `_PORT._PROTO.SERVICE.NAMESPACE.svc.ZONE`: SRV for that port, as in cluster zones; a name whose two
  extra labels start with no underscore is read as ENDPOINT.CLUSTER, as CoreDNS reads it.

Pod names, `dns-version`, the apex and the SOA are as in cluster zones. With the *metadata* plugin,
names in these zones also get `kubernetes/cluster` (the CLUSTER label, or empty). No PTR records are made for
cluster-set IPs (CoreDNS makes none either).
"""

from __future__ import annotations

from dnsplugins.kubernetes.answers import Answer, Answerer, Backend, nodata, nxdomain
from dnsplugins.kubernetes.config import KubernetesConfig
from dnsserver.wire.consts import TYPE_A, TYPE_AAAA, TYPE_SRV
from kubewatch import ServiceImport, Store
from kubewatch.services import endpoint_hostname, endpoint_ready, is_ip_slice


class McBackend(Backend):
    """A backend of a headless import: its cluster id goes into its name."""

    def __init__(self, ip: str, port: int, hostname: str | None, cluster: str) -> None:
        super().__init__(ip, port, hostname)
        self.cluster = cluster


class MultiClusterAnswerer(Answerer):
    """An Answerer whose multicluster zones answer service names from ServiceImports."""

    def __init__(self, store: Store, cfg: KubernetesConfig) -> None:
        super().__init__(store, cfg)
        self.mc_zones = frozenset(cfg.multicluster)
        # Set for the duration of one (synchronous) answer: whether its zone is a multicluster one. The
        # spec's name structure (apex, dns-version, pods) is shared; only the service names differ.
        self.in_mc = False

    def answer(self, qname: str, name: str, zone: str, qtype: int) -> Answer:
        self.in_mc = zone in self.mc_zones
        try:
            return super().answer(qname, name, zone, qtype)
        finally:
            self.in_mc = False

    def cluster_name(self, qname: str, zone_asked: str, parts: list[str], qtype: int) -> Answer:
        # ENDPOINT.CLUSTER.SERVICE.NAMESPACE.svc: five labels, neither of the first two an _underscore one.
        if (self.in_mc and len(parts) == 5 and parts[-1] == "svc" and not parts[0].startswith("_")
                and not parts[1].startswith("_")):
            return self.mc_service(qname, zone_asked, parts[2], parts[3], qtype, endpoint=parts[0],
                                   cluster=parts[1])
        return super().cluster_name(qname, zone_asked, parts, qtype)

    def service(self, qname: str, zone_asked: str, ns: str, name: str, qtype: int, endpoint: str | None = None,
                port: str | None = None, proto: str | None = None) -> Answer:
        if not self.in_mc:
            return super().service(qname, zone_asked, ns, name, qtype, endpoint, port, proto)
        return self.mc_service(qname, zone_asked, name, ns, qtype, endpoint, "" if endpoint is not None else None,
                               port, proto)

    def mc_backends(self, imp: ServiceImport, endpoint: str | None, cluster: str | None, port: str | None,
                    proto: str | None) -> list[Backend]:
        def wanted(p_name: str, p_proto: str) -> bool:
            return port is None or (p_name.lower() == port and p_proto.lower() == proto)

        out: list[Backend] = []
        if imp.headless or endpoint is not None:
            for sl in self.store.mc_slices_for_service(imp.namespace, imp.name):
                if not is_ip_slice(sl):
                    continue
                sl_cluster = sl.source_cluster or ""
                if endpoint is not None and sl_cluster.lower() != cluster:
                    continue
                # A slice without ports answers A/AAAA (port -1) and no SRV, as in cluster zones.
                ports = [p.port if p.port is not None else -1 for p in sl.ports if wanted(p.name, p.protocol)]
                if not sl.ports and port is None:
                    ports = [-1]
                for ep in sl.endpoints:
                    if not endpoint_ready(ep):
                        continue
                    for ip in ep.addresses:
                        host = endpoint_hostname(ep, ip, self.cfg.endpoint_pod_names)
                        if endpoint is not None and host.lower() != endpoint:
                            continue
                        out += [McBackend(ip, n, host, sl_cluster) for n in ports]
            return out
        if self.cfg.ignore_empty_service and not any(
                ep.addresses and endpoint_ready(ep)
                for sl in self.store.mc_slices_for_service(imp.namespace, imp.name) for ep in sl.endpoints):
            return []
        return [Backend(ip, p.port, None) for p in imp.ports if wanted(p.name, p.protocol) for ip in imp.ips]

    def mc_service(self, qname: str, zone_asked: str, name: str, ns: str, qtype: int, endpoint: str | None = None,
                   cluster: str | None = None, port: str | None = None, proto: str | None = None) -> Answer:
        if not self.exposed(ns):
            return nxdomain()
        imp = self.store.service_import(ns, name)
        if imp is None:
            return nxdomain()
        found = self.mc_backends(imp, endpoint, cluster, port, proto)
        if not found:
            return nxdomain()
        if qtype in (TYPE_A, TYPE_AAAA):
            return self.addresses(qname, [b.ip for b in found], qtype)
        if qtype != TYPE_SRV:
            return nodata()
        base = f"{imp.name}.{imp.namespace}.svc.{zone_asked}"
        return self.srv_records(
            qname, found, lambda b: f"{b.hostname}.{b.cluster}.{base}" if isinstance(b, McBackend) else base)
