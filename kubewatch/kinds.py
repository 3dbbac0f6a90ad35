"""The resource kinds kubewatch knows: where they live in the API and how to slim them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubewatch import convert
from kubewatch.errors import InvalidObject
from kubewatch.records import Pod, Record


def _pod_dns_view(rec: Record) -> object:
    # DNS answers from a pod's IPs and whether it is being deleted; a phase change from
    # Pending to Running with the same IP changes no answer.
    assert isinstance(rec, Pod)
    return (rec.ips, rec.deleting)


@dataclass(frozen=True, slots=True)
class Kind:
    """One watched resource. ``name`` (the plural resource name) is the key used everywhere."""

    name: str
    kind: str
    group: str
    version: str
    namespaced: bool
    converter: Callable[[dict[str, Any]], Record]
    # Whether a change can alter a DNS answer; such changes bump Store.version.
    dns_relevant: bool = False
    # What of the record DNS looks at; None means the whole record.
    dns_view: Callable[[Record], object] | None = None
    # A custom resource: a cluster may lack its CRD (404) or not grant it to us (403); either is
    # reported once and the kind served empty, instead of holding back the kinds that are there.
    custom: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace and self.namespaced:
            return f"{base}/namespaces/{namespace}/{self.name}"
        return f"{base}/{self.name}"

    def convert(self, obj: dict[str, Any]) -> Record:
        """Slim one object; any shape error becomes InvalidObject."""
        try:
            return self.converter(obj)
        except InvalidObject:
            raise
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise InvalidObject(f"{self.kind}: malformed object ({exc})") from exc


SERVICES = Kind("services", "Service", "", "v1", True, convert.service, dns_relevant=True)
ENDPOINT_SLICES = Kind(
    "endpointslices",
    "EndpointSlice",
    "discovery.k8s.io",
    "v1",
    True,
    convert.endpoint_slice,
    dns_relevant=True,
)
PODS = Kind("pods", "Pod", "", "v1", True, convert.pod, dns_relevant=True, dns_view=_pod_dns_view)
NAMESPACES = Kind("namespaces", "Namespace", "", "v1", False, convert.namespace, dns_relevant=True)
INGRESSES = Kind("ingresses", "Ingress", "networking.k8s.io", "v1", True, convert.ingress)
INGRESS_CLASSES = Kind("ingressclasses", "IngressClass", "networking.k8s.io", "v1", False, convert.ingress_class)
SECRETS = Kind("secrets", "Secret", "", "v1", True, convert.secret)
CONFIG_MAPS = Kind("configmaps", "ConfigMap", "", "v1", True, convert.config_map)
# Gateway API objects, decoded generically (spec and status left to their readers). Custom resources:
# a cluster without their CRDs answers 404, which the reflector reports once (Reflector._not_served).
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_CLASSES = Kind("gatewayclasses", "GatewayClass", GATEWAY_GROUP, "v1", False, convert.cluster_generic,
                       custom=True)
GATEWAYS = Kind("gateways", "Gateway", GATEWAY_GROUP, "v1", True, convert.generic, custom=True)
HTTP_ROUTES = Kind("httproutes", "HTTPRoute", GATEWAY_GROUP, "v1", True, convert.generic, custom=True)
GRPC_ROUTES = Kind("grpcroutes", "GRPCRoute", GATEWAY_GROUP, "v1", True, convert.generic, custom=True)
REFERENCE_GRANTS = Kind("referencegrants", "ReferenceGrant", GATEWAY_GROUP, "v1", True, convert.generic, custom=True)
GATEWAY_KINDS = (GATEWAY_CLASSES, GATEWAYS, HTTP_ROUTES, REFERENCE_GRANTS)  # what the ingress controller watches
# The Multi-Cluster Services API's imports (kubernetes `multicluster`), a custom resource too.
SERVICE_IMPORTS = Kind("serviceimports", "ServiceImport", "multicluster.x-k8s.io", "v1alpha1", True,
                       convert.service_import, dns_relevant=True, custom=True)

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (SERVICES, ENDPOINT_SLICES, PODS, NAMESPACES, INGRESSES, INGRESS_CLASSES, SECRETS, CONFIG_MAPS,
              GATEWAY_CLASSES, GATEWAYS, HTTP_ROUTES, GRPC_ROUTES, REFERENCE_GRANTS, SERVICE_IMPORTS)
}

# Manifests name objects by (apiVersion, kind).
BY_TYPE: dict[tuple[str, str], Kind] = {(k.api_version, k.kind): k for k in KINDS.values()}

# The field selector CoreDNS uses for `pods verified`: only pods that can still hold their IP.
RUNNING_PODS = "status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown"


def get_kind(kind: str | Kind) -> Kind:
    if isinstance(kind, Kind):
        return kind
    try:
        return KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown kind {kind!r}; known: {', '.join(sorted(KINDS))}") from None
