"""Builders for Gateway API objects (API JSON dicts, as the emulator and manifests take them)."""

from __future__ import annotations

from typing import Any

from kubewatch import Store
from tests.ingress import objects as o

Obj = dict[str, Any]
V1 = "gateway.networking.k8s.io/v1"
CONTROLLER = "portolan.dev/gateway-controller"
T0 = "2024-01-01T00:00:00Z"


def _meta(name: str, namespace: str | None, created: str, generation: int = 1) -> Obj:
    meta: Obj = {"name": name, "creationTimestamp": created, "generation": generation,
                 "uid": f"uid-{namespace}-{name}", "resourceVersion": "1"}  # fmt: skip
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def gateway_class(name: str = "portolan", controller: str = CONTROLLER) -> Obj:
    return {"apiVersion": V1, "kind": "GatewayClass", "metadata": _meta(name, None, T0),
            "spec": {"controllerName": controller}}  # fmt: skip


def listener(name: str = "http", port: int = 80, protocol: str = "HTTP", hostname: str | None = None,
             allowed: str | None = None, selector: Obj | None = None,
             kinds: list[Obj] | None = None) -> Obj:  # fmt: skip
    out: Obj = {"name": name, "port": port, "protocol": protocol}
    if hostname is not None:
        out["hostname"] = hostname
    if allowed is not None or kinds is not None:
        routes: Obj = {}
        if allowed is not None:
            routes["namespaces"] = {"from": allowed, **({"selector": selector} if selector else {})}
        if kinds is not None:
            routes["kinds"] = kinds
        out["allowedRoutes"] = routes
    return out


def gateway(name: str = "gw", *listeners: Obj, namespace: str = "default", class_name: str = "portolan",
            generation: int = 1) -> Obj:  # fmt: skip
    return {"apiVersion": V1, "kind": "Gateway", "metadata": _meta(name, namespace, T0, generation),
            "spec": {"gatewayClassName": class_name, "listeners": list(listeners or [listener()])}}  # fmt: skip


def parent(name: str = "gw", section: str | None = None, namespace: str | None = None,
           port: int | None = None) -> Obj:  # fmt: skip
    out: Obj = {"name": name}
    if section is not None:
        out["sectionName"] = section
    if namespace is not None:
        out["namespace"] = namespace
    if port is not None:
        out["port"] = port
    return out


def backend(service: str, port: int = 80, weight: int | None = None, namespace: str | None = None,
            kind: str | None = None) -> Obj:  # fmt: skip
    out: Obj = {"name": service, "port": port}
    if weight is not None:
        out["weight"] = weight
    if namespace is not None:
        out["namespace"] = namespace
    if kind is not None:
        out["kind"] = kind
    return out


def match(path: str | None = None, kind: str = "PathPrefix", *, method: str | None = None,
          headers: list[tuple[str, str, str]] | None = None,
          query: list[tuple[str, str, str]] | None = None) -> Obj:  # fmt: skip
    """headers and query: (type, name, value)."""
    out: Obj = {}
    if path is not None:
        out["path"] = {"type": kind, "value": path}
    if method is not None:
        out["method"] = method
    if headers:
        out["headers"] = [{"type": t, "name": n, "value": v} for t, n, v in headers]
    if query:
        out["queryParams"] = [{"type": t, "name": n, "value": v} for t, n, v in query]
    return out


def rule(*backends: Obj, matches: list[Obj] | None = None, filters: list[Obj] | None = None) -> Obj:
    out: Obj = {"backendRefs": list(backends)}
    if matches is not None:
        out["matches"] = matches
    if filters is not None:
        out["filters"] = filters
    return out


def route(name: str, *rules: Obj, hostnames: list[str] | None = None, parents: list[Obj] | None = None,
          namespace: str = "default", created: str = T0, generation: int = 1) -> Obj:  # fmt: skip
    spec: Obj = {"parentRefs": parents if parents is not None else [parent()], "rules": list(rules)}
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {"apiVersion": V1, "kind": "HTTPRoute", "metadata": _meta(name, namespace, created, generation),
            "spec": spec}  # fmt: skip


def grant(name: str, namespace: str, from_namespace: str, to_kind: str = "Service", to_name: str | None = None,
          from_kind: str = "HTTPRoute") -> Obj:  # fmt: skip
    to: Obj = {"group": "", "kind": to_kind}
    if to_name is not None:
        to["name"] = to_name
    return {"apiVersion": V1, "kind": "ReferenceGrant", "metadata": _meta(name, namespace, T0),
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": from_kind, "namespace": from_namespace}],
                     "to": [to]}}  # fmt: skip


def namespace(name: str, labels: dict[str, str] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def remove(store: Store, obj: Obj) -> None:
    meta = obj["metadata"]
    store.delete(o.kind_of(obj), meta.get("namespace", ""), meta["name"])
