"""kubernetes at run time: the watch cache of the cluster's objects and the answers made from it."""

from __future__ import annotations

import socket

from dnslib import DNSRecord

from dnsplugins.bind import interface_addresses
from dnsplugins.forward.upstream import follow_self
from dnsplugins.kubernetes.answers import Answer, Answerer, zone_as_asked
from dnsplugins.kubernetes.config import KubernetesConfig
from dnsplugins.kubernetes.metadata import note_metadata
from dnsplugins.kubernetes.multicluster import MultiClusterAnswerer
from dnsplugins.kubernetes.shared import ClusterRef
from dnsserver.logs import plugin_log
from dnsserver.memo import AnswerMemo
from dnsserver.plugin import Next, Plugin, ServerInstance, match_zone
from dnsserver.request import Request
from dnsserver.wire.consts import NXDOMAIN, SERVFAIL
from dnsserver.wire.query import FastQuery
from kubewatch import (
    ENDPOINT_SLICES,
    NAMESPACES,
    PODS,
    RUNNING_PODS,
    SERVICE_IMPORTS,
    SERVICES,
    ClusterConfig,
    KubeError,
    Store,
    WatchSpec,
)
from kubewatch.shared import Membership

log = plugin_log("kubernetes")

MEMO_LIMIT = 200_000


def watch_specs(cfg: KubernetesConfig) -> list[WatchSpec]:
    ns = tuple(cfg.namespaces)
    specs = [WatchSpec(SERVICES.name, namespaces=ns, label_selector=cfg.labels),
             WatchSpec(NAMESPACES.name, namespaces=ns, label_selector=cfg.namespace_labels)]
    if not cfg.noendpoints:
        specs.append(WatchSpec(ENDPOINT_SLICES.name, namespaces=ns, label_selector=cfg.labels))
    if cfg.multicluster:
        # A custom resource: a cluster without its CRD is reported once, and the rest still served.
        specs.append(WatchSpec(SERVICE_IMPORTS.name, namespaces=ns))
    if cfg.pods == "verified":
        specs.append(WatchSpec(PODS.name, namespaces=ns, label_selector=cfg.labels, field_selector=RUNNING_PODS))
    return specs


def cluster_ref(cfg: KubernetesConfig) -> ClusterRef:
    return ClusterRef(cfg.manifests, cfg.kubeconfig, cfg.context, cfg.endpoint, cfg.tls)


def cluster_config(cfg: KubernetesConfig) -> ClusterConfig:
    return cluster_ref(cfg).config()


def host_search(path: str = "/etc/resolv.conf") -> list[str]:
    """This host's resolv.conf search path (none if it cannot be read)."""
    from dnsplugins.autopath import resolv_search  # autopath's reader; imported late: it is autopath's module

    try:
        return resolv_search(path)
    except OSError:
        return []


