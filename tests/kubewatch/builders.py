"""Kubernetes objects as the API carries them, for tests: small builders with defaults."""

from __future__ import annotations

import base64
from typing import Any


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def service(
    name: str,
    ns: str = "default",
    *,
    ports: list[dict[str, Any]] | None = None,
    cluster_ip: str | None = None,
    cluster_ips: list[str] | None = None,
    type: str | None = None,
    external_name: str | None = None,
    publish_not_ready: bool = False,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": ports if ports is not None else [{"name": "http", "port": 80}]}
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    if cluster_ips is not None:
        spec["clusterIPs"] = cluster_ips
    if type is not None:
        spec["type"] = type
    if external_name is not None:
        spec["externalName"] = external_name
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def endpoint(
    ip: str,
    *,
    ready: bool | None = None,
    hostname: str | None = None,
    pod: str | None = None,
    node: str | None = None,
    zone: str | None = None,
) -> dict[str, Any]:
    ep: dict[str, Any] = {"addresses": [ip]}
    if ready is not None:
        ep["conditions"] = {"ready": ready}
    if hostname:
        ep["hostname"] = hostname
    if pod:
        ep["targetRef"] = {"kind": "Pod", "name": pod}
    if node:
        ep["nodeName"] = node
    if zone:
        ep["zone"] = zone
    return ep


def endpoint_slice(
    name: str,
    ns: str = "default",
    *,
    service: str | None = None,
    endpoints: list[dict[str, Any]] | None = None,
    ports: list[dict[str, Any]] | None = None,
    address_type: str = "IPv4",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    all_labels = dict(labels or {})
    if service:
        all_labels["kubernetes.io/service-name"] = service
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": all_labels},
        "addressType": address_type,
        "endpoints": endpoints if endpoints is not None else [],
        "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def pod(
    name: str,
    ns: str = "default",
    ip: str | None = None,
    *,
    phase: str = "Running",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": status,
    }


def ingress(name: str, ns: str = "default", *, host: str = "example.com", service: str = "web", port: int = 80) -> dict:
    backend = {"service": {"name": service, "port": {"number": port}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": ns,
            "annotations": {"nginx.ingress.kubernetes.io/ssl-redirect": "false"},
        },
        "spec": {
            "ingressClassName": "portolan",
            "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}],
        },
    }


def ingress_class(name: str, controller: str = "portolan.dev/ingress", default: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": meta,
        "spec": {"controller": controller},
    }


def secret(name: str, ns: str = "default", data: dict[str, bytes] | None = None, type: str = "Opaque") -> dict:
    encoded = {k: base64.b64encode(v).decode() for k, v in (data or {}).items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": type,
        "data": encoded,
    }


def config_map(name: str, ns: str = "default", data: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": data or {},
    }


def with_meta(obj: dict[str, Any], **meta: Any) -> dict[str, Any]:
    """A copy with metadata fields added (as the API server would: uid, resourceVersion...)."""
    return {**obj, "metadata": {**obj["metadata"], **meta}}
