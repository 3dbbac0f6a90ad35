"""The Gateway API front end: GatewayClass, Gateway, HTTPRoute and ReferenceGrant into the
same model, renderer, nginx and live data as Ingresses.

``translate`` (pure) turns one pass's objects into listener server blocks, live records
(match tables, weighted routes, upstreams) and the status each object is owed;
``FrontEnd`` runs it on every reconcile (Reconciler's ``extend``) and keeps what it found for
``GET /status`` and the status writer (``writer``, lease holder only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ingress.gateway.translate import GatewayModel, Inputs, translate
from ingress.model import Model, Snapshot
from kubewatch import (
    GATEWAY_CLASSES,
    GATEWAY_KINDS,
    GATEWAYS,
    HTTP_ROUTES,
    NAMESPACES,
    REFERENCE_GRANTS,
    ApiClient,
    ApiError,
    GenericObject,
    Kind,
    KubeError,
    Namespace,
    Store,
)

log = logging.getLogger(__name__)

DEFAULT_CONTROLLER_NAME = "portolan.dev/gateway-controller"
WATCHED = (*GATEWAY_KINDS, NAMESPACES)  # namespace labels drive allowedRoutes selectors


def _objects(store: Store, kind: str) -> tuple[GenericObject, ...]:
    return tuple(o for o in store.iter(kind) if isinstance(o, GenericObject))


async def unusable(api: ApiClient) -> str | None:
    """Why the Gateway API cannot be watched (None: it can): its CRDs not installed
    (gateway.networking.k8s.io/v1 not served), or no RBAC to read them (deploy/gateway)."""
    try:
        found = await api.request("GET", "/apis/gateway.networking.k8s.io/v1")
        names = {r.get("name") for r in (found or {}).get("resources", []) if isinstance(r, dict)}
        if not {k.name for k in GATEWAY_KINDS} <= names:
            return "the Gateway API CRDs (gateway.networking.k8s.io/v1) are not installed"
        await api.request("GET", GATEWAY_CLASSES.collection_path(), params={"limit": "1"})
    except ApiError as exc:
        if exc.status == 404:
            return "the Gateway API CRDs (gateway.networking.k8s.io/v1) are not installed"
        if exc.status == 403:
            return "no right to read the Gateway API objects (see deploy/gateway/rbac.yaml)"
        raise
    return None


class FrontEnd:
    """Gateway API objects of the store -> what they add to each model, and their status."""

    def __init__(self, store: Store, controller_name: str, port_map: dict[int, int],
                 reserved: Callable[[], frozenset[int]], addresses: Callable[[], tuple[str, ...]],
                 ingress_ports: dict[int, str] | None = None) -> None:  # fmt: skip
        """``reserved``: nginx ports no listener may take; ``ingress_ports``: the Ingresses'
        (port -> "HTTP"/"HTTPS"), which listeners of that protocol share with them."""
        self.ingress_ports = ingress_ports or {}
        self.store = store
        self.controller_name = controller_name
        self.port_map = port_map
        self.reserved = reserved
        self.addresses = addresses
        self.last = GatewayModel()
        self.programmed = False  # whether nginx serves the last pass's configuration
        self._snapshot: Snapshot | None = None

    def refresh(self) -> None:
        """The status again, from the last pass's objects (after ``programmed`` changed)."""
        if self._snapshot is not None:
            self.extend(Model((), (), (), "", self._snapshot.settings, ()), self._snapshot)

    def extend(self, model: Model, snapshot: Snapshot) -> Model:
        self._snapshot = snapshot
        namespaces = {n.name: n for n in self.store.iter(NAMESPACES) if isinstance(n, Namespace)}
        inputs = Inputs(_objects(self.store, GATEWAY_CLASSES.name), _objects(self.store, GATEWAYS.name),
                        _objects(self.store, HTTP_ROUTES.name), _objects(self.store, REFERENCE_GRANTS.name),
                        namespaces, self.controller_name, self.port_map, self.reserved(), self.addresses(),
                        self.programmed, self.ingress_ports,
                        frozenset(s.host for s in model.servers if not s.is_catch_all))  # fmt: skip
        found = self.last = translate(inputs, snapshot.lookup)
        if not found.listeners and not found.records:
            return model
        # An upstream both front ends name is the same Service port: one record serves both.
        upstreams = {u.name: u for u in found.upstreams.values()}
        upstreams.update({u.name: u for u in model.upstreams})
        certificates = {c.digest: c for c in (*model.certificates, *found.certificates.values())}
        return replace(model, upstreams=tuple(upstreams[k] for k in sorted(upstreams)),
                       certificates=tuple(certificates[k] for k in sorted(certificates)),
                       listeners=found.listeners, extra_records=tuple(sorted(found.records.items())),
                       notes=model.notes + tuple(found.notes))  # fmt: skip

    def statuses(self) -> list[dict[str, Any]]:
        """The status of every object we own, in the API's shape (GET /status)."""
        return self.last.statuses

    async def write(self, api: ApiClient) -> int:
        """Write the status that differs from what the objects hold (lease holder only); the
        number of objects written. A route's parents[] entries of other controllers are kept,
        and ours go from routes that no longer name a Gateway of ours."""
        written = 0
        kinds = {"GatewayClass": GATEWAY_CLASSES, "Gateway": GATEWAYS, "HTTPRoute": HTTP_ROUTES}
        routes: set[tuple[str, str]] = set()
        for item in self.last.statuses:
            kind, meta = kinds[item["kind"]], item["metadata"]
            current = self.store.get(kind.name, meta.get("namespace", ""), meta["name"])
            if kind is HTTP_ROUTES:
                routes.add((meta["namespace"], meta["name"]))
            if not isinstance(current, GenericObject) or current.generation != meta["generation"]:
                continue  # changed since: the next pass judges it
            status = dict(item["status"])
            if kind is HTTP_ROUTES:
                status["parents"] = self._others(current) + status["parents"]
            written += await self._put(api, kind, current, status)
        for route in _objects(self.store, HTTP_ROUTES.name):
            if (route.namespace, route.name) not in routes:
                others = self._others(route)
                if len(others) != len(route.status.get("parents") or []):
                    written += await self._put(api, HTTP_ROUTES, route, {**route.status, "parents": others})
        return written

    def _others(self, route: GenericObject) -> list[Any]:
        """The route's parents[] entries that are not ours (parents is atomic: we write them back)."""
        return [p for p in route.status.get("parents") or []
                if not (isinstance(p, dict) and p.get("controllerName") == self.controller_name)]  # fmt: skip

    async def _put(self, api: ApiClient, kind: Kind, current: GenericObject, status: dict[str, Any]) -> int:
        """1 when ``status`` (differing from the object's) was written, 0 otherwise."""
        if _same(current.status, status):
            return 0
        meta: dict[str, Any] = {"name": current.name, "resourceVersion": current.resource_version}
        if current.namespace:
            meta["namespace"] = current.namespace
        body = {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta,
                "status": _stamped(current.status, status)}  # fmt: skip
        try:
            await api.request("PUT", kind.collection_path(current.namespace or None) + f"/{current.name}/status",
                              body=body)  # fmt: skip
        except KubeError as exc:  # a conflict: the object changed, the next pass writes again
            log.info("status of %s %s: %s", kind.kind, current.name, exc)
            return 0
        return 1


