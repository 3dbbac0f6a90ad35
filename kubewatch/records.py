"""Slim, immutable records: the projection of each Kubernetes object that DNS and ingress use.

Records are NamedTuples on purpose: equality is a C-level tuple compare, which is how the store
tells a real change from a new resourceVersion with identical content, and a tuple costs no
more memory than a ``__slots__`` object. Mapping fields (labels, annotations, spec, data) are
plain dicts for the kinds that exist in small numbers; treat them as read-only.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class ServicePort(NamedTuple):
    """A port of a Service."""

    name: str  # "" when the Service has a single unnamed port
    protocol: str  # TCP | UDP | SCTP
    port: int
    target_port: int | str  # a number, or the name of a container port


class Service(NamedTuple):
    """The parts of a Service that DNS and ingress use."""

    namespace: str
    name: str
    type: str  # ClusterIP | NodePort | LoadBalancer | ExternalName
    cluster_ips: tuple[str, ...]  # primary first; empty for headless and ExternalName
    headless: bool  # spec.clusterIP == "None"
    ports: tuple[ServicePort, ...]
    external_name: str  # only for type ExternalName
    publish_not_ready: bool
    external_ips: tuple[str, ...]
    load_balancer: tuple[str, ...]  # status.loadBalancer.ingress[].ip or .hostname
    uid: str
    created: str  # creationTimestamp, RFC 3339

    @property
    def is_external_name(self) -> bool:
        return self.type == "ExternalName"


class Endpoint(NamedTuple):
    """One endpoint of an EndpointSlice."""

    addresses: tuple[str, ...]
    ready: bool | None  # conditions.ready as written; None means unset (= ready)
    hostname: str | None
    target_kind: str | None
    target_name: str | None
    target_namespace: str | None
    node_name: str | None
    zone: str | None


class EndpointPort(NamedTuple):
    """A port of an EndpointSlice."""

    name: str
    port: int | None  # None: "all ports" per the EndpointSlice contract
    protocol: str


class EndpointSlice(NamedTuple):
    """The parts of an EndpointSlice that DNS and ingress use."""

    namespace: str
    name: str
    service_name: str | None  # label kubernetes.io/service-name
    address_type: str  # IPv4 | IPv6 | FQDN
    endpoints: tuple[Endpoint, ...]
    ports: tuple[EndpointPort, ...]


class Pod(NamedTuple):
    """The parts of a Pod that DNS uses: its addresses and whether it is going away."""

    namespace: str
    name: str
    ips: tuple[str, ...]  # status.podIPs, primary (status.podIP) first
    phase: str
    deleting: bool  # metadata.deletionTimestamp is set

    @property
    def ip(self) -> str:
        return self.ips[0] if self.ips else ""


class Namespace(NamedTuple):
    """A Namespace: its name and labels."""

    name: str
    labels: dict[str, str]

    @property
    def namespace(self) -> str:
        """Cluster-scoped: the store files it under ""."""
        return ""


class Ingress(NamedTuple):
    """An Ingress: identity and metadata, with spec and status left for the controller to read."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    created: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]  # left untyped: the ingress controller parses and validates it
    status: dict[str, Any]


class IngressClass(NamedTuple):
    """An IngressClass: the controller it names, its parameters, whether it is the default."""

    name: str
    uid: str
    resource_version: str
    created: str
    annotations: dict[str, str]
    controller: str
    parameters: dict[str, Any] | None
    is_default: bool  # annotation ingressclass.kubernetes.io/is-default-class == "true"

    @property
    def namespace(self) -> str:
        """Cluster-scoped: the store files it under ""."""
        return ""


class Secret(NamedTuple):
    """A Secret, with only the keys the ingress controller reads (TLS material)."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    type: str
    data: dict[str, bytes]  # decoded; only the keys in convert.SECRET_KEYS are kept


class ConfigMap(NamedTuple):
    """A ConfigMap's data."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    labels: dict[str, str]
    data: dict[str, str]


class GatewayObject(NamedTuple):
    """A Gateway API object (GatewayClass, Gateway, HTTPRoute, ReferenceGrant): identity and
    metadata, with spec and status left for the controller to parse and validate."""

    namespace: str  # "" for a GatewayClass (cluster-scoped)
    name: str
    uid: str
    resource_version: str
    generation: int
    created: str
    labels: dict[str, str]
    spec: dict[str, Any]
    status: dict[str, Any]


Record = Service | EndpointSlice | Pod | Namespace | Ingress | IngressClass | Secret | ConfigMap | GatewayObject
