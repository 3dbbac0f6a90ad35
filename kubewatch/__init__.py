"""kubewatch: the shared, in-memory view of the Kubernetes objects DNS and ingress serve from.

Typical use::

    store = Store()
    config = ClusterConfig.from_kubeconfig("~/.kube/config", context=None)  # or in_cluster()
    async with ApiSource(store, config, ["services", "endpointslices", "namespaces",
                                         WatchSpec("pods", field_selector=RUNNING_PODS)]):
        await store.wait_synced(timeout=5)
        svc = store.service("default", "kubernetes")

or, without a cluster, ``ManifestSource(store, "manifests/")``. Reads never await.
A latency-sensitive process may call ``settle_gc()`` once synced (see gc_control).
"""

from kubewatch.api_source import ApiSource, WatchSpec
from kubewatch.backoff import Backoff
from kubewatch.client import ApiClient
from kubewatch.connection import ClusterConfig, StaticToken, TokenFile
from kubewatch.errors import (
    ApiError,
    ConfigError,
    GoneError,
    InvalidObject,
    KubeError,
    ManifestError,
    ProtocolError,
    SelectorError,
    UnauthorizedError,
)
from kubewatch.feed import ADDED, DELETED, MODIFIED, Change, ChangeBatch, ChangeQueue
from kubewatch.gc_control import settle as settle_gc
from kubewatch.kinds import (
    CONFIG_MAPS,
    ENDPOINT_SLICES,
    GATEWAY_CLASSES,
    GATEWAY_KINDS,
    GATEWAYS,
    GRPC_ROUTES,
    HTTP_ROUTES,
    INGRESS_CLASSES,
    INGRESSES,
    KINDS,
    NAMESPACES,
    PODS,
    REFERENCE_GRANTS,
    RUNNING_PODS,
    SECRETS,
    SERVICE_IMPORTS,
    SERVICES,
    Kind,
)
from kubewatch.manifests import ManifestSource
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
    Record,
    Secret,
    Service,
    ServiceImport,
    ServiceImportPort,
    ServicePort,
)
from kubewatch.reflector import WatchTuning
from kubewatch.selectors import FieldSelector, LabelSelector
from kubewatch.store import Store

__all__ = [
    "ADDED",
    "CONFIG_MAPS",
    "DELETED",
    "ENDPOINT_SLICES",
    "GATEWAYS",
    "GATEWAY_CLASSES",
    "GATEWAY_KINDS",
    "GRPC_ROUTES",
    "HTTP_ROUTES",
    "INGRESSES",
    "INGRESS_CLASSES",
    "KINDS",
    "MODIFIED",
    "NAMESPACES",
    "PODS",
    "REFERENCE_GRANTS",
    "RUNNING_PODS",
    "SECRETS",
    "SERVICES",
    "SERVICE_IMPORTS",
    "ApiClient",
    "ApiError",
    "ApiSource",
    "Backoff",
    "Change",
    "ChangeBatch",
    "ChangeQueue",
    "ClusterConfig",
    "ConfigError",
    "ConfigMap",
    "Endpoint",
    "EndpointPort",
    "EndpointSlice",
    "FieldSelector",
    "GenericObject",
    "GoneError",
    "Ingress",
    "IngressClass",
    "InvalidObject",
    "Kind",
    "KubeError",
    "LabelSelector",
    "ManifestError",
    "ManifestSource",
    "Namespace",
    "Pod",
    "ProtocolError",
    "Record",
    "Secret",
    "SelectorError",
    "Service",
    "ServiceImport",
    "ServiceImportPort",
    "ServicePort",
    "StaticToken",
    "Store",
    "TokenFile",
    "UnauthorizedError",
    "WatchSpec",
    "WatchTuning",
    "settle_gc",
]
