"""What the API server does to an object on its way in: validation, defaults, metadata.

Deliberate leniency, for test fixtures: status given on create is kept (a real server resets
it and lets only kubelet/controllers write it), and pods are not validated beyond their name.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.apiemu.errors import StatusError
from tests.apiemu.resources import Resource

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def invalid(kind: str, name: str, field: str, message: str) -> StatusError:
    return StatusError(
        422,
        f'{kind} "{name}" is invalid: {field}: {message}',
        "Invalid",
        {"name": name, "kind": kind, "causes": [{"field": field, "message": message}]},
    )


def validate_name(res: Resource, name: str) -> None:
    if res.group == "rbac.authorization.k8s.io":
        # RBAC objects only need to be valid path segments, which is why "system:..." names exist.
        ok = bool(name) and name not in (".", "..") and "/" not in name and "%" not in name
        what = "a valid path segment name"
    elif res.plural in ("services", "namespaces"):
        ok = len(name) <= 63 and bool((_LABEL_1035 if res.plural == "services" else _LABEL_1123).match(name))
        what = "a DNS-1035 label" if res.plural == "services" else "a DNS-1123 label"
    else:
        ok = len(name) <= 253 and bool(_SUBDOMAIN.match(name))
        what = "a lowercase RFC 1123 subdomain"
    if not ok:
        raise invalid(res.kind, name, "metadata.name", f"Invalid value: {name!r}: must be {what}")


def validate(res: Resource, obj: dict[str, Any]) -> None:
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    if res.plural == "services":
        svc_type = spec.get("type", "ClusterIP")
        if svc_type == "ExternalName":
            if not spec.get("externalName"):
                raise invalid("Service", name, "spec.externalName", "Required value")
        elif spec.get("clusterIP") != "None" and not spec.get("ports"):
            raise invalid("Service", name, "spec.ports", "Required value")
        for i, port in enumerate(spec.get("ports") or []):
            if not isinstance(port, dict) or type(port.get("port")) is not int:
                raise invalid("Service", name, f"spec.ports[{i}].port", "Required value")
    elif res.plural == "endpointslices":
        if obj.get("addressType") not in ("IPv4", "IPv6", "FQDN"):
            raise invalid("EndpointSlice", name, "addressType", "Unsupported value")
        for i, ep in enumerate(obj.get("endpoints") or []):
            if not isinstance(ep, dict) or not ep.get("addresses"):
                raise invalid("EndpointSlice", name, f"endpoints[{i}].addresses", "Required value")


class ClusterIPAllocator:
    """Hands out service ClusterIPs from 10.96.0.0/12, like the API server's allocator."""

    def __init__(self, cidr: str = "10.96.0.0/12") -> None:
        self.network = ipaddress.ip_network(cidr)
        self.used: set[str] = set()
        self._next = 10  # leave the first addresses for kubernetes / kube-dns

    def allocate(self) -> str:
        size = self.network.num_addresses
        for _ in range(size):
            ip = str(self.network.network_address + self._next)
            self._next = self._next + 1 if self._next + 1 < size - 1 else 1
            if ip not in self.used:
                self.used.add(ip)
                return ip
        raise StatusError(500, "service CIDR exhausted")


