"""Raw API JSON (dicts from json.loads) -> slim records.

These run once per object on every list page and watch event, so they read fields with plain
``dict.get`` and intern the strings that repeat across objects (namespaces, node names, zones,
protocols, phases): at 100,000 pods the shared strings are a measurable part of the footprint.
Anything of the wrong shape raises InvalidObject naming the field.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import sys
from typing import Any

from kubewatch.errors import InvalidObject
from kubewatch.records import (
    ConfigMap,
    Endpoint,
    EndpointPort,
    EndpointSlice,
    GenericObject,
    Ingress,
    IngressClass,
    Namespace,
    Pod,
    Secret,
    Service,
    ServiceImport,
    ServiceImportPort,
    ServicePort,
)
from kubewatch.services import ip_family, is_ip

# The only Secret keys an ingress controller reads (TLS pair, client CA and CRL, basic-auth
# file). Keeping the rest would hold every token and password in the cluster in memory.
SECRET_KEYS = frozenset({"tls.crt", "tls.key", "ca.crt", "ca.crl", "auth"})
# ... and an auth-map's users: any other key whose value is a password hash as htpasswd files
# hold them (crypt's $1$ $5$ $6$ $y$, bcrypt, Apache's $apr1$, {SHA}/{SSHA}). A hash is what
# nginx reads anyway; a token or password in the same Secret does not look like one.
_PASSWORD_HASH = re.compile(rb"^(?:\$(?:1|2a|2b|2y|5|6|y|apr1)\$|\{S?SHA\})[\x21-\x7e]{8,500}$")


def _kept(key: str, value: bytes) -> bool:
    return key in SECRET_KEYS or (len(key) <= 128 and _PASSWORD_HASH.fullmatch(value.strip()) is not None)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MC_SERVICE_NAME_LABEL = "multicluster.kubernetes.io/service-name"
MC_SOURCE_CLUSTER_LABEL = "multicluster.kubernetes.io/source-cluster"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"

# The annotations a LoadBalancer Service names its external host name with, in the order the external
# k8s_gateway plugin reads them: the first that holds a valid name wins.
HOSTNAME_ANNOTATIONS = ("coredns.io/hostname", "external-dns.alpha.kubernetes.io/hostname")
# A DNS-1123 subdomain (lower case, no trailing dot), as k8s_gateway checks the annotation.
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

_EMPTY: dict[str, Any] = {}


def _meta(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidObject("object is not a mapping")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise InvalidObject("metadata is missing or not a mapping")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidObject("metadata.name is missing or not a string")
    return meta


def _meta_text(meta: dict[str, Any], key: str) -> str:
    """metadata.uid, .resourceVersion or .creationTimestamp as the API server writes them (strings). A
    hand-written YAML manifest gives a number for an unquoted resourceVersion and a datetime for an
    unquoted timestamp: both are read as the string meant (a datetime in the RFC 3339 form the API
    uses), since the oldest-first orders compare these strings with the others'. Anything else is an
    InvalidObject (a mapping there made the webhook's review fail on a type error)."""
    value = meta.get(key)
    if not value:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="seconds") + "Z"
    raise InvalidObject(f"metadata.{key} is not a string")


def _namespace(meta: dict[str, Any]) -> str:
    ns = meta.get("namespace") or "default"
    if not isinstance(ns, str):
        raise InvalidObject("metadata.namespace is not a string")
    return intern(ns)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidObject(f"{where} is not a mapping")
    return value


def _str_map(value: Any, where: str) -> dict[str, str]:
    result = _mapping(value, where)
    for key, item in result.items():
        if not isinstance(item, str):
            raise InvalidObject(f"{where}[{key!r}] is not a string")
    return result


def intern(value: Any) -> str:
    """``sys.intern`` for a field that must be a string: anything else (a mapping where a YAML
    manifest lost its quotes) is an InvalidObject, not a TypeError out of the source."""
    if not isinstance(value, str):
        raise InvalidObject(f"{value!r} where a string belongs")
    return sys.intern(value)


def _strings(value: Any, where: str) -> list[str]:
    """A list of strings (the store indexes them: a mapping among them cannot be a key)."""
    items = _list(value, where)
    if not all(isinstance(item, str) for item in items):
        raise InvalidObject(f"{where} holds something other than strings")
    return items


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidObject(f"{where} is not a list")
    return value


def _int(value: Any, where: str) -> int:
    if type(value) is not int:
        raise InvalidObject(f"{where} is not an integer")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidObject(f"{where} is not a string")
    return value


def hostname_annotation(annotations: dict[str, Any]) -> str:
    """The first of HOSTNAME_ANNOTATIONS that holds a DNS-1123 name of at most 253 characters and
    63-character labels, lower-cased; "" if none does (a comma list, say, is not one name)."""
    for key in HOSTNAME_ANNOTATIONS:
        value = annotations.get(key)
        if not isinstance(value, str):
            continue
        name = value.lower()
        if len(name) <= 253 and all(len(label) <= 63 for label in name.split(".")) and _DNS1123.fullmatch(name):
            return name
    return ""


