"""The reconcile loop and the controller's lifecycle.

    store change -> debounce -> snapshot -> model.build (pure) -> render -> same hash? stop
      -> write certificates and a candidate file -> nginx -t -> rename over nginx.conf
      -> SIGHUP -> wait until nginx serves the new hash

A candidate that fails ``nginx -t`` never replaces the running configuration. The controller
then finds the Ingress responsible by bisection over Ingress age: configurations built from
the oldest k Ingresses are tested until the smallest failing k is found; Ingress k is named
(log line, Kubernetes Event, metric), left out, and the rest is tried again. It stays left out
until it changes (a new resourceVersion). If even the configuration without any Ingress
fails, nobody is blamed and the last good configuration keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ingress import certs
from ingress.classes import owned
from ingress.clock import Clock, MonotonicClock
from ingress.debounce import Debouncer
from ingress.events import EventRecorder
from ingress.httpd import StatusServer
from ingress.layout import Layout
from ingress.lease import LeaderElector
from ingress.metrics import Metrics
from ingress.model import Model, Snapshot, build, ingress_key
from ingress.nginx import CheckResult, Nginx, NginxError, check_binary, check_config
from ingress.options import Options, resolvers_from
from ingress.render import Listen, Rendered, Renderer
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
    ClusterConfig,
    ConfigMap,
    Ingress,
    IngressClass,
    KubeError,
    ManifestSource,
    Secret,
    Store,
    WatchSpec,
)

log = logging.getLogger(__name__)

WATCHED = (INGRESSES, INGRESS_CLASSES, SERVICES, ENDPOINT_SLICES, SECRETS, CONFIG_MAPS)
MAX_CULPRITS = 32  # per reconcile; more than that and something global is wrong

REASON_INVALID = "InvalidIngress"
REASON_CONFIG_TEST = "ConfigTestFailed"


class ControllerError(Exception):
    """The controller cannot start."""


class Source(Protocol):
    """What feeds the store: kubewatch's ApiSource or ManifestSource, or a test's own."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ApplyResult:
    ok: bool
    stage: str  # "test" | "reload" | "skip"
    output: str = ""