def _strip(value: Any) -> Any:
    """``value`` without lastTransitionTime, which only we add."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _same(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(_strip(current.get(k)) == _strip(v) for k, v in wanted.items())


def _stamped(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """``wanted`` with a lastTransitionTime on every condition: the current one's when its
    status did not change, else now (the API requires it)."""
    import datetime

    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    before: dict[str, str] = {}

    def collect(value: Any, path: str) -> None:
        if isinstance(value, dict):
            if "type" in value and "status" in value and "lastTransitionTime" in value:
                before[f"{path}/{value['type']}/{value['status']}"] = value["lastTransitionTime"]
            for k, v in value.items():
                collect(v, f"{path}/{k}" if k not in ("conditions",) else path)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                collect(v, f"{path}/{v.get('name', i) if isinstance(v, dict) else i}")

    collect(current, "")

    def stamp(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            if "type" in value and "status" in value:
                return {**value, "lastTransitionTime": before.get(f"{path}/{value['type']}/{value['status']}", now)}
            return {k: stamp(v, f"{path}/{k}" if k not in ("conditions",) else path) for k, v in value.items()}
        if isinstance(value, list):
            return [stamp(v, f"{path}/{v.get('name', i) if isinstance(v, dict) else i}") for i, v in enumerate(value)]
        return value

    result: dict[str, Any] = stamp(wanted, "")
    return result