def service(obj: dict[str, Any]) -> Service:
    meta = _meta(obj)
    spec = _mapping(obj.get("spec"), "spec")
    svc_type = intern(spec.get("type") or "ClusterIP")
    ports = []
    for i, raw in enumerate(_list(spec.get("ports"), "spec.ports")):
        where = f"spec.ports[{i}]"
        port = _int(_mapping(raw, where).get("port"), f"{where}.port")
        target = raw.get("targetPort")
        if target is None or target == 0 or target == "":
            target = port  # the API server's default
        elif not isinstance(target, int | str) or isinstance(target, bool):
            raise InvalidObject(f"{where}.targetPort is neither a number nor a name")
        ports.append(ServicePort(intern(raw.get("name") or ""), intern(raw.get("protocol") or "TCP"), port, target))
    cluster_ip = spec.get("clusterIP")
    headless = cluster_ip == "None"
    if headless or svc_type == "ExternalName":
        ips: tuple[str, ...] = ()
    else:
        raw_ips = spec.get("clusterIPs") or ([cluster_ip] if cluster_ip else [])
        ips = tuple(_strings(raw_ips, "spec.clusterIPs"))
        if "None" in ips:
            headless, ips = True, ()
    lb: list[str] = []
    status = obj.get("status")
    if isinstance(status, dict):
        for ing in _list(_mapping(status.get("loadBalancer"), "status.loadBalancer").get("ingress"), "lb"):
            if isinstance(ing, dict) and (ing.get("ip") or ing.get("hostname")):
                lb.append(ing.get("ip") or ing["hostname"])
    return Service(
        _namespace(meta),
        meta["name"],
        svc_type,
        ips,
        headless,
        tuple(ports),
        spec.get("externalName") or "",
        bool(spec.get("publishNotReadyAddresses")),
        tuple(_list(spec.get("externalIPs"), "spec.externalIPs")),
        tuple(lb),
        _meta_text(meta, "uid"),
        _meta_text(meta, "creationTimestamp"),
        hostname_annotation(_mapping(meta.get("annotations"), "metadata.annotations")),
    )


def endpoint_slice(obj: dict[str, Any]) -> EndpointSlice:
    meta = _meta(obj)
    address_type = obj.get("addressType") or "IPv4"
    # The family an address must have to stay (None: an FQDN slice, addresses kept as they are).
    family = 4 if address_type == "IPv4" else 6 if address_type == "IPv6" else None
    ns = _namespace(meta)
    labels = meta.get("labels") or _EMPTY
    endpoints = []
    for i, raw in enumerate(_list(obj.get("endpoints"), "endpoints")):
        if not isinstance(raw, dict):
            raise InvalidObject(f"endpoints[{i}] is not a mapping")
        addresses = raw.get("addresses")
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise InvalidObject(f"endpoints[{i}].addresses is not a list of strings")
        if family is not None:
            # An address that is not an IP of the slice's family would become a broken A record or
            # upstream line; ipaddress also takes IPv6 zones ("fe80::1%eth0"), which are never endpoints.
            addresses = [a for a in addresses if "%" not in a and is_ip(a) and ip_family(a) == family]
        conditions = raw.get("conditions") or _EMPTY
        ready = conditions.get("ready")
        target = raw.get("targetRef") or _EMPTY
        t_ns = target.get("namespace")
        node = raw.get("nodeName")
        zone = raw.get("zone")
        endpoints.append(
            Endpoint(
                tuple(addresses),
                None if ready is None else bool(ready),
                raw.get("hostname") or None,
                intern(target["kind"]) if target.get("kind") else None,
                target.get("name"),
                # Most targets live in the slice's namespace: share that string.
                ns if t_ns == ns else (intern(t_ns) if t_ns else None),
                intern(node) if node else None,
                intern(zone) if zone else None,
            )
        )
    ports = []
    for i, raw in enumerate(_list(obj.get("ports"), "ports")):
        if not isinstance(raw, dict):
            raise InvalidObject(f"ports[{i}] is not a mapping")
        port = raw.get("port")
        if port is not None:
            _int(port, f"ports[{i}].port")
        ports.append(EndpointPort(intern(raw.get("name") or ""), port, intern(raw.get("protocol") or "TCP")))
    return EndpointSlice(
        ns,
        meta["name"],
        labels.get(SERVICE_NAME_LABEL),
        intern(address_type),
        tuple(endpoints),
        tuple(ports),
        labels.get(MC_SERVICE_NAME_LABEL),
        intern(cluster) if (cluster := labels.get(MC_SOURCE_CLUSTER_LABEL)) else None,
    )