def _family(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


def _cluster_ips(spec: dict[str, Any], alloc: ClusterIPAllocator, old: dict[str, Any] | None) -> None:
    """A Service's ClusterIPs as the API server defaults them: kept from `old`, or allocated."""
    old_spec = (old or {}).get("spec") or {}
    if not spec.get("clusterIP") and old_spec.get("clusterIP"):
        # ClusterIPs are immutable: an update that leaves them out keeps them.
        spec["clusterIP"] = old_spec["clusterIP"]
        spec["clusterIPs"] = old_spec.get("clusterIPs") or [old_spec["clusterIP"]]
    if not spec.get("clusterIP"):
        spec["clusterIP"] = spec["clusterIPs"][0] if spec.get("clusterIPs") else alloc.allocate()
    else:
        alloc.used.add(spec["clusterIP"])
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    if spec["clusterIP"] != "None":
        spec.setdefault("ipFamilies", [_family(ip) for ip in spec["clusterIPs"]])
        spec.setdefault("ipFamilyPolicy", "SingleStack" if len(spec["clusterIPs"]) == 1 else "RequireDualStack")
    spec.setdefault("sessionAffinity", "None")


def apply_defaults(res: Resource, obj: dict[str, Any], alloc: ClusterIPAllocator, old: dict[str, Any] | None) -> None:
    meta = obj["metadata"]
    if res.plural == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        if spec["type"] != "ExternalName":
            _cluster_ips(spec, alloc, old)
        obj.setdefault("status", {"loadBalancer": {}})
    elif res.plural == "endpointslices":
        for port in obj.get("ports") or []:
            port.setdefault("protocol", "TCP")
    elif res.plural == "pods":
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif res.plural == "namespaces":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    elif res.plural == "secrets":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    elif res.plural == "ingresses":
        obj.setdefault("status", {"loadBalancer": {}})


def prepare_create(res: Resource, obj: dict[str, Any], namespace: str | None, alloc: ClusterIPAllocator) -> None:
    """Fill in identity, metadata and defaults of a new object (in place)."""
    if not isinstance(obj, dict):
        raise StatusError(400, "the request body is not an object")
    obj.setdefault("apiVersion", res.api_version)
    obj.setdefault("kind", res.kind)
    if (obj["apiVersion"], obj["kind"]) != (res.api_version, res.kind):
        raise StatusError(400, f"the body is a {obj['apiVersion']}/{obj['kind']}, not a {res.api_version}/{res.kind}")
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise StatusError(400, "metadata is not an object")
    if res.namespaced:
        if meta.get("namespace") and namespace and meta["namespace"] != namespace:
            raise StatusError(
                400, "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace or meta.get("namespace") or "default"
    else:
        meta.pop("namespace", None)
    if not meta.get("name"):
        if meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        else:
            raise invalid(res.kind, "", "metadata.name", "Required value: name or generateName is required")
    validate_name(res, meta["name"])
    for dropped in ("resourceVersion", "deletionTimestamp", "managedFields", "selfLink"):
        meta.pop(dropped, None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now()
    meta["generation"] = 1
    apply_defaults(res, obj, alloc, None)
    validate(res, obj)


def prepare_update(
    res: Resource, new: dict[str, Any], old: dict[str, Any], alloc: ClusterIPAllocator, status_only: bool
) -> dict[str, Any]:
    """The object to store for an update of ``old`` to ``new`` (either endpoint)."""
    if not isinstance(new, dict):
        raise StatusError(400, "the request body is not an object")
    if status_only:
        result = copy.deepcopy(old)
        if "status" in new:
            result["status"] = new["status"]
        return result
    result = copy.deepcopy(new)
    result["apiVersion"], result["kind"] = res.api_version, res.kind
    meta = result.setdefault("metadata", {})
    old_meta = old["metadata"]
    if meta.get("name", old_meta["name"]) != old_meta["name"]:
        raise StatusError(400, "the name of the object does not match the name on the URL")
    for kept in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp"):
        if kept in old_meta:
            meta[kept] = old_meta[kept]
        else:
            meta.pop(kept, None)
    if res.has_status:
        # The status subresource owns status: the main endpoint cannot change it.
        if "status" in old:
            result["status"] = old["status"]
        else:
            result.pop("status", None)
    apply_defaults(res, result, alloc, old)
    body_changed = {k: v for k, v in result.items() if k not in ("metadata", "status")} != {
        k: v for k, v in old.items() if k not in ("metadata", "status")
    }
    if body_changed:
        meta["generation"] = old_meta.get("generation", 1) + 1
    validate(res, result)
    return result
