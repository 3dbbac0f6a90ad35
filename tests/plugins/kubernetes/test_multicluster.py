"""kubernetes `multicluster`: clusterset names from ServiceImports and multicluster EndpointSlices, as
CoreDNS's findMultiClusterServices answers them; cluster zones unchanged beside them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from corefile import CorefileError, parse
from dnsplugins.kubernetes import Kubernetes
from dnsplugins.kubernetes.metadata import NameParts, parse_name
from dnsserver.config import build
from kubewatch import SERVICE_IMPORTS, ServiceImport
from tests.dnstest import Case, Served, check, plugin_in, serve

MC = Path(__file__).resolve().parents[2] / "data" / "k8s" / "multicluster.yaml"
Z = "clusterset.local."
SVC = f"svc1.testns.svc.{Z}"
HL = f"hdls1.testns.svc.{Z}"


def corefile(options: str = "") -> str:
    return f"""cluster.local clusterset.local {{
    kubernetes {{
        manifests {MC}
        multicluster clusterset.local
        {options}
    }}
}}"""


def plugin(s: Served) -> Kubernetes:
    return plugin_in(Kubernetes, s)


CASES = [
    # ClusterSetIP: the import's IPs, its ports.
    Case(SVC, "A", answer=[f"{SVC} 5 IN A 10.0.0.1"], aa=True),
    Case(SVC, "AAAA", answer=[f"{SVC} 5 IN AAAA fd00::1"]),
    Case(f"_http._tcp.{SVC}", "SRV", answer=[f"_http._tcp.{SVC} 5 IN SRV 0 50 80 {SVC}"],
         extra=[f"{SVC} 5 IN A 10.0.0.1", f"{SVC} 5 IN AAAA fd00::1"]),
    Case(SVC, "SRV", answer=[f"{SVC} 5 IN SRV 0 50 80 {SVC}"],
         extra=[f"{SVC} 5 IN A 10.0.0.1", f"{SVC} 5 IN AAAA fd00::1"]),
    Case(SVC, "TXT", rcode="NOERROR"),
    Case(f"_dns._udp.{SVC}", "SRV", rcode="NXDOMAIN"),
    # An import without ports has no records (CoreDNS loops over its ports).
    Case(f"noports.testns.svc.{Z}", "A", rcode="NXDOMAIN"),
    Case(f"lonely.testns.svc.{Z}", "A", answer=[f"lonely.testns.svc.{Z} 5 IN A 10.0.0.3"]),
    # Headless: every ready endpoint of every cluster.
    Case(HL, "A", answer=[f"{HL} 5 IN A 172.0.0.2", f"{HL} 5 IN A 172.0.0.3"]),
    Case(HL, "AAAA", answer=[f"{HL} 5 IN AAAA 5678:abcd::1"]),
    Case(HL, "SRV", answer=[f"{HL} 5 IN SRV 0 33 80 hdls1-a.cluster1.{HL}",
                            f"{HL} 5 IN SRV 0 33 80 172-0-0-3.cluster1.{HL}",
                            f"{HL} 5 IN SRV 0 33 80 hdls1-a.cluster2.{HL}"],
         extra=[f"hdls1-a.cluster1.{HL} 5 IN A 172.0.0.2", f"172-0-0-3.cluster1.{HL} 5 IN A 172.0.0.3",
                f"hdls1-a.cluster2.{HL} 5 IN AAAA 5678:abcd::1"]),
    # Per-endpoint names carry the cluster id.
    Case(f"hdls1-a.cluster1.{HL}", "A", answer=[f"hdls1-a.cluster1.{HL} 5 IN A 172.0.0.2"]),
    Case(f"hdls1-a.cluster2.{HL}", "AAAA", answer=[f"hdls1-a.cluster2.{HL} 5 IN AAAA 5678:abcd::1"]),
    Case(f"hdls1-a.cluster2.{HL}", "A", rcode="NOERROR"),
    Case(f"172-0-0-3.cluster1.{HL}", "A", answer=[f"172-0-0-3.cluster1.{HL} 5 IN A 172.0.0.3"]),
    Case(f"hdls1-a.cluster3.{HL}", "A", rcode="NXDOMAIN"),
    Case(f"down.cluster1.{HL}", "A", rcode="NXDOMAIN"),  # not ready
    Case(f"hdls1-a.{HL}", "A", rcode="NXDOMAIN"),  # no cluster id: matches only slices without one
    Case(f"svc1-a.cluster1.{SVC}", "A", answer=[f"svc1-a.cluster1.{SVC} 5 IN A 172.0.0.10"]),
    Case(f"svc1-a.cluster1.{SVC}", "SRV", answer=[f"svc1-a.cluster1.{SVC} 5 IN SRV 0 100 8080 svc1-a.cluster1.{SVC}"],
         extra=[f"svc1-a.cluster1.{SVC} 5 IN A 172.0.0.10"]),
    # Names that do not exist; the zone's structure as in cluster zones.
    Case(f"nope.testns.svc.{Z}", "A", rcode="NXDOMAIN"),
    Case(f"svc1.nons.svc.{Z}", "A", rcode="NXDOMAIN"),
    Case(f"a.b.c.svc1.testns.svc.{Z}", "A", rcode="NXDOMAIN"),
    Case(f"dns-version.{Z}", "TXT", answer=[f'dns-version.{Z} 28800 IN TXT "1.1.0"']),
    # The cluster zone still answers from Services.
    Case("svc1.testns.svc.cluster.local.", "A", answer=["svc1.testns.svc.cluster.local. 5 IN A 10.96.0.99"]),
    Case("hdls1.testns.svc.cluster.local.", "A", rcode="NXDOMAIN"),
]


async def run(s: Served, cases: list[Case]) -> None:
    """The cases, with every negative answer's authority checked to be its zone's SOA (whose serial is
    the time of the last change) rather than listed."""
    for c in cases:
        r = await s.query(c)
        if not c.answer:
            zone = "cluster.local." if c.qname.endswith(".cluster.local.") else Z
            assert [(str(x.rname), x.rtype) for x in r.auth] == [(zone, 6)], c.qname
            c = replace(c, ns=[str(x) for x in r.auth])
        check(c, r)


async def test_multicluster_answers() -> None:
    async with serve(corefile()) as s:
        await run(s, CASES)


async def test_ignore_empty_service() -> None:
    async with serve(corefile("ignore empty_service")) as s:
        await run(s, [Case(SVC, "A", answer=[f"{SVC} 5 IN A 10.0.0.1"]),  # has an endpoint in cluster1
                      Case(f"lonely.testns.svc.{Z}", "A", rcode="NXDOMAIN")])


async def test_hot_path_follows_imports() -> None:
    async with serve(corefile()) as s:
        k = plugin(s)
        await s.query(Case(SVC, "A"))
        r = await s.query(Case(SVC, "A"))
        assert s.last_fast
        old = k.store.service_import("testns", "svc1")
        assert isinstance(old, ServiceImport)
        k.store.upsert(SERVICE_IMPORTS, old._replace(ips=("10.0.0.9",)))
        r = await s.query(Case(SVC, "A"))
        assert not s.last_fast
        assert [str(x.rdata) for x in r.rr] == ["10.0.0.9"]


ERRORS = [
    ("multicluster other.local", "multicluster zone 'other.local.' is not one of the plugin's zones"),
]


@pytest.mark.parametrize(("line", "message"), ERRORS)
def test_errors(line: str, message: str) -> None:
    text = f"cluster.local clusterset.local {{\n    kubernetes {{\n        manifests {MC}\n        {line}\n    }}\n}}\n"
    with pytest.raises(CorefileError) as e:
        build(parse(text, "Corefile"), 53)
    assert str(e.value).startswith("Corefile:4 - plugin/kubernetes: ")
    assert message in str(e.value)


def test_zones_default_to_none() -> None:
    cfg = build(parse(corefile().replace("multicluster clusterset.local", "multicluster"), "Corefile"), 53)
    k = next(p for p in cfg.plugins if isinstance(p, Kubernetes))
    assert k.cfg.multicluster == []


NAMES = [
    (f"a.c1.{SVC}", True, NameParts("svc", "testns", "svc1", endpoint="a", cluster="c1")),
    (f"_http._tcp.{SVC}", True, NameParts("svc", "testns", "svc1", port="http", protocol="tcp")),
    (f"_http.c1.{SVC}", True, NameParts("svc", "testns", "svc1", port="http", protocol="c1")),
    (f"a.c1.{SVC}", False, NameParts("svc", "testns", "svc1", port="a", protocol="c1")),
]


@pytest.mark.parametrize(("name", "mc", "want"), NAMES, ids=[f"{n} {m}" for n, m, _ in NAMES])
def test_metadata_names(name: str, mc: bool, want: NameParts) -> None:
    """As CoreDNS's parseRequest reads them: ENDPOINT.CLUSTER only in multicluster zones, and only without
    an underscore label."""
    assert parse_name(name, Z, mc) == want
