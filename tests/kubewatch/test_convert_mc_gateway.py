"""Raw API JSON to slim records for what k8s_gateway and multicluster read: the Service hostname
annotation, Gateway API objects, ServiceImports and the multicluster labels of EndpointSlices."""

from __future__ import annotations

from typing import Any

import pytest

from kubewatch import ENDPOINT_SLICES, HTTP_ROUTES, SERVICE_IMPORTS, SERVICES, InvalidObject, ServiceImportPort
from tests.kubewatch import builders as b

CORE = "coredns.io/hostname"
EXT = "external-dns.alpha.kubernetes.io/hostname"

HOSTNAMES = [
    ({}, ""),
    ({CORE: "Web.Example.com"}, "web.example.com"),
    ({CORE: "web.example.com", EXT: "other.example.com"}, "web.example.com"),
    ({CORE: "bad_name.example.com", EXT: "other.example.com"}, "other.example.com"),  # first valid one
    ({EXT: "a.example.com,b.example.com"}, ""),  # a list is not one name
    ({EXT: "trailing.example.com."}, ""),
    ({CORE: "x" * 64 + ".example.com"}, ""),  # a label over 63
    ({CORE: "-lead.example.com"}, ""),
]


@pytest.mark.parametrize(("annotations", "want"), HOSTNAMES, ids=[str(a) for a, _ in HOSTNAMES])
def test_service_hostname_annotation(annotations: dict[str, str], want: str) -> None:
    raw = b.service("lb", type="LoadBalancer", cluster_ip="10.0.0.3")
    raw["metadata"]["annotations"] = annotations
    assert SERVICES.convert(raw).hostname_annotation == want


def test_generic_object_keeps_spec_and_status() -> None:
    raw = {"metadata": {"name": "r", "namespace": "ns", "generation": 3, "labels": {"a": "b"}},
           "spec": {"hostnames": ["x.example.com"]}, "status": {"parents": []}}
    rec = HTTP_ROUTES.convert(raw)
    assert (rec.namespace, rec.name, rec.generation, rec.labels) == ("ns", "r", 3, {"a": "b"})
    assert rec.spec == {"hostnames": ["x.example.com"]}
    assert rec.status == {"parents": []}


def test_service_import() -> None:
    raw = {"metadata": {"name": "svc1", "namespace": "ns"},
           "spec": {"type": "ClusterSetIP", "ips": ["10.0.0.1", "fd00::1"],
                    "ports": [{"name": "http", "port": 80}, {"port": 53, "protocol": "UDP"}]}}
    imp = SERVICE_IMPORTS.convert(raw)
    assert imp.ips == ("10.0.0.1", "fd00::1")
    assert imp.ports == (ServiceImportPort("http", "TCP", 80), ServiceImportPort("", "UDP", 53))
    assert not imp.headless
    assert SERVICE_IMPORTS.convert({"metadata": {"name": "h"}, "spec": {"type": "Headless"}}).headless


def test_multicluster_slice_labels() -> None:
    raw = b.endpoint_slice("s", "ns", endpoints=[], ports=[],
                           labels={"multicluster.kubernetes.io/service-name": "svc1",
                                   "multicluster.kubernetes.io/source-cluster": "c1"})
    sl = ENDPOINT_SLICES.convert(raw)
    assert (sl.service_name, sl.mc_service_name, sl.source_cluster) == (None, "svc1", "c1")


MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({"metadata": {"name": "x"}, "spec": {"type": "ExternalName"}}, "neither ClusterSetIP nor Headless"),
    ({"metadata": {"name": "x"}, "spec": {"ips": ["nope"]}}, "spec.ips"),
    ({"metadata": {"name": "x"}, "spec": {"ports": [{"port": "80"}]}}, r"spec.ports\[0\].port"),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_service_imports(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidObject, match=message):
        SERVICE_IMPORTS.convert(raw)
