"""The Service/EndpointSlice rules shared by DNS and ingress."""

from __future__ import annotations

import pytest

from kubewatch import ENDPOINT_SLICES, SERVICES, Endpoint, Store
from kubewatch import services as sv
from tests.kubewatch import builders as b


@pytest.mark.parametrize(
    ("ready", "publish", "expected"),
    [(None, False, True), (True, False, True), (False, False, False), (False, True, True)],
)
def test_endpoint_ready(ready: bool | None, publish: bool, expected: bool) -> None:
    ep = Endpoint(("10.0.0.1",), ready, None, None, None, None, None, None)
    assert sv.endpoint_ready(ep, publish) is expected


@pytest.mark.parametrize(
    ("ip", "label"),
    [
        ("10.1.2.3", "10-1-2-3"),
        ("fd00::1", "fd00--1"),
        ("2001:db8::", "2001-db8--0"),
        ("::1", "--1"),
    ],
)
def test_dashed_ip(ip: str, label: str) -> None:
    assert sv.dashed_ip(ip) == label


def _ep(hostname: str | None = None, pod: str | None = None) -> Endpoint:
    return Endpoint(("10.0.0.9",), True, hostname, "Pod" if pod else None, pod, None, None, None)


@pytest.mark.parametrize(
    ("ep", "pod_names", "expected"),
    [
        (_ep(hostname="db-0", pod="db-0-pod"), True, "db-0"),
        (_ep(pod="web-7f9c"), False, "10-0-0-9"),
        (_ep(pod="web-7f9c"), True, "web-7f9c"),
        (_ep(pod="p" * 63), True, "p" * 63),
        (_ep(pod="p" * 64), True, "10-0-0-9"),  # longer than a DNS label: dashed IP
    ],
)
def test_endpoint_hostname(ep: Endpoint, pod_names: bool, expected: str) -> None:
    assert sv.endpoint_hostname(ep, "10.0.0.9", pod_names) == expected


def _store(*objs: dict) -> Store:
    store = Store()
    for obj in objs:
        kind = SERVICES if obj["kind"] == "Service" else ENDPOINT_SLICES
        store.upsert(kind, kind.convert(obj))
    return store


def test_ready_addresses_and_publish_not_ready() -> None:
    eps = [
        b.endpoint("10.1.0.1", hostname="a"),
        b.endpoint("10.1.0.2", ready=False),
        b.endpoint("10.1.0.3", ready=True),
    ]
    store = _store(
        b.service("web", cluster_ip="None"),
        b.endpoint_slice("web-b", service="web", endpoints=eps),
        b.endpoint_slice("web-a", service="web", endpoints=[b.endpoint("fd00::5")], address_type="IPv6"),
        b.endpoint_slice("web-f", service="web", endpoints=[b.endpoint("db.example.com")], address_type="FQDN"),
    )
    svc = store.service("default", "web")
    assert svc is not None
    assert sv.is_headless(svc)
    addrs = sv.ready_addresses(store, svc)
    assert [(a.ip, a.hostname, a.slice_name) for a in addrs] == [
        ("fd00::5", "fd00--5", "web-a"),
        ("10.1.0.1", "a", "web-b"),
        ("10.1.0.3", "10-1-0-3", "web-b"),
    ]
    publish = SERVICES.convert(b.service("web", cluster_ip="None", publish_not_ready=True))
    assert "10.1.0.2" in [a.ip for a in sv.ready_addresses(store, publish)]


def test_named_target_port_resolution_and_upstreams() -> None:
    store = _store(
        b.service(
            "web",
            cluster_ip="10.0.0.1",
            ports=[
                {"name": "http", "port": 80, "targetPort": "web"},
                {"name": "metrics", "port": 9090, "targetPort": 9100},
                {"name": "admin", "port": 81, "targetPort": "admin"},
            ],
        ),
        b.endpoint_slice(
            "web-1",
            service="web",
            endpoints=[b.endpoint("10.1.0.2"), b.endpoint("10.1.0.1"), b.endpoint("10.1.0.3", ready=False)],
            ports=[{"name": "http", "port": 8080, "protocol": "TCP"}],
        ),
        b.endpoint_slice(
            "web-2",
            service="web",
            endpoints=[b.endpoint("10.1.0.1")],
            ports=[{"name": "http", "port": 8080, "protocol": "TCP"}],
        ),
    )
    svc = store.service("default", "web")
    assert svc is not None
    http = sv.find_service_port(svc, name="http")
    assert http is not None
    assert sv.find_service_port(svc, number=9090) is not None
    assert sv.endpoint_port(http, store.slices_for_service("default", "web")[0]) == 8080
    # Resolved through the slice port of the same name, de-duplicated, sorted, ready only.
    assert sv.upstream_endpoints(store, svc, http) == [("10.1.0.1", 8080), ("10.1.0.2", 8080)]
    # A numeric targetPort is the fallback when no slice port has the Service port's name.
    metrics = sv.find_service_port(svc, name="metrics")
    assert metrics is not None
    assert sv.upstream_endpoints(store, svc, metrics) == [("10.1.0.1", 9100), ("10.1.0.2", 9100)]
    # A named targetPort that no slice port resolves gives nothing.
    admin = sv.find_service_port(svc, name="admin")
    assert admin is not None
    assert sv.upstream_endpoints(store, svc, admin) == []


def test_cluster_ips_and_external_name() -> None:
    dual = SERVICES.convert(b.service("d", cluster_ip="10.0.0.2", cluster_ips=["10.0.0.2", "fd00::2"]))
    assert sv.cluster_ips(dual, 4) == ("10.0.0.2",)
    assert sv.cluster_ips(dual, 6) == ("fd00::2",)
    ext = SERVICES.convert(b.service("e", type="ExternalName", external_name="db.example.com", ports=[]))
    assert sv.is_external_name(ext)
    assert sv.external_name_target(ext) == "db.example.com"
    ip_ext = SERVICES.convert(b.service("i", type="ExternalName", external_name="192.0.2.7", ports=[]))
    assert sv.external_name_target(ip_ext) is None  # CoreDNS gives no CNAME to an IP
    assert sv.external_name_target(dual) is None
