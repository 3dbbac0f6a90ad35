"""Raw API JSON to slim records."""

from __future__ import annotations

import pytest

from kubewatch import (
    CONFIG_MAPS,
    ENDPOINT_SLICES,
    INGRESS_CLASSES,
    INGRESSES,
    NAMESPACES,
    PODS,
    SECRETS,
    SERVICES,
    Endpoint,
    EndpointPort,
    InvalidObject,
    ServicePort,
)
from tests.kubewatch import builders as b


def test_service_defaults_and_ports() -> None:
    raw = b.service(
        "web",
        "shop",
        ports=[{"name": "http", "port": 80, "targetPort": "http"}, {"port": 53, "protocol": "UDP"}],
    )
    raw["spec"]["clusterIP"] = "10.0.0.1"
    svc = SERVICES.convert(raw)
    assert (svc.namespace, svc.name, svc.type) == ("shop", "web", "ClusterIP")
    assert svc.cluster_ips == ("10.0.0.1",)
    assert svc.ports == (ServicePort("http", "TCP", 80, "http"), ServicePort("", "UDP", 53, 53))
    assert not svc.headless
    assert not svc.is_external_name


def test_service_dual_stack_headless_and_external_name() -> None:
    dual = SERVICES.convert(b.service("d", cluster_ip="10.0.0.2", cluster_ips=["10.0.0.2", "fd00::2"]))
    assert dual.cluster_ips == ("10.0.0.2", "fd00::2")
    headless = SERVICES.convert(b.service("h", cluster_ip="None", cluster_ips=["None"]))
    assert headless.headless
    assert headless.cluster_ips == ()
    ext = SERVICES.convert(b.service("e", type="ExternalName", external_name="db.example.com", ports=[]))
    assert ext.is_external_name
    assert ext.external_name == "db.example.com"
    assert ext.cluster_ips == ()


