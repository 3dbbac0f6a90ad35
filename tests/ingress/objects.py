"""Builders for the Kubernetes objects the ingress tests use, as API JSON dicts (what the
emulator takes), and ``record()`` to turn one into a kubewatch record (what a Store holds)."""

from __future__ import annotations

import base64
from typing import Any

from kubewatch import Record, Store
from kubewatch.kinds import BY_TYPE

CONTROLLER = "portolan.dev/ingress-controller"
A = "nginx.ingress.kubernetes.io/"  # the prefix of ingress-nginx's annotations
Obj = dict[str, Any]


def ann(**values: str) -> dict[str, str]:
    """ann(rewrite_target="/") -> {"nginx.ingress.kubernetes.io/rewrite-target": "/"}"""
    return {A + k.replace("_", "-"): v for k, v in values.items()}


def record(obj: Obj) -> Record:
    return BY_TYPE[(obj["apiVersion"], obj["kind"])].convert(obj)


def kind_of(obj: Obj) -> str:
    return BY_TYPE[(obj["apiVersion"], obj["kind"])].name


def put(store: Store, *objs: Obj) -> None:
    for obj in objs:
        store.upsert(kind_of(obj), record(obj))


def remove(store: Store, obj: Obj) -> None:
    meta = obj["metadata"]
    store.delete(kind_of(obj), meta.get("namespace", "default") if kind_of(obj) != "ingressclasses" else "",
                 meta["name"])  # fmt: skip


def backend(service: str, port: int | str) -> Obj:
    key = "number" if isinstance(port, int) else "name"
    return {"service": {"name": service, "port": {key: port}}}


def path(p: str | None, service: str, port: int | str = 80, path_type: str | None = "Prefix") -> Obj:
    out: Obj = {"backend": backend(service, port)}
    if p is not None:
        out["path"] = p
    if path_type is not None:
        out["pathType"] = path_type
    return out


def rule(host: str | None, *paths: Obj) -> Obj:
    out: Obj = {"http": {"paths": list(paths)}}
    if host is not None:
        out["host"] = host
    return out


def ingress(
    name: str,
    *rules: Obj,
    namespace: str = "default",
    class_name: str | None = "portolan",
    annotations: dict[str, str] | None = None,
    tls: list[Obj] | None = None,
    default_backend: Obj | None = None,
    created: str = "2024-01-01T00:00:00Z",
    resource_version: str = "1",
) -> Obj:
    spec: Obj = {}
    if class_name is not None:
        spec["ingressClassName"] = class_name
    if rules:
        spec["rules"] = list(rules)
    if tls is not None:
        spec["tls"] = tls
    if default_backend is not None:
        spec["defaultBackend"] = default_backend
    meta: Obj = {"name": name, "namespace": namespace, "creationTimestamp": created,
                 "uid": f"uid-{namespace}-{name}", "resourceVersion": resource_version}  # fmt: skip
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def ingress_class(name: str = "portolan", controller: str = CONTROLLER, default: bool = False) -> Obj:
    meta: Obj = {"name": name}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": meta,
            "spec": {"controller": controller}}  # fmt: skip


def service(
    name: str,
    *ports: tuple[str, int, int | str],
    namespace: str = "default",
    type: str = "ClusterIP",
    external_name: str | None = None,
    cluster_ip: str | None = "10.96.0.10",
    protocol: str = "TCP",
) -> Obj:
    """ports: (name, port, targetPort)."""
    spec: Obj = {"type": type}
    if ports:
        spec["ports"] = [{"name": n, "port": p, "targetPort": t, "protocol": protocol} for n, p, t in ports]
    if external_name is not None:
        spec["externalName"] = external_name
    elif cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def endpoint_slice(
    svc: str,
    addresses: list[str],
    port: int,
    *,
    port_name: str = "http",
    namespace: str = "default",
    name: str | None = None,
    not_ready: tuple[str, ...] = (),
    protocol: str = "TCP",
    address_type: str = "IPv4",
) -> Obj:
    endpoints = [{"addresses": [a], "conditions": {"ready": True}} for a in addresses]
    endpoints += [{"addresses": [a], "conditions": {"ready": False}} for a in not_ready]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name or f"{svc}-slice", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": [{"name": port_name, "port": port, "protocol": protocol}],
    }  # fmt: skip


def tls_secret(name: str, crt: bytes, key: bytes, namespace: str = "default") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key).decode()},
    }


def config_map(name: str, data: dict[str, str], namespace: str = "default") -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}, "data": data}


def for_api(obj: Obj) -> Obj:
    """The object as a client would POST it: no server-owned metadata."""
    meta = {k: v for k, v in obj["metadata"].items() if k not in ("uid", "resourceVersion", "creationTimestamp")}
    return {**obj, "metadata": meta}
