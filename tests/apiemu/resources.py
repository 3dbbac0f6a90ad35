"""The resources the emulator serves, with what discovery and field selectors need."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

_COMMON_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class Resource:
    """One resource type the emulator serves, as discovery describes it."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    has_status: bool = False  # a status subresource: the main endpoint ignores status changes
    extra_fields: tuple[str, ...] = ()  # field-selector fields beyond metadata.name/namespace

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}"

    @property
    def field_names(self) -> tuple[str, ...]:
        return _COMMON_FIELDS + self.extra_fields

    def fields(self, obj: dict[str, Any]) -> dict[str, str]:
        """Selectable field values of an object (computed once per write)."""
        result = {}
        for path in self.field_names:
            cur: Any = obj
            for part in path.split("."):
                cur = cur.get(part) if isinstance(cur, dict) else None
            result[path] = "" if cur is None else str(cur)
        return result


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",), True, ("status.phase",)),
    Resource("", "v1", "Service", "services", "service", True, ("svc",), True, ("spec.clusterIP", "spec.type")),
    Resource(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        True,
        ("po",),
        True,
        ("status.phase", "spec.nodeName", "spec.restartPolicy", "spec.serviceAccountName", "status.podIP"),
    ),
    Resource("", "v1", "Secret", "secrets", "secret", True, (), False, ("type",)),
    Resource("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",)),
    Resource(
        "",
        "v1",
        "Event",
        "events",
        "event",
        True,
        ("ev",),
        False,
        ("involvedObject.kind", "involvedObject.name", "involvedObject.namespace", "reason", "type"),
    ),
    Resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True),
    Resource("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", True, ("ing",), True),
    Resource("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", False),
    Resource("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
    # Gateway API (CRDs in a real cluster; the standard channel's v1 kinds).
    Resource("gateway.networking.k8s.io", "v1", "GatewayClass", "gatewayclasses", "gatewayclass", False, ("gc",),
             True),
    Resource("gateway.networking.k8s.io", "v1", "Gateway", "gateways", "gateway", True, ("gtw",), True),
    Resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes", "httproute", True, (), True),
    Resource("gateway.networking.k8s.io", "v1", "ReferenceGrant", "referencegrants", "referencegrant", True,
             ("refgrant",)),
    Resource("events.k8s.io", "v1", "Event", "events", "event", True, ("ev",), False, ("reason", "type")),
    # Served so the deploy/ manifests apply as they would to a cluster; nothing here acts on them.
    Resource("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True, ("sa",)),
    Resource("apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",), True),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", False),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding",
             False),
    Resource("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", True),
    Resource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", True),
    Resource("batch", "v1", "Job", "jobs", "job", True, (), True),
    Resource("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
             "validatingwebhookconfigurations", "validatingwebhookconfiguration", False),
    # Custom resources a cluster has when their CRDs are installed (the `hidden_resources` setting takes
    # them away again, as a cluster without the CRD answers: 404). Gateway and HTTPRoute are above.
    Resource("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes", "grpcroute", True, (), True),
    Resource("multicluster.x-k8s.io", "v1alpha1", "ServiceImport", "serviceimports", "serviceimport", True,
             ("svcim",), True),
)

# A cluster without some CRDs (the Gateway API's, say): groups the harness leaves out.
_WITHOUT = frozenset(filter(None, os.environ.get("APIEMU_WITHOUT_GROUPS", "").split(",")))
RESOURCES = tuple(r for r in RESOURCES if r.group not in _WITHOUT)

BY_PATH: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_TYPE: dict[tuple[str, str], Resource] = {(r.api_version, r.kind): r for r in RESOURCES}
assert len(BY_PATH) == len(RESOURCES), "a resource listed twice (discovery would name it twice)"


def group_versions() -> dict[str, list[str]]:
    """group -> versions, in registry order ("" is the core group)."""
    result: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = result.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return result


def for_object(obj: dict[str, Any]) -> Resource:
    """The resource of a manifest-style object; KeyError if unknown."""
    return BY_TYPE[(obj.get("apiVersion", ""), obj.get("kind", ""))]