def test_service_load_balancer_status() -> None:
    raw = b.service("lb", type="LoadBalancer", cluster_ip="10.0.0.3")
    raw["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "lb.example.com"}]}}
    assert SERVICES.convert(raw).load_balancer == ("192.0.2.1", "lb.example.com")


def test_endpoint_slice() -> None:
    raw = b.endpoint_slice(
        "web-1",
        "shop",
        service="web",
        endpoints=[
            b.endpoint("10.1.0.1", pod="web-a", node="n1", zone="z1"),
            b.endpoint("10.1.0.2", ready=False, hostname="two"),
        ],
        ports=[{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "all"}],
    )
    raw["endpoints"][0]["targetRef"]["namespace"] = "shop"
    sl = ENDPOINT_SLICES.convert(raw)
    assert (sl.namespace, sl.name, sl.service_name, sl.address_type) == ("shop", "web-1", "web", "IPv4")
    assert sl.endpoints[0] == Endpoint(("10.1.0.1",), None, None, "Pod", "web-a", "shop", "n1", "z1")
    assert sl.endpoints[0].target_namespace is sl.namespace  # shared, not a copy
    assert sl.endpoints[1].ready is False
    assert sl.endpoints[1].hostname == "two"
    assert sl.ports == (EndpointPort("http", 8080, "TCP"), EndpointPort("all", None, "TCP"))


def test_pod_ips_primary_first_and_deleting() -> None:
    raw = b.pod("p", "shop", "10.2.0.1")
    raw["status"]["podIPs"] = [{"ip": "fd00::1"}, {"ip": "10.2.0.1"}]
    raw["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    p = PODS.convert(raw)
    assert p.ips == ("10.2.0.1", "fd00::1")
    assert p.ip == "10.2.0.1"
    assert p.deleting
    assert p.phase == "Running"
    assert PODS.convert(b.pod("q", phase="Pending")).ips == ()


def test_namespace_ingress_class_and_ingress() -> None:
    ns = NAMESPACES.convert(b.namespace("shop", {"team": "a"}))
    assert (ns.namespace, ns.name, ns.labels) == ("", "shop", {"team": "a"})
    ic = INGRESS_CLASSES.convert(b.ingress_class("portolan", default=True))
    assert ic.controller == "portolan.dev/ingress"
    assert ic.is_default
    assert ic.namespace == ""
    raw = b.with_meta(b.ingress("site", "shop"), uid="u1", resourceVersion="7", generation=2)
    ing = INGRESSES.convert(raw)
    assert (ing.uid, ing.resource_version, ing.generation) == ("u1", "7", 2)
    assert ing.spec["ingressClassName"] == "portolan"
    assert ing.status == {}
    assert ing.annotations == {"nginx.ingress.kubernetes.io/ssl-redirect": "false"}


def test_secret_keeps_only_ingress_keys() -> None:
    raw = b.secret(
        "tls", data={"tls.crt": b"CERT", "tls.key": b"KEY", "password": b"hunter2"}, type="kubernetes.io/tls"
    )
    sec = SECRETS.convert(raw)
    assert sec.type == "kubernetes.io/tls"
    assert sec.data == {"tls.crt": b"CERT", "tls.key": b"KEY"}
    raw["stringData"] = {"ca.crt": "CA"}
    assert SECRETS.convert(raw).data["ca.crt"] == b"CA"
    raw["data"]["tls.crt"] = "!!not base64!!"
    with pytest.raises(InvalidObject, match=r"tls\.crt"):
        SECRETS.convert(raw)


def test_config_map() -> None:
    cm = CONFIG_MAPS.convert(b.config_map("cfg", data={"ssl-redirect": "false"}))
    assert cm.data == {"ssl-redirect": "false"}


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        (SERVICES, {"metadata": {}}, "metadata.name"),
        (SERVICES, {"metadata": {"name": "x"}, "spec": {"ports": "80"}}, "spec.ports"),
        (SERVICES, {"metadata": {"name": "x"}, "spec": {"ports": [{"port": "80"}]}}, r"spec.ports\[0\].port"),
        (ENDPOINT_SLICES, {"metadata": {"name": "x"}, "endpoints": [{"addresses": "1.2.3.4"}]}, "addresses"),
        (PODS, {"metadata": {"name": "x"}, "status": ["Running"]}, "malformed"),
        (NAMESPACES, "not an object", "not a mapping"),
        (CONFIG_MAPS, {"metadata": {"name": "x"}, "data": {"k": 1}}, "data"),
        # fuzz/corpus/manifests/crash-cluster-ips-mapping.yaml: `[10.96.0.11, "fd00::a":]` in YAML holds a
        # mapping, which reached the store's IP index (a TypeError out of the manifests source)
        (SERVICES, {"metadata": {"name": "x"}, "spec": {"clusterIPs": ["10.96.0.11", {"fd00::a": None}]}},
         "spec.clusterIPs"),
        (SERVICES, {"metadata": {"name": "x"}, "spec": {"clusterIP": {"a": 1}}}, "spec.clusterIPs"),
        (SERVICES, {"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80, "name": {"a": 1}}]}}, "a string"),
    ],
)
def test_malformed_objects_raise_invalid_object(kind, raw, message) -> None:
    with pytest.raises(InvalidObject, match=message):
        kind.convert(raw)


def test_non_ip_addresses_dropped_from_ip_slices() -> None:
    from kubewatch.convert import endpoint_slice

    sl = endpoint_slice({"metadata": {"name": "s", "namespace": "n", "labels": {}}, "addressType": "IPv6",
                         "endpoints": [{"addresses": ["fd00::1", "fe80::1%eth0", "10.0.0.1", "not-an-ip"]}],
                         "ports": []})
    assert sl.endpoints[0].addresses == ("fd00::1",)


def test_metadata_strings_from_hand_written_yaml() -> None:
    """An unquoted timestamp in YAML is a datetime and an unquoted resourceVersion a number: read as the
    strings meant, as the oldest-first orders compare them with the API server's strings. Anything else
    is refused (fuzz/corpus/admission/crash-created-int.json: a number there failed the webhook's review)."""
    import datetime

    from kubewatch import INGRESSES

    raw = b.ingress("web")
    raw["metadata"].update(creationTimestamp=datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
                           resourceVersion=12, uid=7)
    ing = INGRESSES.convert(raw)
    assert (ing.created, ing.resource_version, ing.uid) == ("2024-01-02T03:04:05Z", "12", "7")
    raw["metadata"]["creationTimestamp"] = {"a": 1}
    with pytest.raises(InvalidObject, match="creationTimestamp"):
        INGRESSES.convert(raw)
