"""One reconcile: a frozen view of the store -> model -> render -> apply, and bisection when
``nginx -t`` refuses the result.

A candidate that fails ``nginx -t`` never replaces the running configuration. The reconciler
then finds the Ingress responsible by bisection over Ingress age: configurations built from
the oldest k Ingresses are tested until the smallest failing k is found; Ingress k is named
(log line, Kubernetes Event, metric), left out, and the rest is tried again. It stays left out
until it changes (a new resourceVersion). If even the configuration without any Ingress
fails, nobody is blamed and the last good configuration keeps serving.

Every model of one reconcile, bisection's included, is built from the same frozen view: the
store goes on changing while ``nginx -t`` runs, and a trial built from other objects would
blame the wrong Ingress.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from ingress.applier import Applier
from ingress.events import EventRecorder
from ingress.metrics import Metrics
from ingress.model import Model, ParseCache, Snapshot, ingress_key
from ingress.modelcache import HostCache, build
from ingress.nginx import CheckResult
from ingress.render import Renderer
from kubewatch import INGRESSES, EndpointSlice, Service, Store

log = logging.getLogger(__name__)

MAX_CULPRITS = 32  # per reconcile; more than that and something global is wrong
REASON_INVALID = "InvalidIngress"
REASON_CONFIG_TEST = "ConfigTestFailed"


class FrozenView:
    """The store as the first build of a reconcile saw it: every look-up is remembered, so
    later builds of the same reconcile (which only leave Ingresses out) see the same objects."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.generations = dict(store.generations)  # as the view begins
        self._got: dict[tuple[str, str, str], object | None] = {}
        self._services: dict[tuple[str, str], Service | None] = {}
        self._slices: dict[tuple[str, str], tuple[EndpointSlice, ...]] = {}

    def get(self, kind: str, namespace: str, name: str) -> object | None:
        key = (kind, namespace, name)
        if key not in self._got:
            self._got[key] = self._store.get(kind, namespace, name)
        return self._got[key]

    def service(self, namespace: str, name: str) -> Service | None:
        key = (namespace, name)
        if key not in self._services:
            self._services[key] = self._store.service(namespace, name)
        return self._services[key]

    def slices_for_service(self, namespace: str, service: str) -> tuple[EndpointSlice, ...]:
        key = (namespace, service)
        if key not in self._slices:
            self._slices[key] = self._store.slices_for_service(namespace, service)
        return self._slices[key]


class Reconciler:
    """Brings nginx to the model of the current objects."""

    def __init__(
        self,
        store: Store,
        snapshot: Callable[[FrozenView, ParseCache], Snapshot],
        renderer: Renderer,
        applier: Applier,
        events: EventRecorder,
        metrics: Metrics,
        extend: Callable[[Model, Snapshot], Model] | None = None,
    ) -> None:
        """``extend``: what another front end (ingress/gateway) adds to each model built."""
        self.store = store
        self._extend = extend
        self._snapshot = snapshot
        self.renderer = renderer
        self.applier = applier
        self.events = events
        self.metrics = metrics
        self.reconciles = 0
        # Ingresses that made nginx -t fail: "ns/name" -> (resourceVersion, nginx's message).
        self.culprits: dict[str, tuple[str, str]] = {}
        self.phases: dict[str, float] = {}  # seconds per step of the last reconcile, for the log
        self._notes: set[str] = set()
        # Each Ingress parsed once per version of its record, across reconciles.
        self._parsed: ParseCache = {}
        self.hosts = HostCache()  # hosts built by earlier passes, reused while their objects are the same

    def snapshot(self) -> Snapshot:
        snap = self._snapshot(FrozenView(self.store), self._parsed)
        if len(self._parsed) > len(snap.ingresses):  # forget Ingresses gone for good
            current = {ingress_key(i) for i in snap.ingresses}
            for gone in [k for k in self._parsed if k not in current]:
                del self._parsed[gone]
        return snap

    async def reconcile(self) -> bool:
        """One pass; True when nginx serves the configuration and data of the current objects
        (with any culprit left out)."""
        began = time.monotonic()
        self.reconciles += 1
        self.metrics.syncs.inc()
        snapshot = self.snapshot()
        self.metrics.owned.set(len(snapshot.ingresses))
        versions = {ingress_key(i): i.resource_version for i in snapshot.ingresses}
        # A culprit is retried once it changes (or it is gone for good).
        self.culprits = {k: v for k, v in self.culprits.items() if versions.get(k) == v[0]}
        model = self._build(snapshot, set(self.culprits))
        modelled = time.monotonic()
        rendered = self.renderer.render(model)
        self.phases = {"model": modelled - began, "render": time.monotonic() - modelled}
        applier = self.applier
        try:
            if rendered.hash == applier.running_hash and applier.nginx.running:
                result = await applier.update(model)  # endpoints, weights, certificates: no reload
                self._report(model)
                return result.ok
            # nginx -t results of this pass, by config hash: bisection meets the candidates of
            # apply() again (the whole failing one; the passing one without its youngest culprit).
            checked: dict[str, CheckResult] = {}
            result = await applier.apply(model, rendered, checked)
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
                model = self._build(snapshot, set(self.culprits))
                rendered = self.renderer.render(model)
                if rendered.hash == applier.running_hash and applier.nginx.running:
                    result = await applier.update(model)
                    break
                result = await applier.apply(model, rendered, checked)
            self._report(model)
            if not result.ok:
                self.metrics.failed()
                if result.stage == "reload":
                    self.metrics.reload_failures.labels("reload").inc()
                return False
            return True
        finally:
            self.metrics.sync_seconds.observe(time.monotonic() - began)

    def _build(self, snapshot: Snapshot, left_out: set[str]) -> Model:
        model = build(snapshot, left_out, self.hosts)
        return model if self._extend is None else self._extend(model, snapshot)

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
            candidate = self._build(snapshot, base | set(served[n:]))
            rendered = self.renderer.render(candidate)
            result = checked.get(rendered.hash)
            if result is None:
                result = checked[rendered.hash] = await self.applier.check(rendered)
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


_CANDIDATE = re.compile(r"\S*/\.nginx\.conf\.\w+\.tmp")


def _last_line(output: str) -> str:
    """nginx's [emerg] line, with the throw-away candidate file named as nginx.conf."""
    lines = [line for line in output.splitlines() if line.strip()]
    emerg = [line for line in lines if "[emerg]" in line]
    return _CANDIDATE.sub("nginx.conf", (emerg or lines or ["(no output)"])[-1].strip())
