"""Prometheus metrics of one controller, in its own registry (two controllers in one process,
as in tests, do not collide), served by ``httpd`` on ``--metrics-port``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """The controller's Prometheus metrics (reloads, failures, pushes, reconciles), in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reloads = Counter("portolan_ingress_reloads", "nginx reloads that took effect", registry=r)
        self.reload_failures = Counter(
            "portolan_ingress_reload_failures",
            "Configurations not applied: nginx -t failed, a reload did not take effect, or nginx refused live data",
            ["reason"],
            registry=r,
        )
        self.last_reload = Gauge(
            "portolan_ingress_last_reload_timestamp_seconds", "When the running configuration was loaded", registry=r
        )
        self.last_reload_success = Gauge(
            "portolan_ingress_last_reload_successful", "1 if the last configuration attempt was applied", registry=r
        )
        self.config_hash = Gauge(
            "portolan_ingress_config_hash", "Hash of the running nginx configuration (48 bits)", registry=r
        )
        self.rejected = Counter(
            "portolan_ingress_rejected",
            "Ingresses left out of the configuration, per version of the Ingress",
            ["namespace", "ingress", "reason"],
            registry=r,
        )
        self.rejected_now = Gauge(
            "portolan_ingress_rejected_ingresses", "Ingresses of our class currently left out", registry=r
        )
        self.owned = Gauge("portolan_ingress_owned_ingresses", "Ingresses of our class", registry=r)
        self.syncs = Counter("portolan_ingress_syncs", "Reconcile passes", registry=r)
        self.sync_seconds = Histogram(
            "portolan_ingress_sync_duration_seconds",
            "Time from the debounced change to the applied (or skipped) configuration",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.data_pushes = Counter(
            "portolan_ingress_data_pushes",
            "Live data updates nginx took without a reload (endpoints, canary weights, certificates)",
            registry=r,
        )
        self.nginx_restarts = Counter("portolan_ingress_nginx_restarts", "nginx masters restarted", registry=r)
        self.leader = Gauge("portolan_ingress_leader", "1 while this replica holds the status lease", registry=r)
        self.status_updates = Counter(
            "portolan_ingress_status_updates", "Ingress status writes", ["result"], registry=r
        )
        self.events = Counter("portolan_ingress_events", "Kubernetes Events emitted", ["reason"], registry=r)

    def set_hash(self, digest: str) -> None:
        # 12 hex digits = 48 bits: exact in a float64 sample value.
        self.config_hash.set(int(digest[:12], 16) if digest else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
