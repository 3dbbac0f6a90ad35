"""Kubernetes objects for the ingress targets: the cluster they review and render against (an
IngressClass of ours, Services with ready endpoints) and the store that holds it."""

from __future__ import annotations

from typing import Any

from kubewatch import Store
from kubewatch.kinds import BY_TYPE

Obj = dict[str, Any]
CONTROLLER = "portolan.dev/ingress-controller"
PREFIX = "nginx.ingress.kubernetes.io/"
SERVICES = ("a", "b")


def put(store: Store, *objs: Obj) -> None:
    for obj in objs:
        kind = BY_TYPE[(obj["apiVersion"], obj["kind"])]
        store.upsert(kind.name, kind.convert(obj))


def ingress_class() -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "portolan"},
            "spec": {"controller": CONTROLLER}}  # fmt: skip


def service(name: str, namespace: str = "default") -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10",
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}  # fmt: skip


def endpoint_slice(svc: str, ip: str, namespace: str = "default") -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{svc}-slice", "namespace": namespace, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def ingress(name: str, host: str | None, path: str, service_name: str = "a", annotations: dict[str, str] | None = None,
            created: str = "2024-01-01T00:00:00Z") -> Obj:
    rule: Obj = {"http": {"paths": [{"path": path, "pathType": "Prefix",
                                     "backend": {"service": {"name": service_name, "port": {"number": 80}}}}]}}
    if host is not None:
        rule["host"] = host
    meta: Obj = {"name": name, "namespace": "default", "creationTimestamp": created, "uid": f"uid-{name}",
                 "resourceVersion": "1", "annotations": annotations or {}}  # fmt: skip
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": {"ingressClassName": "portolan", "rules": [rule]}}  # fmt: skip


def cluster(namespace: str = "default", services: tuple[str, ...] = SERVICES) -> Store:
    """Our IngressClass and the services (a and b), each with one ready endpoint on 127.0.0.0/8."""
    store = Store()
    put(store, ingress_class())
    for i, name in enumerate(services):
        put(store, service(name, namespace), endpoint_slice(name, f"127.0.0.{10 + i}", namespace))
    return store