def pod(obj: dict[str, Any]) -> Pod:
    meta = _meta(obj)
    status = obj.get("status") or _EMPTY
    primary = status.get("podIP")
    raw_ips = status.get("podIPs")
    if raw_ips:
        ips = tuple(entry["ip"] for entry in raw_ips if isinstance(entry, dict) and entry.get("ip"))
        if primary and (not ips or ips[0] != primary):
            ips = (primary, *(ip for ip in ips if ip != primary))
    else:
        ips = (primary,) if primary else ()
    return Pod(
        _namespace(meta),
        meta["name"],
        ips,
        intern(status.get("phase") or "Pending"),
        meta.get("deletionTimestamp") is not None,
    )


def namespace(obj: dict[str, Any]) -> Namespace:
    meta = _meta(obj)
    return Namespace(intern(meta["name"]), _str_map(meta.get("labels"), "metadata.labels"))


def _object_fields(obj: dict[str, Any]) -> tuple[Any, ...]:
    """Identity, metadata, spec and status: the fields of the records whose spec their reader parses."""
    meta = _meta(obj)
    return (
        _namespace(meta),
        meta["name"],
        _meta_text(meta, "uid"),
        _meta_text(meta, "resourceVersion"),
        meta.get("generation") or 0,
        _meta_text(meta, "creationTimestamp"),
        _str_map(meta.get("labels"), "metadata.labels"),
        _str_map(meta.get("annotations"), "metadata.annotations"),
        _mapping(obj.get("spec"), "spec"),
        _mapping(obj.get("status"), "status"),
    )


def ingress(obj: dict[str, Any]) -> Ingress:
    return Ingress(*_object_fields(obj))


def ingress_class(obj: dict[str, Any]) -> IngressClass:
    meta = _meta(obj)
    spec = _mapping(obj.get("spec"), "spec")
    annotations = _str_map(meta.get("annotations"), "metadata.annotations")
    params = spec.get("parameters")
    return IngressClass(
        meta["name"],
        _meta_text(meta, "uid"),
        _meta_text(meta, "resourceVersion"),
        _meta_text(meta, "creationTimestamp"),
        annotations,
        spec.get("controller") or "",
        _mapping(params, "spec.parameters") if params is not None else None,
        annotations.get(DEFAULT_CLASS_ANNOTATION) == "true",
    )


def secret(obj: dict[str, Any]) -> Secret:
    meta = _meta(obj)
    data: dict[str, bytes] = {}
    for key, value in _str_map(obj.get("data"), "data").items():
        if key not in SECRET_KEYS and len(value) > 700:  # longer than any hash: not decoded at all
            continue
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            if key not in SECRET_KEYS:
                continue
            raise InvalidObject(f"data[{key!r}] is not valid base64") from exc
        if _kept(key, decoded):
            data[key] = decoded
    # stringData only appears in hand-written manifests; the API server folds it into data.
    for key, value in _str_map(obj.get("stringData"), "stringData").items():
        if _kept(key, value.encode()):
            data[key] = value.encode()
    return Secret(
        _namespace(meta),
        meta["name"],
        _meta_text(meta, "uid"),
        _meta_text(meta, "resourceVersion"),
        intern(obj.get("type") or "Opaque"),
        data,
    )


def config_map(obj: dict[str, Any]) -> ConfigMap:
    meta = _meta(obj)
    return ConfigMap(
        _namespace(meta),
        meta["name"],
        _meta_text(meta, "uid"),
        _meta_text(meta, "resourceVersion"),
        _str_map(meta.get("labels"), "metadata.labels"),
        _str_map(obj.get("data"), "data"),
    )


def generic(obj: dict[str, Any]) -> GenericObject:
    """Any namespaced object whose spec and status its reader parses (Gateway API routes and Gateways)."""
    return GenericObject(*_object_fields(obj))


def service_import(obj: dict[str, Any]) -> ServiceImport:
    meta = _meta(obj)
    spec = _mapping(obj.get("spec"), "spec")
    ports = []
    for i, raw in enumerate(_list(spec.get("ports"), "spec.ports")):
        where = f"spec.ports[{i}]"
        port = _int(_mapping(raw, where).get("port"), f"{where}.port")
        ports.append(ServiceImportPort(intern(raw.get("name") or ""), intern(raw.get("protocol") or "TCP"), port))
    ips = _list(spec.get("ips"), "spec.ips")
    if not all(isinstance(ip, str) and is_ip(ip) for ip in ips):
        raise InvalidObject("spec.ips is not a list of IP addresses")
    svc_type = spec.get("type") or "ClusterSetIP"
    if svc_type not in ("ClusterSetIP", "Headless"):
        raise InvalidObject(f"spec.type {svc_type!r} is neither ClusterSetIP nor Headless")
    return ServiceImport(_namespace(meta), meta["name"], intern(svc_type), tuple(ips), tuple(ports))


def cluster_generic(obj: dict[str, Any]) -> GenericObject:
    """A cluster-scoped object read as generic JSON (GatewayClass): its namespace is ""."""
    return GenericObject("", *_object_fields(obj)[1:])
