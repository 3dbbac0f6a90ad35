"""k8s_gateway: the external plugin's answers for Ingress, Service, HTTPRoute and GRPCRoute host names,
its apex, NS and SOA records, fallthrough, its Corefile errors, the hot path, and the store it shares
with the kubernetes plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from corefile import CorefileError, parse
from dnsplugins.k8s_gateway import K8sGateway
from dnsplugins.kubernetes import Kubernetes
from dnsserver.config import build
from kubewatch import INGRESSES, Ingress
from kubewatch.shared import SHARED
from tests.dnstest import Case, Served, plugin_in, serve

EDGE = Path(__file__).resolve().parent / "edge.yaml"
CLUSTER = Path(__file__).resolve().parents[2] / "data" / "k8s" / "cluster.yaml"
Z = "example.com."
SOA = f"{Z} 60 IN SOA dns1.kube-system.{Z} hostmaster.dns1.kube-system.{Z} 12345 7200 1800 86400 60"


def corefile(options: str = "", keys: str = "example.com", extra: str = "") -> str:
    return f"""{keys} {{
    k8s_gateway {{
        manifests {EDGE}
        {options}
    }}
    {extra}
}}"""


def plugin(s: Served) -> K8sGateway:
    return plugin_in(K8sGateway, s)


DEFAULT = [
    # Ingress: its status addresses, by family; host names in the status are not resolved.
    Case(f"both.{Z}", "A", answer=[f"both.{Z} 60 IN A 192.0.2.10"], aa=True),
    Case(f"both.{Z}", "AAAA", answer=[f"both.{Z} 60 IN AAAA 2001:db8::10"]),
    # A name that exists only in the other family: NOERROR with the SOA (RFC 4074).
    Case(f"api.{Z}", "AAAA", ns=[SOA]),
    # An Ingress without status has no address: NXDOMAIN.
    Case(f"pending.{Z}", "A", rcode="NXDOMAIN", ns=[SOA]),
    # Wildcard hosts match only themselves.
    Case(f"x.wild.{Z}", "A", rcode="NXDOMAIN", ns=[SOA]),
    Case(f"*.wild.{Z}", "A", answer=[f"*.wild.{Z} 60 IN A 192.0.2.10"]),
    # HTTPRoute before Ingress in the default order; a route's Gateways' IPAddress addresses.
    Case(f"web.{Z}", "A", answer=[f"web.{Z} 60 IN A 192.0.2.31"]),
    Case(f"api.{Z}", "A", answer=[f"api.{Z} 60 IN A 192.0.2.30", f"api.{Z} 60 IN A 192.0.2.31"]),
    Case(f"rpc.{Z}", "A", answer=[f"rpc.{Z} 60 IN A 192.0.2.30"]),
    # Services: NAME.NAMESPACE below the zone, or the annotation; externalIPs over the status.
    Case(f"front.shop.{Z}", "A", answer=[f"front.shop.{Z} 60 IN A 192.0.2.20"]),
    Case(f"named.{Z}", "A", answer=[f"named.{Z} 60 IN A 198.51.100.7"]),
    Case(f"named.shop.{Z}", "A", rcode="NXDOMAIN", ns=[SOA]),  # the annotation replaces NAME.NAMESPACE
    Case(f"a.{Z}", "A", rcode="NXDOMAIN", ns=[SOA]),  # a list is not one name: NAME.NAMESPACE stays
    Case(f"listed.shop.{Z}", "A", answer=[f"listed.shop.{Z} 60 IN A 192.0.2.22"]),
    Case(f"internal.shop.{Z}", "A", rcode="NXDOMAIN", ns=[SOA]),  # not a LoadBalancer
    # Other types: NODATA with the SOA; SOA for any name; NS at the apex with glue.
    Case(f"web.{Z}", "TXT", ns=[SOA]),
    Case(f"nope.{Z}", "MX", ns=[SOA]),
    Case(f"web.{Z}", "SOA", answer=[SOA]),
    Case(Z, "SOA", answer=[SOA]),
    Case(Z, "NS", answer=[f"{Z} 60 IN NS dns1.kube-system.{Z}"],
         extra=[f"dns1.kube-system.{Z} 60 IN A 192.0.2.53"]),
    Case(f"web.{Z}", "NS", ns=[SOA]),
    Case(Z, "A", ns=[SOA]),  # the apex exists
    # The server's own name and what is below it.
    Case(f"dns1.kube-system.{Z}", "A", answer=[f"dns1.kube-system.{Z} 60 IN A 192.0.2.53"]),
    Case(f"dns1.kube-system.{Z}", "AAAA", ns=[SOA]),
    Case(f"x.dns1.kube-system.{Z}", "A", rcode="NXDOMAIN", ns=[SOA]),
    # The question's spelling is kept.
    Case("WEB.Example.COM.", "A", answer=["WEB.Example.COM. 60 IN A 192.0.2.31"]),
]

OPTIONS = [
    ("resources Ingress", [Case(f"web.{Z}", "A", answer=[f"web.{Z} 60 IN A 192.0.2.10"]),
                           Case(f"front.shop.{Z}", "A", rcode="NXDOMAIN", ns=[SOA]),
                           Case(f"api.{Z}", "A", rcode="NXDOMAIN", ns=[SOA])]),
    ("resources Ingress HTTPRoute", [Case(f"web.{Z}", "A", answer=[f"web.{Z} 60 IN A 192.0.2.10"])]),
    ("resources Service TLSRoute", [Case(f"front.shop.{Z}", "A", answer=[f"front.shop.{Z} 60 IN A 192.0.2.20"]),
                                    Case(f"web.{Z}", "A", rcode="NXDOMAIN", ns=[SOA])]),
    ("ttl 30", [Case(f"web.{Z}", "A", answer=[f"web.{Z} 30 IN A 192.0.2.31"])]),
    ("apex dns2.kube-system\n secondary dns1.kube-system", [
        Case(Z, "NS", answer=[f"{Z} 60 IN NS dns2.kube-system.{Z}", f"{Z} 60 IN NS dns1.kube-system.{Z}"],
             extra=[f"dns2.kube-system.{Z} 60 IN A 192.0.2.54", f"dns1.kube-system.{Z} 60 IN A 192.0.2.53"]),
        Case(f"dns2.kube-system.{Z}", "A", answer=[f"dns2.kube-system.{Z} 60 IN A 192.0.2.54"])]),
]


async def test_answers() -> None:
    async with serve(corefile()) as s:
        await s.run(DEFAULT)


@pytest.mark.parametrize(("options", "cases"), OPTIONS, ids=[o for o, _ in OPTIONS])
async def test_options(options: str, cases: list[Case]) -> None:
    async with serve(corefile(options)) as s:
        await s.run(cases)


async def test_fallthrough_passes_names_without_address() -> None:
    async with serve(corefile("fallthrough", extra="whoami")) as s:
        await s.run([Case(f"web.{Z}", "A", answer=[f"web.{Z} 60 IN A 192.0.2.31"])])
        r = await s.query(Case(f"nope.{Z}", "A"))
        assert r.header.rcode == 0
        assert [x.rtype for x in r.ar] == [1, 33]  # whoami answered


async def test_names_outside_the_zones_go_on() -> None:
    text = corefile(keys=".", extra="whoami").replace("k8s_gateway {", "k8s_gateway example.com {")
    async with serve(text) as s:
        r = await s.query(Case("other.org.", "A"))
        assert [x.rtype for x in r.ar] == [1, 33]


async def test_hot_path_follows_changes() -> None:
    async with serve(corefile()) as s:
        k = plugin(s)
        await s.query(Case(f"new.{Z}", "A"))
        assert (await s.query(Case(f"new.{Z}", "A"))).header.rcode == 3
        assert s.last_fast  # remembered, sent from the hot path
        # An Ingress change (not a DNS kind for the kubernetes plugin) moves this plugin's version on.
        old = k.store.get(INGRESSES, "shop", "web")
        assert isinstance(old, Ingress)
        k.store.upsert(INGRESSES, old._replace(name="new", spec={"rules": [{"host": "new.example.com"}]}))
        r = await s.query(Case(f"new.{Z}", "A"))
        assert not s.last_fast
        assert [str(x.rdata) for x in r.rr] == ["192.0.2.10"]
        r = await s.query(Case(f"new.{Z}", "A"))
        assert s.last_fast
        assert r.header.aa
        assert [str(x.rdata) for x in r.rr] == ["192.0.2.10"]


async def test_every_path_gives_the_chains_bytes() -> None:
    async with serve(corefile()) as s:
        for c in DEFAULT:
            q = c.message().pack()
            await s.wire(q)
            assert await s.wire(q) == await s.chain(q), c.qname


async def test_unsynced_is_servfail() -> None:
    async with serve(corefile()) as s:
        k = plugin(s)
        assert k.membership is not None
        k.membership.kinds.append("pods")  # a kind of its own that never syncs
        r = await s.query(Case(f"web.{Z}", "A"))
        assert r.header.rcode == 2
        assert not k.is_ready()


async def test_shares_the_kubernetes_plugins_store_and_watches() -> None:
    """Same manifests in both plugins (two blocks): one store, one source per kind."""
    text = f"""cluster.local {{
    kubernetes {{
        manifests {EDGE}
    }}
}}
example.com {{
    k8s_gateway {{
        manifests {EDGE}
    }}
}}"""
    async with serve(text) as s:
        k = next(p for b in s.config.blocks for p in b.plugins if isinstance(p, Kubernetes))
        g = next(p for b in s.config.blocks for p in b.plugins if isinstance(p, K8sGateway))
        assert k.store is g.store
        assert len(SHARED) == 1
        assert k.membership is not None
        assert g.membership is not None
        shared = k.membership.shared
        # services: read by both, fed once.
        assert sorted(shared.fed) == ["endpointslices", "gateways", "grpcroutes", "httproutes", "ingresses",
                                      "namespaces", "services"]
        assert len(shared.sources) == 2  # kubernetes' kinds, then the kinds only k8s_gateway added
        await s.run([Case(f"front.shop.{Z}", "A", answer=[f"front.shop.{Z} 60 IN A 192.0.2.20"])])
    assert len(SHARED) == 0  # the last member stopped: sources stopped, store forgotten


PARSE_ERRORS = [
    ("k8s_gateway {\n resources\n}", 2, "Incorrectly formated 'resource' parameter"),
    ("k8s_gateway {\n resources Pod\n}", 2, "unknown resource 'Pod'; known: HTTPRoute, GRPCRoute, Ingress, Service"),
    ("k8s_gateway {\n ttl 3601\n}", 2, "ttl must be in range [0, 3600]: 3601"),
    ("k8s_gateway {\n ttl x\n}", 2, "ttl must be a number, not 'x'"),
    ("k8s_gateway {\n apex\n}", 2, "Wrong argument count or unexpected line ending after 'apex'"),
    ("k8s_gateway {\n kubeconfig a b c\n}", 2, "Wrong argument count or unexpected line ending after 'c'"),
    ("k8s_gateway {\n manifests x\n kubeconfig y\n}", 4, "manifests and kubeconfig cannot both be set"),
    ("k8s_gateway {\n kubeconfig /nonexistent/kubeconfig\n}", 3, "/nonexistent/kubeconfig"),
]


@pytest.mark.parametrize(("text", "line", "message"), PARSE_ERRORS, ids=[t for t, _, _ in PARSE_ERRORS])
def test_corefile_errors(text: str, line: int, message: str) -> None:
    with pytest.raises(CorefileError) as e:
        build(parse(f"example.com {{\n{text}\n}}\n", "Corefile"), 53)
    assert f"Corefile:{line + 1} - plugin/k8s_gateway: " in str(e.value)
    assert message in str(e.value)


PARSED = [
    ("k8s_gateway", {"zones": ["example.com."], "resources": ["HTTPRoute", "GRPCRoute", "Ingress", "Service"],
                     "ttl": 60, "apex": "dns1.kube-system", "secondary": ""}),
    ("k8s_gateway other.org {\n resources Service Ingress Service\n apex ExDNS.NS.\n secondary b.ns\n}",
     {"zones": ["other.org."], "resources": ["Service", "Ingress"], "apex": "exdns.ns", "secondary": "b.ns"}),
]


@pytest.mark.parametrize(("text", "want"), PARSED, ids=[t for t, _ in PARSED])
def test_parse(text: str, want: dict[str, object]) -> None:
    body = text if "{" in text else text + " {\n}"
    body = body.replace("{\n", f"{{\n manifests {EDGE}\n", 1)
    cfg = build(parse(f"example.com {{\n{body}\n}}\n", "Corefile"), 53)
    g = next(p for p in cfg.plugins if isinstance(p, K8sGateway))
    for key, value in want.items():
        assert getattr(g.cfg, key) == value, key
