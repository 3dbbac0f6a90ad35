"""The controller's lifecycle: the watches, the loops, health and Ingress status.

    store change -> debounce -> Reconciler (frozen view -> model -> render -> same hash?)
      -> Applier: data only (no reload), or nginx -t -> rename -> SIGHUP -> data

ingress/reconciler.py owns one pass and its bisection; ingress/applier.py owns what nginx
runs (the configuration file and the live data pushed over its status socket).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any, Protocol

from ingress import certs
from ingress.admission import AdmissionServer, Reviewer
from ingress.applier import Applier
from ingress.classes import owned
from ingress.clock import Clock, MonotonicClock
from ingress.debounce import Debouncer
from ingress.events import EventRecorder
from ingress.gateway import WATCHED as GATEWAY_WATCHED
from ingress.gateway import FrontEnd, unusable
from ingress.httpd import StatusServer
from ingress.layout import Layout
from ingress.lease import LeaderElector
from ingress.metrics import Metrics
from ingress.model import Model, ParseCache, Snapshot
from ingress.modelcache import same_but_status
from ingress.nginx import Nginx, NginxError, check_binary, check_lua, status_get
from ingress.options import Options, resolvers_from
from ingress.reconciler import FrozenView, Reconciler
from ingress.render import Listen, Renderer
from ingress.settings import NginxSettings, parse_settings
from ingress.status import Address, StatusWriter, addresses_from_flag, addresses_from_service
from kubewatch import (
    CONFIG_MAPS,
    ENDPOINT_SLICES,
    INGRESS_CLASSES,
    INGRESSES,
    SECRETS,
    SERVICES,
    ApiClient,
    ApiSource,
    Backoff,
    Change,
    ClusterConfig,
    ConfigMap,
    GenericObject,
    Ingress,
    IngressClass,
    KubeError,
    ManifestSource,
    Secret,
    Store,
    WatchSpec,
)

log = logging.getLogger(__name__)
METRICS_INTERVAL = 1.0  # seconds between takes of the request counts (each nginx worker flushes once a second)

WATCHED = (INGRESSES, INGRESS_CLASSES, SERVICES, ENDPOINT_SLICES, SECRETS, CONFIG_MAPS)


def calls_for_rebuild(change: Change) -> bool:
    """Every change but a status write (ours: one per Ingress and route after a bulk load, which
    would otherwise hold every rebuild, a Secret rotation's too, to the debouncer's max delay)."""
    old, new = change.old, change.new
    if isinstance(old, Ingress | GenericObject) and type(new) is type(old):
        return not same_but_status(old, new)
    return True


class ControllerError(Exception):
    """The controller cannot start."""


class Source(Protocol):
    """What feeds the store: kubewatch's ApiSource or ManifestSource, or a test's own."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Controller:
    """One ingress controller: the store and its watches, the reconcile loop, nginx, status and health."""

    def __init__(
        self,
        options: Options,
        *,
        store: Store | None = None,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        source: Source | None = None,
    ) -> None:
        """``source``: feed the store from this instead of the API server or --manifests
        (tests fill the store directly); Ingress status and Events are then only logged."""
        self.options = options
        self.store = store or Store()
        self.clock = clock or MonotonicClock()
        self.metrics = metrics or Metrics(controller_class=options.classes.controller_class,
                                          namespace=options.election_namespace, pod=options.identity,
                                          per_host=options.metrics_per_host)  # fmt: skip
        self.layout = Layout.at(options.config_dir)
        self.nginx = Nginx(options.nginx_binary, self.layout, on_restart=self._nginx_restarted)
        resolvers = options.resolvers if options.resolvers is not None else resolvers_from()
        self.renderer = Renderer(
            self.layout,
            Listen(options.bind_addresses, options.http_port, options.https_port),
            resolvers,
            Path(options.templates_dir) if options.templates_dir else None,
            stream_modules=tuple(m for m in (options.stream_module, options.stream_js_module) if m),
            lua_modules=options.lua_modules,
            request_metrics=options.enable_metrics,
        )
        self.applier = Applier(self.layout, self.nginx, self.metrics, reload_timeout=options.reload_timeout,
                               pooler=self.renderer.pooler)  # fmt: skip
        self.api: ApiClient | None = None
        self.source: Source | None = source
        self.events = EventRecorder(None, self.metrics, controller=options.classes.controller_class,
                                    instance=options.identity)  # fmt: skip
        self.status = StatusWriter(None, self.metrics)
        # Gateway API (ingress/gateway): off with an empty --gateway-controller-name, and in API
        # mode when the cluster lacks its CRDs (start() finds out).
        self.gateway: FrontEnd | None = None
        if options.gateway_controller_name:
            self.gateway = FrontEnd(self.store, options.gateway_controller_name, dict(options.listener_port_map),
                                    self._reserved_ports, self._gateway_addresses,
                                    {options.http_port: "HTTP", options.https_port: "HTTPS"})  # fmt: skip
        self.reconciler = Reconciler(self.store, self.snapshot, self.renderer, self.applier, self.events, self.metrics,
                                     self._extend)  # fmt: skip
        self.elector: LeaderElector | None = None
        self.httpd = StatusServer(
            options.healthz_address, options.healthz_port, options.metrics_port, self.metrics, self.health,
            self.statuses,
        )
        self.webhook: AdmissionServer | None = None
        if options.validating_webhook is not None:
            reviewer = Reviewer(self.store, options.classes, self.settings, self.reconciler.hosts,
                                options.watch_namespace)  # fmt: skip
            address, port = options.validating_webhook
            self.webhook = AdmissionServer(address, port, options.validating_webhook_certificate,
                                           options.validating_webhook_key, reviewer)  # fmt: skip
        self._debouncer: Debouncer | None = None
        self._status_kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._retry = Backoff(initial=0.5, cap=30.0)
        self._retry_task: asyncio.Task[None] | None = None
        self._settings_problems: list[str] = []
        self._default_cert_problem = ""

    # What tests and the status writer read; the reconciler and applier own them.
    @property
    def model(self) -> Model | None:
        return self.applier.model

    @property
    def running_hash(self) -> str:
        return self.applier.running_hash

    @property
    def culprits(self) -> dict[str, tuple[str, str]]:
        return self.reconciler.culprits

    @property
    def reconciles(self) -> int:
        return self.reconciler.reconciles

    # ------------------------------------------------------------------ lifecycle

    def watch_specs(self) -> list[WatchSpec]:
        o = self.options
        scope = (o.watch_namespace,) if o.watch_namespace else ()

        def with_ns(extra: str | None) -> tuple[str, ...]:
            if not scope or extra is None:
                return scope
            return tuple(sorted({*scope, extra}))

        specs = [
            WatchSpec("ingresses", scope),
            WatchSpec("ingressclasses"),
            WatchSpec("services", with_ns(o.publish_service[0] if o.publish_service else None)),
            WatchSpec("endpointslices", scope),
            # Every type an Ingress may name (TLS pairs; Opaque ones for auth-secret and
            # auth-tls-secret), as ingress-nginx, but Helm's releases and service-account tokens.
            # Only the keys an Ingress reads are kept (kubewatch's converter), never tokens.
            WatchSpec(
                "secrets",
                with_ns(o.default_ssl_certificate[0] if o.default_ssl_certificate else None),
                field_selector="type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token",
            ),
        ]
        if self.gateway is not None:
            specs.extend(WatchSpec(k.name, () if not k.namespaced else scope) for k in GATEWAY_WATCHED)
        # Ingresses name ConfigMaps too (auth-proxy-set-headers): those of the watched
        # namespaces, as ingress-nginx, with the controller's own.
        named = (o.configmap, o.tcp_services_configmap, o.udp_services_configmap)
        maps = sorted({m for m in named if m is not None})
        specs.append(WatchSpec("configmaps", tuple(sorted({*scope, *(ns for ns, _ in maps)})) if scope else ()))
        return specs

    async def start(self) -> None:
        o = self.options
        try:
            self.layout.prepare()
        except (OSError, ValueError) as exc:
            raise ControllerError(f"config dir {self.layout.root}: {exc}") from exc
        try:
            version = await check_binary(o.nginx_binary)
            await check_lua(o.nginx_binary, self.layout, o.lua_modules)
        except NginxError as exc:
            raise ControllerError(str(exc)) from exc
        self.applier.prepare()
        log.info("using %s (%s), config dir %s", o.nginx_binary, version, self.layout.root)
        # Subscribed before the source starts, so no change can slip between the first
        # reconcile and the loop.
        await self._check_gateway_api()
        watched = WATCHED + (GATEWAY_WATCHED if self.gateway is not None else ())
        queue = self.store.subscribe_queue(watched)
        self._debouncer = Debouncer(queue, self.clock, quiet=o.debounce, max_delay=o.max_delay,
                                    relevant=calls_for_rebuild)  # fmt: skip
        specs = self.watch_specs()
        if self.source is None and o.manifests is not None:
            self.source = ManifestSource(self.store, o.manifests, specs=specs, interval=o.manifest_interval)
        elif self.source is None:
            try:
                config = ClusterConfig.from_kubeconfig(o.kubeconfig) if o.kubeconfig else ClusterConfig.in_cluster()
            except KubeError as exc:
                raise ControllerError(str(exc)) from exc
            self.api = ApiClient(config)
            self.source = ApiSource(self.store, config, specs)
            self.events.api = self.api
            self.status.api = self.api
            self.elector = LeaderElector(
                self.api,
                o.election_namespace,
                o.election_id,
                o.identity,
                timing=o.lease,
                clock=self.clock,
                on_change=self._leadership_changed,
            )
        # Up before the first sync: /healthz then says what is missing, /metrics is there.
        await self.httpd.start()
        await self.source.start()
        if not await self.store.wait_synced(timeout=o.sync_timeout):
            raise ControllerError(f"the watched objects did not sync within {o.sync_timeout}s")
        queue.take()  # the initial lists: the first reconcile reads the store anyway
        if not await self.reconcile():
            raise ControllerError("the initial configuration could not be applied; see the log above")
        # What the first pass built (the store, the model of every host, rendered blocks) lives as
        # long as the controller: keep it out of the collector's full passes, which at 10,000
        # Ingresses took a tenth of a second at random points of later passes.
        gc.freeze()
        if self.webhook is not None:
            # After the first pass: conflicts are judged against the hosts it built.
            try:
                await self.webhook.start()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise ControllerError(f"validating webhook: {exc}") from exc
        self._tasks.append(asyncio.create_task(self._reconcile_loop(), name="ingress reconcile"))
        self._tasks.append(asyncio.create_task(self._status_loop(), name="ingress status"))
        if self.elector is not None:
            self._tasks.append(asyncio.create_task(self.elector.run(), name="ingress lease"))
        self._tasks.append(asyncio.create_task(self._metrics_loop(), name="ingress request metrics"))
        if not (o.publish_service or o.publish_status_address):
            log.info("neither --publish-service nor --publish-status-address: Ingress status is not written")

    async def _check_gateway_api(self) -> None:
        """Gateway API off, said once, when the cluster does not serve its CRDs: Ingresses go on."""
        o = self.options
        if self.source is not None or o.manifests is not None or self.gateway is None:
            return  # a manifest directory (or a test's source) has whatever kinds it has
        try:
            config = ClusterConfig.from_kubeconfig(o.kubeconfig) if o.kubeconfig else ClusterConfig.in_cluster()
        except KubeError:
            return  # start() reports it
        async with ApiClient(config) as api:
            try:
                problem = await unusable(api)
            except KubeError as exc:
                problem = f"cannot tell whether the Gateway API is installed ({exc})"
        if problem is not None:
            log.warning("%s: serving Ingresses only", problem)
            self.gateway = None

    def _reserved_ports(self) -> frozenset[int]:
        o = self.options
        return frozenset(p for p in (o.healthz_port, o.metrics_port) if p and p > 0)

    def _gateway_addresses(self) -> tuple[str, ...]:
        published = self.publish_addresses()
        if published:
            return tuple(a.get("ip") or a.get("hostname", "") for a in published)
        return tuple(a for a in self.options.bind_addresses if a not in ("0.0.0.0", "::"))

    def _extend(self, model: Model, snapshot: Snapshot) -> Model:
        return model if self.gateway is None else self.gateway.extend(model, snapshot)

    def statuses(self) -> list[dict[str, Any]]:
        """GET /status: every object whose status we own, in the API's shape."""
        items: list[dict[str, Any]] = list(self.gateway.statuses()) if self.gateway is not None else []
        model, addresses = self.model, self.publish_addresses() or []
        for key in model.ingresses if model is not None else ():
            ns, name = key.split("/", 1)
            ing = self.store.get(INGRESSES, ns, name)
            if isinstance(ing, Ingress):
                items.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                              "metadata": {"namespace": ns, "name": name, "generation": ing.generation},
                              "status": {"loadBalancer": {"ingress": addresses}}})  # fmt: skip
        return items

    async def _metrics_loop(self) -> None:
        """Once a second: the request counts nginx's workers stored, and its connection counters."""
        while True:
            await asyncio.sleep(METRICS_INTERVAL)
            if not self.nginx.running:
                continue
            if self.options.enable_metrics:
                text = await status_get(self.layout, "/portolan/metrics")
                if text is not None:
                    self.metrics.requests.take(text)
            status = await status_get(self.layout, "/nginx_status")
            if status is not None:
                self.metrics.requests.take_status(status)

    async def stop(self) -> None:
        if self.webhook is not None:
            await self.webhook.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await cancel_quietly(self._retry_task)
        if self.elector is not None:
            await self.elector.release()
        await self.httpd.stop()
        await self.nginx.stop(graceful=self.options.shutdown_grace)
        if self.source is not None:
            await self.source.stop()
        await self.events.drain()
        if self.api is not None:
            await self.api.close()

    async def __aenter__(self) -> Controller:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def health(self) -> tuple[bool, str]:
        if not self.store.synced:
            return False, "objects not synced yet"
        if not self.nginx.running:
            return False, "nginx is not running"
        if not self.running_hash:
            return False, "no configuration applied yet"
        if not self.applier.channel.synced:
            return False, "live data not in nginx yet"
        return True, "ok"

    def _nginx_restarted(self) -> None:
        """A new master has empty shared dicts: the next pass sends all the live data."""
        self.metrics.nginx_restarts.inc()
        self.applier.channel.reset()
        if self._debouncer is not None:
            self._debouncer.poke()

    # ------------------------------------------------------------------ loops

    async def _reconcile_loop(self) -> None:
        assert self._debouncer is not None
        while True:
            await self._debouncer.wait()
            try:
                ok = await self.reconcile()
            except Exception:  # a bug must not stop reconciling for good
                log.exception("reconcile failed")
                ok = False
            if ok:
                self._retry.reset()
            else:
                self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._retry_task is not None and not self._retry_task.done():
            return
        delay = self._retry.next()
        log.info("retrying the configuration in %.1fs", delay)

        async def later() -> None:
            await self.clock.sleep(delay)
            if self._debouncer is not None:
                self._debouncer.poke()

        self._retry_task = asyncio.create_task(later(), name="ingress retry")

    def _leadership_changed(self, leader: bool) -> None:
        self.metrics.leadership(self.options.election_id, leader)
        if leader:
            self._status_kick.set()

    async def _status_loop(self) -> None:
        interval = self.options.status_update_interval
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event fires, and stop() would then wait for the next interval.
            try:
                async with asyncio.timeout(interval):
                    await self._status_kick.wait()
            except TimeoutError:
                pass
            self._status_kick.clear()
            if self.elector is not None and not self.elector.is_leader:
                continue
            try:
                await self.sync_status()
                if self.gateway is not None and self.api is not None:
                    await self.gateway.write(self.api)
            except Exception:
                log.exception("status update failed")

    def publish_addresses(self) -> list[Address] | None:
        o = self.options
        if o.publish_status_address:
            return addresses_from_flag(o.publish_status_address)
        if o.publish_service is not None:
            return addresses_from_service(self.store.service(*o.publish_service))
        return None

    async def sync_status(self) -> int:
        """Write our address to the Ingresses being served (leader only; the caller checks)."""
        if self.model is None:
            return 0

        def lookup(namespace: str, name: str) -> Ingress | None:
            ing = self.store.get(INGRESSES, namespace, name)
            return ing if isinstance(ing, Ingress) else None

        served = (lookup(*key.split("/", 1)) for key in self.model.ingresses)
        ours = [ing for ing in served if ing is not None]
        return await self.status.sync(ours, lookup, self.publish_addresses())

    # ------------------------------------------------------------------ reconcile

    def settings(self) -> NginxSettings:
        settings, problems = parse_settings(self._config_map_data(self.options.configmap))
        if problems != self._settings_problems:
            self._settings_problems = problems
            for problem in problems:
                log.warning("%s", problem)
        return settings

    def default_cert(self) -> certs.CertPair:
        ref = self.options.default_ssl_certificate
        problem = ""
        pair = self.applier.fallback
        if ref is not None:
            secret = self.store.get(SECRETS, *ref)
            if not isinstance(secret, Secret):
                problem = f"--default-ssl-certificate {ref[0]}/{ref[1]} not found"
            else:
                try:
                    pair = certs.pair_from_secret(secret)
                except certs.CertError as exc:
                    problem = f"--default-ssl-certificate {ref[0]}/{ref[1]}: {exc}"
        if problem != self._default_cert_problem:
            self._default_cert_problem = problem
            if problem:
                log.warning("%s; using a self-signed certificate", problem)
        return pair

    def snapshot(self, view: FrozenView, parsed: ParseCache) -> Snapshot:
        """Our Ingresses and what they refer to, through ``view``; ``parsed`` carries what
        earlier reconciles parsed."""
        ingresses = (i for i in self.store.iter(INGRESSES) if isinstance(i, Ingress))
        classes = (c for c in self.store.iter(INGRESS_CLASSES) if isinstance(c, IngressClass))
        ours = owned(ingresses, classes, self.options.classes)
        o = self.options
        reserved = frozenset(p for p in (o.http_port, o.https_port, o.healthz_port, o.metrics_port) if p and p > 0)
        tcp, udp = self._config_map_data(o.tcp_services_configmap), self._config_map_data(o.udp_services_configmap)
        return Snapshot(tuple(ours), view, self.settings(), self.default_cert(), tcp, udp, reserved, parsed)

    def _config_map_data(self, ref: tuple[str, str] | None) -> dict[str, str] | None:
        if ref is None:
            return None
        cm = self.store.get(CONFIG_MAPS, *ref)
        return cm.data if isinstance(cm, ConfigMap) else None

    async def reconcile(self) -> bool:
        """One pass; True when nginx serves the configuration and data of the current objects."""
        try:
            ok = await self.reconciler.reconcile()
            if self.gateway is not None and ok != self.gateway.programmed:
                # Programmed follows nginx: judged again once it serves (or stops serving) the pass.
                self.gateway.programmed = ok
                self.gateway.refresh()
            return ok
        finally:
            # Status may need writing even when nginx did not change: the published
            # Service's address, an Ingress's status edited by someone else.
            self._status_kick.set()


async def cancel_quietly(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
