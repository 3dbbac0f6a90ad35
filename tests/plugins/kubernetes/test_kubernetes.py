"""kubernetes: every record kind of the DNS spec, and CoreDNS's behaviour where the spec is silent.

The cluster is tests/data/k8s/cluster.yaml, loaded through the plugin's `manifests` source into the
same store the API source feeds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corefile import CorefileError, parse
from dnsplugins.kubernetes import Kubernetes
from dnsserver.config import build
from kubewatch import PODS, SERVICES, Pod
from tests.dnstest import Case, Served, serve

CLUSTER = Path(__file__).resolve().parents[2] / "data" / "k8s" / "cluster.yaml"


def corefile(options: str = "pods insecure", keys: str = "cluster.local in-addr.arpa ip6.arpa", extra: str = "") -> str:
    return f"""{keys} {{
    kubernetes {{
        manifests {CLUSTER}
        {options}
    }}
    {extra}
}}"""


def plugin(s: Served) -> Kubernetes:
    return next(p for p in s.config.blocks[0].plugins if p.name == "kubernetes")


Z = "cluster.local."
SVC = f"my-svc.testns.svc.{Z}"
HL = f"headless.testns.svc.{Z}"

# Positive answers: (case) — every spec record kind.
POSITIVE = [
    Case(f"dns-version.{Z}", "TXT", answer=[f'dns-version.{Z} 28800 IN TXT "1.1.0"']),
    Case(SVC, "A", answer=[f"{SVC} 5 IN A 10.96.0.11"], aa=True),
    Case(SVC, "AAAA", answer=[f"{SVC} 5 IN AAAA fd00:10:96::a"]),
    Case(f"kubernetes.default.svc.{Z}", "A", answer=[f"kubernetes.default.svc.{Z} 5 IN A 10.96.0.1"]),
    Case(HL, "A", answer=[f"{HL} 5 IN A 172.17.0.6", f"{HL} 5 IN A 172.17.0.7"]),  # not-ready .8 left out
    Case(f"web-0.{HL}", "A", answer=[f"web-0.{HL} 5 IN A 172.17.0.6"]),
    Case(f"172-17-0-7.{HL}", "A", answer=[f"172-17-0-7.{HL} 5 IN A 172.17.0.7"]),
    Case(f"172-17-0-5.{SVC}", "A", answer=[f"172-17-0-5.{SVC} 5 IN A 172.17.0.5"]),  # endpoint of a ClusterIP svc
    # Dual stack: each port counts once per ClusterIP, so the weight is 100/2 (CoreDNS's rule).
    Case(
        f"_http._tcp.{SVC}",
        "SRV",
        answer=[f"_http._tcp.{SVC} 5 IN SRV 0 50 80 {SVC}"],
        extra=[f"{SVC} 5 IN A 10.96.0.11", f"{SVC} 5 IN AAAA fd00:10:96::a"],
    ),
    Case(
        f"_dns._udp.{SVC}",
        "SRV",
        answer=[f"_dns._udp.{SVC} 5 IN SRV 0 50 53 {SVC}"],
        extra=[f"{SVC} 5 IN A 10.96.0.11", f"{SVC} 5 IN AAAA fd00:10:96::a"],
    ),
    Case(
        f"_http._tcp.{HL}",
        "SRV",
        answer=[f"_http._tcp.{HL} 5 IN SRV 0 50 80 web-0.{HL}", f"_http._tcp.{HL} 5 IN SRV 0 50 80 172-17-0-7.{HL}"],
        extra=[f"web-0.{HL} 5 IN A 172.17.0.6", f"172-17-0-7.{HL} 5 IN A 172.17.0.7"],
    ),
    # A bare service SRV lists every port.
    Case(
        SVC,
        "SRV",
        answer=[f"{SVC} 5 IN SRV 0 25 80 {SVC}", f"{SVC} 5 IN SRV 0 25 53 {SVC}"],
        extra=[f"{SVC} 5 IN A 10.96.0.11", f"{SVC} 5 IN AAAA fd00:10:96::a"],
    ),
    Case("11.0.96.10.in-addr.arpa.", "PTR", answer=[f"11.0.96.10.in-addr.arpa. 5 IN PTR {SVC}"]),
    Case(
        "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.",
        "PTR",
        answer=[f"a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa. 5 IN PTR {SVC}"],
    ),
    Case("6.0.17.172.in-addr.arpa.", "PTR", answer=[f"6.0.17.172.in-addr.arpa. 5 IN PTR web-0.{HL}"]),
    Case(f"ext.testns.svc.{Z}", "A", answer=[f"ext.testns.svc.{Z} 5 IN CNAME {SVC}", f"{SVC} 5 IN A 10.96.0.11"]),
    Case(f"ext.testns.svc.{Z}", "CNAME", answer=[f"ext.testns.svc.{Z} 5 IN CNAME {SVC}"]),
    Case(f"172-17-0-99.testns.pod.{Z}", "A", answer=[f"172-17-0-99.testns.pod.{Z} 5 IN A 172.17.0.99"]),
    Case(f"fd00--1.testns.pod.{Z}", "AAAA", answer=[f"fd00--1.testns.pod.{Z} 5 IN AAAA fd00::1"]),
]

# Negative answers: NXDOMAIN versus NODATA for every kind of name; each carries the SOA.
NEGATIVE = [
    (f"nope.testns.svc.{Z}", "A", "NXDOMAIN"),
    (f"my-svc.nons.svc.{Z}", "A", "NXDOMAIN"),  # namespace does not exist
    (f"testns.svc.{Z}", "A", "NOERROR"),  # an existing namespace: NODATA
    (f"nons.svc.{Z}", "A", "NXDOMAIN"),
    (f"svc.{Z}", "A", "NOERROR"),
    (f"pod.{Z}", "A", "NOERROR"),
    (f"svc.{Z}", "TXT", "NXDOMAIN"),  # CoreDNS's TXT quirk
    (Z, "TXT", "NXDOMAIN"),
    (Z, "A", "NOERROR"),  # the apex: NODATA
    (f"bogus.{Z}", "A", "NXDOMAIN"),  # neither svc nor pod
    (f"dns-version.{Z}", "A", "NXDOMAIN"),
    (SVC, "TXT", "NOERROR"),
    (SVC, "MX", "NOERROR"),
    (SVC, "CNAME", "NOERROR"),
    (f"nope.testns.svc.{Z}", "SOA", "NOERROR"),  # SOA below the apex: NODATA even if the name does not exist
    (f"_https._tcp.{SVC}", "SRV", "NXDOMAIN"),  # no such port
    (f"web-9.{HL}", "A", "NXDOMAIN"),
    (f"172-17-0-8.{HL}", "A", "NXDOMAIN"),  # not ready
    (f"a.b.c.{SVC}", "A", "NXDOMAIN"),
    (f"empty.testns.svc.{Z}", "AAAA", "NOERROR"),  # single-stack: the other family is NODATA
    (f"172-17-0-99.testns.pod.{Z}", "AAAA", "NOERROR"),
    (f"not-an-ip.testns.pod.{Z}", "A", "NXDOMAIN"),
    (f"172-17-0-5.nons.pod.{Z}", "A", "NXDOMAIN"),
    ("99.0.96.10.in-addr.arpa.", "PTR", "NXDOMAIN"),
    ("0.96.10.in-addr.arpa.", "PTR", "NXDOMAIN"),
    (f"ext.testns.svc.{Z}", "SRV", "NOERROR"),
    (f"_http._tcp.ext.testns.svc.{Z}", "SRV", "NXDOMAIN"),
]


@pytest.mark.parametrize("case", POSITIVE, ids=lambda c: f"{c.qname}/{c.qtype}")
async def test_positive(case: Case) -> None:
    async with serve(corefile()) as s:
        await s.run([case])


@pytest.mark.parametrize(("qname", "qtype", "rcode"), NEGATIVE, ids=lambda v: str(v))
async def test_negative_has_soa(qname: str, qtype: str, rcode: str) -> None:
    async with serve(corefile()) as s:
        r = await s.query(Case(qname, qtype))
        assert (r.header.rcode, len(r.rr)) == ({"NOERROR": 0, "NXDOMAIN": 3}[rcode], 0), str(r)
        assert r.header.aa == 1
        assert [x.rtype for x in r.auth] == [6], str(r)
        zone = "in-addr.arpa." if qname.endswith("in-addr.arpa.") else "cluster.local."
        soa = r.auth[0]
        assert str(soa.rname) == zone
        assert soa.ttl == 5
        assert str(soa.rdata.mname) == f"ns.dns.{zone}"
        assert soa.rdata.times[1:] == (7200, 1800, 86400, 5)


async def test_apex_soa_ns_and_case() -> None:
    async with serve(corefile()) as s:
        r = await s.query(Case("CLUSTER.local.", "SOA"))
        assert str(r.q.qname) == "CLUSTER.local."
        assert [x.rtype for x in r.rr] == [6]
        r = await s.query(Case("cluster.local.", "NS"))
        assert r.header.rcode == 0
        assert all(x.rtype == 2 for x in r.rr)
        assert r.rr
        r = await s.query(Case("My-Svc.TestNS.svc.Cluster.Local.", "A"))
        assert str(r.q.qname) == "My-Svc.TestNS.svc.Cluster.Local."
        assert [str(x.rdata) for x in r.rr] == ["10.96.0.11"]


async def test_pods_modes() -> None:
    name = f"172-17-0-5.testns.pod.{Z}"
    async with serve(corefile("pods disabled")) as s:
        assert (await s.query(Case(name, "A"))).header.rcode == 3
    async with serve(corefile("pods verified")) as s:
        # No Pod objects in the fixture: verified mode finds none.
        assert (await s.query(Case(name, "A"))).header.rcode == 3
        store = plugin(s).store
        # A pod holding the address in another namespace does not vouch for this name.
        store.upsert(PODS, Pod("default", "elsewhere", ("172.17.0.5",), "Running", False))
        assert (await s.query(Case(name, "A"))).header.rcode == 3
        store.upsert(PODS, Pod("testns", "my-pod-1", ("172.17.0.5",), "Running", False))
        r = await s.query(Case(name, "A"))
        assert r.header.rcode == 0
        assert [str(x.rdata) for x in r.rr] == ["172.17.0.5"]
        # A pod being deleted no longer counts.
        store.upsert(PODS, Pod("testns", "my-pod-1", ("172.17.0.5",), "Running", True))
        assert (await s.query(Case(name, "A"))).header.rcode == 3


async def test_ttl_option_and_soa_ttl_cap() -> None:
    async with serve(corefile("ttl 600")) as s:
        r = await s.query(Case(SVC, "A"))
        assert [x.ttl for x in r.rr] == [600]
        r = await s.query(Case(f"nope.{Z}", "A"))
        assert r.auth[0].ttl == 300
        assert r.auth[0].rdata.times[4] == 600


async def test_fallthrough_only_on_name_errors() -> None:
    extra = "hosts {\n 10.9.9.9 nope.testns.svc.cluster.local\n 10.9.9.8 my-svc.testns.svc.cluster.local\n }"
    async with serve(corefile("fallthrough", extra=extra)) as s:
        r = await s.query(Case(f"nope.testns.svc.{Z}", "A"))
        assert [str(x.rdata) for x in r.rr] == ["10.9.9.9"]  # NXDOMAIN fell through to hosts
        r = await s.query(Case(SVC, "TXT"))
        assert r.header.rcode == 0
        assert r.rr == []


async def test_ignore_empty_service_and_endpoint_pod_names() -> None:
    async with serve(corefile()) as s:
        assert [str(x.rdata) for x in (await s.query(Case(f"empty.testns.svc.{Z}", "A"))).rr] == ["10.96.0.20"]
    async with serve(corefile("ignore empty_service")) as s:
        assert (await s.query(Case(f"empty.testns.svc.{Z}", "A"))).header.rcode == 3
    async with serve(corefile("endpoint_pod_names")) as s:
        r = await s.query(Case(f"web-1.{HL}", "A"))
        assert [str(x.rdata) for x in r.rr] == ["172.17.0.7"]


async def test_namespaces_option() -> None:
    async with serve(corefile("namespaces default")) as s:
        assert (await s.query(Case(SVC, "A"))).header.rcode == 3
        assert (await s.query(Case(f"kubernetes.default.svc.{Z}", "A"))).header.rcode == 0


async def test_answers_come_from_the_hot_path_without_cache() -> None:
    async with serve(corefile()) as s:
        await s.query(Case(SVC, "A"))
        assert not s.last_fast
        r = await s.query(Case(SVC, "A"))
        assert s.last_fast
        assert [str(x.rdata) for x in r.rr] == ["10.96.0.11"]
        r = await s.query(Case(f"nope.testns.svc.{Z}", "A"))
        r = await s.query(Case(f"nope.testns.svc.{Z}", "A"))
        assert s.last_fast
        assert r.header.rcode == 3
        assert [x.rtype for x in r.auth] == [6]


async def test_memo_follows_store_changes() -> None:
    async with serve(corefile()) as s:
        k = plugin(s)
        await s.query(Case(f"new.testns.svc.{Z}", "A"))
        assert (await s.query(Case(f"new.testns.svc.{Z}", "A"))).header.rcode == 3
        old = k.store.service("testns", "my-svc")
        k.store.upsert(SERVICES, old._replace(name="new", cluster_ips=("10.96.0.77",)))
        r = await s.query(Case(f"new.testns.svc.{Z}", "A"))
        assert not s.last_fast
        assert [str(x.rdata) for x in r.rr] == ["10.96.0.77"]


async def test_unsynced_name_error_is_servfail() -> None:
    async with serve(corefile()) as s:
        k = plugin(s)
        # A kind of its own that never syncs (a kind only another plugin reads would not count).
        assert k.membership is not None
        k.membership.kinds.append("pods")
        r = await s.query(Case(f"nope.testns.svc.{Z}", "A"))
        assert r.header.rcode == 2
        assert [x.rtype for x in r.auth] == [6]
        r = await s.query(Case(SVC, "A"))  # existing names are still answered
        assert [str(x.rdata) for x in r.rr] == ["10.96.0.11"]
        assert not k.is_ready()


PARSE_ERRORS = [
    ("kubernetes in-addr.arpa {\n manifests x\n }", "Corefile:2 - plugin/kubernetes: non-reverse zone name must be"),
    ("kubernetes {\n pods sometimes\n }", "Corefile:3 - plugin/kubernetes: pods must be one of"),
    ("kubernetes {\n ttl 3601\n }", "Corefile:3 - plugin/kubernetes: ttl must be in range [0, 3600]"),
    ("kubernetes {\n ttl x\n }", "Corefile:3 - plugin/kubernetes: ttl must be a number"),
    ("kubernetes {\n namespaces a\n namespace_labels x=y\n }", "Corefile:4 - plugin/kubernetes: namespaces and"),
    ("kubernetes {\n frobnicate\n }", "Corefile:3 - plugin/kubernetes: unknown property 'frobnicate'"),
    ("kubernetes {\n kubeconfig\n }", "Corefile:3 - plugin/kubernetes: Wrong argument count"),
    ("kubernetes {\n ignore everything\n }", "Corefile:3 - plugin/kubernetes: unable to parse ignore value"),
    ("kubernetes\n kubernetes", "Corefile:3 - plugin/kubernetes: this plugin can only be used once"),
    ("kubernetes {\n endpoint ftp://x\n }", "Corefile:3 - plugin/kubernetes: endpoint 'ftp://x' must start with"),
]


@pytest.mark.parametrize(("text", "want"), PARSE_ERRORS)
def test_parse_errors(text: str, want: str) -> None:
    with pytest.raises(CorefileError) as ei:
        build(parse(f"cluster.local {{\n {text}\n}}", "Corefile"), 53)
    assert str(ei.value).startswith(want), str(ei.value)


def test_kubeadm_options_parse() -> None:
    cfg = build(
        parse(
            f"""cluster.local in-addr.arpa ip6.arpa {{
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        manifests {CLUSTER}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
        apiserver_qps 50
        ignore
    }}
}}""",
            "Corefile",
        ),
        53,
    )
    k = cfg.blocks[0].plugins[0]
    assert k.cfg.zones == ["cluster.local.", "in-addr.arpa.", "ip6.arpa."]
    assert k.cfg.primary == "cluster.local."
    assert k.cfg.pods == "insecure"
    assert k.cfg.ttl == 30
    assert k.cfg.fallthrough.covers("1.in-addr.arpa.")
    assert not k.cfg.fallthrough.covers("x.cluster.local.")