class Kubernetes(Plugin):
    """`kubernetes`: cluster DNS (Services, Pods, Endpoints) from the shared watch cache."""

    name = "kubernetes"

    def __init__(self, cfg: KubernetesConfig, instance: ServerInstance | None = None,
                 cluster: ClusterConfig | None = None) -> None:
        self.cfg = cfg
        self.cluster = cluster  # built once at setup (kubeconfig loading can run credential plugins)
        self.instance = instance
        # Its own store until started (tests fill it directly); start() swaps in the process's shared one.
        self.store = Store()
        self.answerer = (MultiClusterAnswerer if cfg.multicluster else Answerer)(self.store, cfg)
        self.membership: Membership | None = None
        self.memo = AnswerMemo(MEMO_LIMIT)
        self.search_paths: dict[tuple[str, str], list[str]] = {}
        self.host_search = host_search()  # autopath's path after the cluster's own, as CoreDNS reads it

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        # The store and watches are shared with every plugin that reads the same cluster (k8s_gateway,
        # other blocks), and kept across a reload that keeps the kinds.
        self.membership = cluster_ref(self.cfg).join(watch_specs(self.cfg), self.cluster)
        self.store = self.answerer.store = self.membership.store
        self.memo = AnswerMemo(MEMO_LIMIT)  # versions of the old store mean nothing in the new one
        await self.membership.start()
        self.answerer.ns_ips = self.ns_addresses()
        try:
            synced = await self.membership.wait_synced(timeout=self.cfg.startup_timeout)
        except KubeError as e:
            synced = False
            log.warning("%s", e)
        if not synced:
            log.warning("starting server with unsynced Kubernetes API")

    async def stop(self) -> None:
        if self.membership is not None:
            await self.membership.stop()

    @property
    def synced(self) -> bool:
        """Every kind this plugin reads has synced (a shared store may also hold others' kinds)."""
        return self.membership.synced if self.membership is not None else self.store.synced

    def is_ready(self) -> bool:
        return self.synced

    def ns_addresses(self) -> list[str]:
        """The NS glue: this host's non-loopback addresses, published as `ns.dns.<zone>` as CoreDNS does."""
        ips: list[str] = []
        for _, ifname in socket.if_nameindex():
            if ifname != "lo":
                ips += interface_addresses(ifname)
        return ips

    # -- serving -------------------------------------------------------------------------------------

    def fast_answer(self, data: bytes, q: FastQuery, key: bytes, client: tuple[str, int], proto: str,
                    shuffle: bool, max_size: int) -> bytes | None:
        """The hot path: a remembered answer still valid for the store's current version."""
        return self.memo.fast_answer(data, q, key, self.store.version, shuffle, max_size)

    def autopath(self, name: str, client_ip: str) -> list[str] | None:
        """autopath's `@kubernetes`: the search path of the Pod at `client_ip` (its namespace's service
        domain, svc, the zone, this host's search path, then the bare name), or None: not a known Pod, not
        one of our zones, or Pods not watched (`pods verified`). Called per query on the hot path: be quick."""
        if self.cfg.pods != "verified":
            return None
        pods = self.store.pods_by_ip(client_ip)
        if not pods:
            return None
        zone = match_zone(self.cfg.zones, name)
        if zone is None:
            return None
        ns = pods[0].namespace
        path = self.search_paths.get((ns, zone))
        if path is None:  # kept per namespace and zone: made once, not per query (callers only read it)
            if zone == ".":
                path = [f"{ns}.svc.", "svc.", ".", *self.host_search, ""]
            else:
                path = [f"{ns}.svc.{zone}", f"svc.{zone}", zone, *self.host_search, ""]
            if len(self.search_paths) >= MEMO_LIMIT:
                self.search_paths.clear()
            self.search_paths[(ns, zone)] = path
        return path

    def metadata(self, req: Request) -> None:
        """The metadata plugin's question: the parts of the query name (kubernetes/kind, namespace, ...)."""
        note_metadata(req, self.cfg.zones, self.cfg.multicluster)

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        zone = match_zone(self.cfg.zones, req.name)
        if zone is None or req.qclass != 1:
            return await next(req)
        version = self.store.version
        known = self.memo.reply(req.wire, version)
        if known is not None:
            return known
        ans = self.answerer.answer(req.qname, req.name, zone, req.qtype)
        synced = self.synced
        if ans.name_error:
            # Order matters (CoreDNS): fallthrough first, then the not-synced SERVFAIL.
            if self.cfg.fallthrough.covers(req.name):
                return await next(req)
            if not synced:
                ans = Answer(rcode=SERVFAIL, soa=True, memo=False)
        reply = req.reply(ans.rcode, aa=True)
        for r in ans.answer:
            reply.add_answer(r)
        for r in ans.authority:
            reply.add_auth(r)
        if ans.soa:
            reply.add_auth(self.answerer.soa(zone_as_asked(req.qname, zone)))
        for r in ans.extra:
            reply.add_ar(r)
        if ans.upstream is not None:
            await self.resolve_upstream(req, ans.upstream, reply)
        elif ans.memo and synced:
            self.memo.remember(req.wire, version, reply)
        return reply

    async def resolve_upstream(self, req: Request, target: str, reply: DNSRecord) -> None:
        """An ExternalName pointing outside our zones: ask this very server, as CoreDNS's upstream does."""
        answer = await follow_self(self.instance, target, 28 if req.qtype == 28 else 1, reply)
        if answer is not None and answer.header.rcode == NXDOMAIN and len(reply.rr) == 1:
            reply.header.rcode = NXDOMAIN