class Controller:
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
        self.metrics = metrics or Metrics()
        self.layout = Layout.at(options.config_dir)
        self.certfiles = certs.CertFiles(self.layout)
        resolvers = options.resolvers if options.resolvers is not None else resolvers_from()
        self.renderer = Renderer(
            self.layout,
            Listen(options.bind_addresses, options.http_port, options.https_port),
            resolvers,
            Path(options.templates_dir) if options.templates_dir else None,
            stream_module=options.stream_module,
        )
        self.nginx = Nginx(options.nginx_binary, self.layout, on_restart=self.metrics.nginx_restarts.inc)
        self.api: ApiClient | None = None
        self.source: Source | None = source
        self.events = EventRecorder(None, self.metrics, controller=options.classes.controller_class,
                                    instance=options.identity)  # fmt: skip
        self.status = StatusWriter(None, self.metrics)
        self.elector: LeaderElector | None = None
        self.httpd = StatusServer(
            options.healthz_address, options.healthz_port, options.metrics_port, self.metrics, self.health
        )
        self.model: Model | None = None  # the model nginx is serving
        self.running_hash = ""
        self.reconciles = 0
        # Ingresses that made nginx -t fail: "ns/name" -> (resourceVersion, nginx's message).
        self.culprits: dict[str, tuple[str, str]] = {}
        self.phases: dict[str, float] = {}  # seconds per step of the last reconcile, for the log
        self._self_signed = certs.self_signed()
        self._debouncer: Debouncer | None = None
        self._status_kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._retry = Backoff(initial=0.5, cap=30.0)
        self._retry_task: asyncio.Task[None] | None = None
        self._notes: set[str] = set()
        self._settings_problems: list[str] = []
        self._default_cert_problem = ""

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
            # Only TLS Secrets: keeping every token and password of the cluster in memory
            # would serve no Ingress.
            WatchSpec(
                "secrets",
                with_ns(o.default_ssl_certificate[0] if o.default_ssl_certificate else None),
                field_selector="type=kubernetes.io/tls",
            ),
        ]
        named = (o.configmap, o.tcp_services_configmap, o.udp_services_configmap)
        maps = sorted({m for m in named if m is not None})
        if len(maps) == 1:
            specs.append(WatchSpec("configmaps", (maps[0][0],), field_selector=f"metadata.name={maps[0][1]}"))
        elif maps:
            # Several ConfigMaps: one watch per namespace (a field selector names one object).
            specs.append(WatchSpec("configmaps", tuple(sorted({ns for ns, _ in maps}))))
        return specs

    async def start(self) -> None:
        o = self.options
        try:
            self.layout.prepare()
        except (OSError, ValueError) as exc:
            raise ControllerError(f"config dir {self.layout.root}: {exc}") from exc
        try:
            version = await check_binary(o.nginx_binary)
        except NginxError as exc:
            raise ControllerError(str(exc)) from exc
        log.info("using %s (%s), config dir %s", o.nginx_binary, version, self.layout.root)
        # Subscribed before the source starts, so no change can slip between the first
        # reconcile and the loop.
        queue = self.store.subscribe_queue(WATCHED)
        self._debouncer = Debouncer(queue, self.clock, quiet=o.debounce, max_delay=o.max_delay)
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
        self._tasks.append(asyncio.create_task(self._reconcile_loop(), name="ingress reconcile"))
        self._tasks.append(asyncio.create_task(self._status_loop(), name="ingress status"))
        if self.elector is not None:
            self._tasks.append(asyncio.create_task(self.elector.run(), name="ingress lease"))
        if not (o.publish_service or o.publish_status_address):
            log.info("neither --publish-service nor --publish-status-address: Ingress status is not written")

    async def stop(self) -> None:
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
        return True, "ok"

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
        self.metrics.leader.set(1 if leader else 0)
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
        pair = self._self_signed
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

    def snapshot(self) -> Snapshot:
        ingresses = (i for i in self.store.iter(INGRESSES) if isinstance(i, Ingress))
        classes = (c for c in self.store.iter(INGRESS_CLASSES) if isinstance(c, IngressClass))
        ours = owned(ingresses, classes, self.options.classes)
        o = self.options
        reserved = frozenset(p for p in (o.http_port, o.https_port, o.healthz_port, o.metrics_port) if p and p > 0)
        tcp, udp = self._config_map_data(o.tcp_services_configmap), self._config_map_data(o.udp_services_configmap)
        return Snapshot(tuple(ours), self.store, self.settings(), self.default_cert(), tcp, udp, reserved)

    def _config_map_data(self, ref: tuple[str, str] | None) -> dict[str, str] | None:
        if ref is None:
            return None
        cm = self.store.get(CONFIG_MAPS, *ref)
        return cm.data if isinstance(cm, ConfigMap) else None

    async def reconcile(self) -> bool:
        """One pass; True when nginx serves the configuration of the current objects (with
        any culprit left out)."""
        began = time.monotonic()
        self.reconciles += 1
        self.metrics.syncs.inc()
        snapshot = self.snapshot()
        self.metrics.owned.set(len(snapshot.ingresses))
        versions = {ingress_key(i): i.resource_version for i in snapshot.ingresses}
        # A culprit is retried once it changes (or it is gone for good).
        self.culprits = {k: v for k, v in self.culprits.items() if versions.get(k) == v[0]}
        model = build(snapshot, self.culprits)
        modelled = time.monotonic()
        rendered = self.renderer.render(model)
        self.phases = {"model": modelled - began, "render": time.monotonic() - modelled}
        try:
            if rendered.hash == self.running_hash and self.nginx.running:
                self._report(model)
                return True
            # nginx -t results of this pass, by config hash: bisection meets the candidates of
            # apply() again (the whole failing one; the passing one without its youngest culprit).
            checked: dict[str, CheckResult] = {}
            result = await self.apply(model, rendered, checked)
            attempts = 0
            while not result.ok and result.stage == "test" and attempts < MAX_CULPRITS:
                attempts += 1
                self.metrics.reload_failures.labels("config_test").inc()
                log.error("nginx -t rejected the new configuration: %s", result.output)
                found = await self._bisect(snapshot, model, checked)
                if found is None:
                    log.error("the configuration fails without any Ingress: keeping the last good one")
                    break
                self._blame(snapshot, found[0], found[1])
                model = build(snapshot, self.culprits)
                rendered = self.renderer.render(model)
                if rendered.hash == self.running_hash and self.nginx.running:
                    result = ApplyResult(True, "skip")
                    break
                result = await self.apply(model, rendered, checked)
            self._report(model)
            if not result.ok:
                self.metrics.last_reload_success.set(0)
                if result.stage == "reload":
                    self.metrics.reload_failures.labels("reload").inc()
                return False
            return True
        finally:
            # Status may need writing even when nginx did not change: the published
            # Service's address, an Ingress's status edited by someone else.
            self._status_kick.set()
            self.metrics.sync_seconds.observe(time.monotonic() - began)

    def _blame(self, snapshot: Snapshot, key: str, output: str) -> None:
        ing = next(i for i in snapshot.ingresses if ingress_key(i) == key)
        message = f"nginx -t failed with this Ingress, which is left out: {_last_line(output)}"
        self.culprits[key] = (ing.resource_version, message)
        if self.events.warning(ing.namespace, ing.name, ing.uid, ing.resource_version, REASON_CONFIG_TEST, message):
            self.metrics.rejected.labels(ing.namespace, ing.name, "config_test").inc()

    def _report(self, model: Model) -> None:
        for rej in model.rejected:
            ns, name = rej.ingress.split("/", 1)
            if self.events.warning(ns, name, rej.uid, rej.resource_version, REASON_INVALID, rej.reason):
                self.metrics.rejected.labels(ns, name, "invalid").inc()
        self.metrics.rejected_now.set(len(model.rejected) + len(self.culprits))
        notes = set(model.notes)
        for note in sorted(notes - self._notes):
            log.warning("%s", note)
        self._notes = notes
        self.events.forget({(i.namespace, i.name) for i in self.store.iter(INGRESSES)})

    async def _bisect(self, snapshot: Snapshot, model: Model,
                      checked: dict[str, CheckResult]) -> tuple[str, str] | None:
        """The Ingress whose addition (oldest first) makes nginx -t fail, with nginx's
        message; None if the configuration fails even without any Ingress.

        `checked` holds the results of this reconcile's earlier tests by config hash: each further
        culprit's bisection meets the same prefixes again, and `nginx -t` takes seconds at scale."""
        served = list(model.ingresses)
        base = set(self.culprits)

        async def failure(n: int) -> CheckResult | None:
            candidate = build(snapshot, base | set(served[n:]))
            rendered = self.renderer.render(candidate)
            result = checked.get(rendered.hash)
            if result is None:
                result = checked[rendered.hash] = await self.check(candidate, rendered)
            return None if result.ok else result

        if await failure(0) is not None:
            return None
        lo, hi, output = 0, len(served), ""
        while hi - lo > 1:
            mid = (lo + hi) // 2
            result = await failure(mid)
            if result is not None:
                hi, output = mid, result.output
            else:
                lo = mid
        if not output:
            result = await failure(hi)
            if result is None:
                return None  # not reproducible by prefixes: do not blame at random
            output = result.output
        return served[hi - 1], output

    # ------------------------------------------------------------------ nginx

    def _write_certs(self, model: Model) -> None:
        for pair in model.certificates:
            self.certfiles.write(pair)

    def _candidate(self, text: str) -> Path:
        fd, name = tempfile.mkstemp(dir=self.layout.root, prefix=".nginx.conf.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return Path(name)

    async def check(self, model: Model, rendered: Rendered) -> CheckResult:
        """nginx -t on the rendered model, without applying it."""
        self._write_certs(model)
        path = self._candidate(rendered.text)
        try:
            return await check_config(self.options.nginx_binary, self.layout, path)
        finally:
            path.unlink(missing_ok=True)

    async def apply(self, model: Model, rendered: Rendered, checked: dict[str, CheckResult]) -> ApplyResult:
        """nginx -t (unless ``checked`` already holds the result for this hash; the result is
        added to it), then put the candidate in place and reload."""
        self._write_certs(model)
        path = self._candidate(rendered.text)
        t0 = time.monotonic()
        try:
            result = checked.get(rendered.hash)
            if result is None:
                result = checked[rendered.hash] = await check_config(self.options.nginx_binary, self.layout, path)
                self.phases["nginx -t"] = time.monotonic() - t0
            if not result.ok:
                return ApplyResult(False, "test", result.output)
            os.replace(path, self.layout.conf)  # atomic: nginx never reads half a file
        finally:
            path.unlink(missing_ok=True)
        t0 = time.monotonic()
        if not self.nginx.started.is_set():
            await self.nginx.start()
        elif self.nginx.running:
            self.nginx.reload()
        # (not running: the supervisor is restarting it, on the file just written)
        if not await self.nginx.wait_for_hash(rendered.hash, self.options.reload_timeout):
            tail = self.nginx.error_log_tail()
            log.error("nginx did not load configuration %s within %.0fs; error log tail:\n%s",
                      rendered.hash, self.options.reload_timeout, tail)  # fmt: skip
            return ApplyResult(False, "reload", tail)
        self.running_hash = rendered.hash
        self.model = model
        self.metrics.reloads.inc()
        self.metrics.last_reload.set(time.time())
        self.metrics.last_reload_success.set(1)
        self.metrics.set_hash(rendered.hash)
        self.certfiles.collect({pair.digest for pair in model.certificates} | {self._self_signed.digest})
        self.phases["reload"] = time.monotonic() - t0
        # How long each step took: where the time goes when a large cluster is slow to go live.
        log.info("nginx serves configuration %s: %d servers, %d upstreams, %d Ingresses (%s)",
                 rendered.hash, len(model.servers), len(model.upstreams), len(model.ingresses),
                 ", ".join(f"{k} {v:.2f}s" for k, v in self.phases.items()))  # fmt: skip
        return ApplyResult(True, "reload")  # reconcile() kicks the status writer when it finishes


async def cancel_quietly(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


_CANDIDATE = re.compile(r"\S*/\.nginx\.conf\.\w+\.tmp")


def _last_line(output: str) -> str:
    """nginx's [emerg] line, with the throw-away candidate file named as nginx.conf."""
    lines = [line for line in output.splitlines() if line.strip()]
    emerg = [line for line in lines if "[emerg]" in line]
    return _CANDIDATE.sub("nginx.conf", (emerg or lines or ["(no output)"])[-1].strip())
