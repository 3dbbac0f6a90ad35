"""Prometheus metrics of one controller, in its own registry (two controllers in one process,
as in tests, do not collide), served by ``httpd`` on ``--metrics-port``.

Two sets: ``portolan_ingress_*``, which say what the controller did in its own terms, and
ingress-nginx's ``nginx_ingress_controller_*`` (reloads, configuration, certificates, leader,
orphaned Ingresses; requests in ingress/requestmetrics.py), so its dashboards and alerts work.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from cryptography import x509
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ingress.certs import CertPair
from ingress.model import Model
from ingress.requestmetrics import RequestMetrics, Text, sample

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]
CONST = ("controller_namespace", "controller_class", "controller_pod")


class Metrics:
    """The controller's Prometheus metrics (reloads, failures, pushes, reconciles), in a registry of their own."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        controller_class: str = "",
        namespace: str = "",
        pod: str = "",
        per_host: bool = True,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = RequestMetrics(controller_class, namespace, pod, per_host)
        self.const = (namespace, controller_class, pod)
        # ingress-nginx's counters are written by hand (exposition): prometheus_client would
        # name them *_total, and dashboards query nginx_ingress_controller_success.
        self.compat_success = 0
        self.compat_errors = 0
        self._gauged: Model | None = None
        self._orphans: set[tuple[str, str, str]] = set()
        self._certs: dict[str, tuple[float, str]] = {}
        n = "nginx_ingress_controller_"
        self.compat_hash = Gauge(n + "config_hash", "Running configuration hash actually running", CONST, registry=r)
        self.compat_reload_ok = Gauge(n + "config_last_reload_successful",
                                      "Whether the last configuration reload attempt was successful", CONST,
                                      registry=r)  # fmt: skip
        self.compat_reload_time = Gauge(n + "config_last_reload_successful_timestamp_seconds",
                                        "Timestamp of the last successful configuration reload.", CONST,
                                        registry=r)  # fmt: skip
        self.compat_leader = Gauge(n + "leader_election_status", "Gauge reporting status of the leader election, "
                                   "0 indicates follower, 1 indicates leader. 'name' is the string used to "
                                   "identify the lease", [*CONST, "name"], registry=r)  # fmt: skip
        self.ssl_expire = Gauge(n + "ssl_expire_time_seconds", "Number of seconds since 1970 to the SSL "
                                "Certificate expire.", ["namespace", "class", "host", "secret_name", "identifier"],
                                registry=r)  # fmt: skip
        self.orphan = Gauge(n + "orphan_ingress", "Gauge reporting status of ingress orphanity, 1 indicates "
                            "orphaned ingress. 'type' is 'no-service' or 'no-endpoint'",
                            [*CONST, "namespace", "ingress", "type"], registry=r)  # fmt: skip
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
        value = int(digest[:12], 16) if digest else 0
        self.config_hash.set(value)
        self.compat_hash.labels(*self.const).set(value)

    def applied(self, digest: str, *, reloaded: bool) -> None:
        """A configuration is in place (``reloaded``: nginx was reloaded or started for it)."""
        if reloaded:
            now = time.time()
            self.reloads.inc()
            self.last_reload.set(now)
            self.compat_reload_time.labels(*self.const).set(now)
            self.compat_success += 1
        self.last_reload_success.set(1)
        self.compat_reload_ok.labels(*self.const).set(1)
        self.set_hash(digest)

    def failed(self) -> None:
        """A configuration could not be applied (nginx -t, the reload, or the data)."""
        self.last_reload_success.set(0)
        self.compat_reload_ok.labels(*self.const).set(0)
        self.compat_errors += 1

    def model_applied(self, model: Model) -> None:
        """What nginx serves now: request labels, orphaned Ingresses and certificate expiry
        are worked out from it when they are needed (a batch, a scrape), not per change."""
        self.requests.model = model

    def _model_gauges(self) -> None:
        model = self.requests.model
        if model is None or model is self._gauged:
            return
        self._gauged = model
        orphans = set()
        for server in model.servers:
            for loc in server.locations:
                target = loc.target
                if not loc.ingress or not target.service:
                    continue
                namespace, _, name = loc.ingress.partition("/")
                if target.upstream is None:
                    orphans.add((namespace, name, "no-service"))
                else:
                    upstream = model.upstream(target.upstream)
                    if upstream is not None and not upstream.available:
                        orphans.add((namespace, name, "no-endpoint"))
        for key in self._orphans - orphans:  # as ingress-nginx: back to 0, not removed
            self.orphan.labels(*self.const, *key).set(0)
        for key in orphans:
            self.orphan.labels(*self.const, *key).set(1)
        self._orphans = orphans
        self.ssl_expire.clear()
        pairs = {pair.digest: pair for pair in model.certificates}
        for server in model.servers:
            pair = pairs.get(server.cert or "")
            if pair is None or not server.secret:
                continue
            expiry, identifier = self._cert_facts(pair)
            namespace, _, secret = server.secret.partition("/")
            self.ssl_expire.labels(namespace, self.const[1], server.host, secret, identifier).set(expiry)

    def _cert_facts(self, pair: CertPair) -> tuple[float, str]:
        """Expiry (seconds since 1970) and ingress-nginx's identifier (issuer serialNumber
        attribute, "-", serial) of a certificate, read once per digest."""
        found = self._certs.get(pair.digest)
        if found is None:
            cert = x509.load_pem_x509_certificate(pair.pem)
            issuer_serial = cert.issuer.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
            serial = str(issuer_serial[0].value) if issuer_serial else ""
            found = (cert.not_valid_after_utc.timestamp(), f"{serial}-{cert.serial_number}")
            if len(self._certs) > 4096:
                self._certs.clear()
            self._certs[pair.digest] = found
        return found

    def leadership(self, lease: str, leader: bool) -> None:
        self.leader.set(1 if leader else 0)
        self.compat_leader.labels(*self.const, lease).set(1 if leader else 0)

    def exposition(self, wanted: frozenset[str] | None = None) -> Iterator[bytes]:
        """The whole exposition, a piece at a time (see RequestMetrics.exposition); ``wanted``:
        only these metric names (Prometheus' ``name[]`` query parameters)."""
        self._model_gauges()
        registry = self.registry if wanted is None else self.registry.restricted_registry(sorted(wanted))
        yield generate_latest(registry)
        out = Text()
        labels = list(zip(CONST, self.const, strict=True))
        if wanted is None or "nginx_ingress_controller_success" in wanted:
            out.family("success", "counter", "Cumulative number of Ingress controller reload operations").append(
                sample("success", labels, self.compat_success))
        if wanted is None or "nginx_ingress_controller_errors" in wanted:
            out.family("errors", "counter", "Cumulative number of Ingress controller errors during reload "
                       "operations").append(sample("errors", labels, self.compat_errors))  # fmt: skip
        yield out.text().encode()
        for piece in self.requests.exposition(wanted):
            yield piece.encode()

    def text(self) -> str:
        """The exposition in one piece (tests)."""
        return b"".join(self.exposition()).decode()
