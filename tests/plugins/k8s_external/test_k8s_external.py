"""k8s_external: external IPs and load balancer addresses, hostnames as CNAME, headless Services, SRV,
the apex's SOA and NS, fallthrough, ttl, and the parse table; read from the kubernetes plugin's cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from corefile import CorefileError, parse
from dnsplugins.k8s_external import K8sExternal
from dnsplugins.kubernetes import Kubernetes
from dnsserver.config import build
from tests.dnstest import Case, Served, check, serve

CLUSTER = """apiVersion: v1
kind: Namespace
metadata: {name: ns}
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: ns}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.30
  externalIPs: [192.0.2.10]
  ports: [{name: http, port: 80, protocol: TCP}, {name: https, port: 443, protocol: TCP}]
status:
  loadBalancer:
    ingress: [{ip: 192.0.2.11}, {ip: "2001:db8::11"}]
---
apiVersion: v1
kind: Service
metadata: {name: named, namespace: ns}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.31
  ports: [{name: http, port: 80, protocol: TCP}]
status:
  loadBalancer:
    ingress: [{hostname: lb.provider.test}]
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: ns}
spec:
  clusterIP: 10.96.0.32
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: hl, namespace: ns}
spec:
  clusterIP: None
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hl-1
  namespace: ns
  labels: {kubernetes.io/service-name: hl}
addressType: IPv4
endpoints:
- addresses: [172.17.0.5]
  hostname: one
  conditions: {ready: true}
- addresses: [172.17.0.6]
  conditions: {ready: true}
- addresses: [172.17.0.7]
  conditions: {ready: false}
ports:
- {name: http, port: 8080, protocol: TCP}
"""

Z = "example.org."
NS_IPS = ["192.0.2.53", "2001:db8::53"]
SOA = f"{Z} 5 IN SOA ns1.dns.{Z} hostmaster.dns.{Z} 0 7200 1800 86400 5"


def corefile(tmp: Path, options: str = "") -> str:
    (tmp / "cluster.yaml").write_text(CLUSTER)
    return f""". {{
    k8s_external example.org {{
        {options}
    }}
    kubernetes cluster.local {{
        manifests {tmp / "cluster.yaml"}
    }}
    whoami
}}"""


CASES = [
    # (options, case)
    ("", Case(f"lb.ns.{Z}", answer=[f"lb.ns.{Z} 5 IN A 192.0.2.10", f"lb.ns.{Z} 5 IN A 192.0.2.11"])),
    ("", Case(f"LB.ns.{Z}", answer=[f"LB.ns.{Z} 5 IN A 192.0.2.10", f"LB.ns.{Z} 5 IN A 192.0.2.11"])),
    ("", Case(f"lb.ns.{Z}", "AAAA", answer=[f"lb.ns.{Z} 5 IN AAAA 2001:db8::11"])),
    ("", Case(f"lb.ns.{Z}", "SRV", answer=[f"lb.ns.{Z} 5 IN SRV 0 16 80 lb.ns.{Z}",
                                           f"lb.ns.{Z} 5 IN SRV 0 16 443 lb.ns.{Z}"],
              extra=[f"lb.ns.{Z} 5 IN A 192.0.2.10", f"lb.ns.{Z} 5 IN A 192.0.2.11",
                     f"lb.ns.{Z} 5 IN AAAA 2001:db8::11"])),
    ("", Case(f"_https._tcp.lb.ns.{Z}", "SRV", answer=[f"_https._tcp.lb.ns.{Z} 5 IN SRV 0 33 443 lb.ns.{Z}"],
              extra=[f"lb.ns.{Z} 5 IN A 192.0.2.10", f"lb.ns.{Z} 5 IN A 192.0.2.11",
                     f"lb.ns.{Z} 5 IN AAAA 2001:db8::11"])),
    ("", Case(f"_dns._udp.lb.ns.{Z}", "SRV", rcode="NXDOMAIN", ns=[SOA])),
    ("", Case(f"lb.ns.{Z}", "TXT", ns=[SOA])),
    # A hostname: the CNAME (its target looked up through the server, which the unit harness has not).
    ("", Case(f"named.ns.{Z}", answer=[f"named.ns.{Z} 5 IN CNAME lb.provider.test."])),
    # No external address: the name does not exist here.
    ("", Case(f"internal.ns.{Z}", rcode="NXDOMAIN", ns=[SOA])),
    ("", Case(f"hl.ns.{Z}", rcode="NXDOMAIN", ns=[SOA])),
    ("", Case(f"nope.ns.{Z}", rcode="NXDOMAIN", ns=[SOA])),
    ("", Case(f"lb.nons.{Z}", rcode="NXDOMAIN", ns=[SOA])),
    ("", Case(f"ns.{Z}", ns=[SOA])),  # a namespace exists and has no records
    ("", Case(f"a.b.c.lb.ns.{Z}", rcode="NXDOMAIN", ns=[SOA])),
    # headless: the ready endpoints.
    ("headless", Case(f"hl.ns.{Z}", answer=[f"hl.ns.{Z} 5 IN A 172.17.0.5", f"hl.ns.{Z} 5 IN A 172.17.0.6"])),
    ("headless", Case(f"one.hl.ns.{Z}", answer=[f"one.hl.ns.{Z} 5 IN A 172.17.0.5"])),
    ("headless", Case(f"hl.ns.{Z}", "SRV", answer=[f"hl.ns.{Z} 5 IN SRV 0 50 8080 one.hl.ns.{Z}",
                                                   f"hl.ns.{Z} 5 IN SRV 0 50 8080 172-17-0-6.hl.ns.{Z}"],
                                      extra=[f"one.hl.ns.{Z} 5 IN A 172.17.0.5",
                                             f"172-17-0-6.hl.ns.{Z} 5 IN A 172.17.0.6"])),
    # The apex.
    ("", Case(Z, "SOA", answer=[SOA])),
    ("", Case(Z, "NS", answer=[f"{Z} 5 IN NS ns1.dns.{Z}"],
              extra=[f"ns1.dns.{Z} 5 IN A 192.0.2.53", f"ns1.dns.{Z} 5 IN AAAA 2001:db8::53"])),
    ("", Case(f"ns1.dns.{Z}", "AAAA", answer=[f"ns1.dns.{Z} 5 IN AAAA 2001:db8::53"])),
    ("", Case(Z, "A", ns=[SOA])),
    ("", Case(f"dns.{Z}", "A", ns=[SOA])),
    ("", Case(f"ns1.dns.{Z}", "TXT", ns=[SOA])),
    ("", Case(f"ns2.dns.{Z}", "A", rcode="NXDOMAIN", ns=[SOA])),
    ("apex ext", Case(Z, "NS", answer=[f"{Z} 5 IN NS ns1.ext.{Z}"],
                      extra=[f"ns1.ext.{Z} 5 IN A 192.0.2.53", f"ns1.ext.{Z} 5 IN AAAA 2001:db8::53"])),
    ("ttl 30", Case(f"lb.ns.{Z}", answer=[f"lb.ns.{Z} 30 IN A 192.0.2.10", f"lb.ns.{Z} 30 IN A 192.0.2.11"])),
    # fallthrough: a name error goes on (whoami answers); without it, NXDOMAIN.
    ("fallthrough", Case(f"outside.{Z}", extra=[f"outside.{Z} 0 IN A 10.240.0.1",
                                                f"_udp.outside.{Z} 0 IN SRV 0 0 40212 ."])),
    ("", Case(f"outside.{Z}", rcode="NXDOMAIN", ns=[SOA])),
]


async def _check(s: Served, case: Case) -> None:
    reply = await s.query(case)
    for r in reply.auth + reply.rr:  # the SOA's serial is the time of the last change: not under test
        if r.rtype == 6:
            r.rdata.times = (0, *r.rdata.times[1:])
    check(case, reply)


@pytest.mark.parametrize(("options", "case"), CASES, ids=[f"{o}-{c.qname}-{c.qtype}" for o, c in CASES])
async def test_answers(tmp_path: Path, options: str, case: Case) -> None:
    async with serve(corefile(tmp_path, options)) as s:
        kube = next(p for p in s.config.plugins if isinstance(p, Kubernetes))
        kube.answerer.ns_ips = NS_IPS  # this host's interfaces otherwise
        for _ in range(2):  # computed, then from the answers kept per version (and the hot path)
            await _check(s, case)


async def test_reads_the_kubernetes_plugins_cache(tmp_path: Path) -> None:
    async with serve(corefile(tmp_path)) as s:
        ext = next(p for p in s.config.plugins if isinstance(p, K8sExternal))
        kube = next(p for p in s.config.plugins if isinstance(p, Kubernetes))
        assert ext.kube is kube  # one store, one watch
        await _check(s, CASES[0][1])
        await _check(s, CASES[0][1])
        assert s.last_fast
        # Another zone's name goes on to the kubernetes plugin's own store on the hot path.
        q = Case("lb.ns.svc.cluster.local.", answer=["lb.ns.svc.cluster.local. 5 IN A 10.96.0.30"])
        for _ in range(3):
            await _check(s, q)
        assert s.last_fast


@pytest.mark.parametrize(("body", "error"), [
    ("whoami\nk8s_external example.org", "Corefile:3 - plugin/k8s_external: kubernetes plugin not loaded"),
    ("k8s_external example.org {\n ttl\n}", "Corefile:3 - plugin/k8s_external: Wrong argument count"),
    ("k8s_external example.org {\n ttl x\n}", "Corefile:3 - plugin/k8s_external: ttl must be a number"),
    ("k8s_external example.org {\n ttl 3601\n}", "Corefile:3 - plugin/k8s_external: ttl must be in range"),
    ("k8s_external example.org {\n apex\n}", "Corefile:3 - plugin/k8s_external: Wrong argument count"),
    ("k8s_external example.org {\n frobnicate\n}", "Corefile:3 - plugin/k8s_external: unknown property 'frobnicate'"),
])
def test_parse_errors(body: str, error: str) -> None:
    with pytest.raises(CorefileError) as e:
        build(parse(f". {{\n{body}\n}}", "Corefile"), 53)
    assert str(e.value).startswith(error), str(e.value)


@pytest.mark.parametrize(("body", "zones", "apex", "ttl", "headless"), [
    ("k8s_external", ["."], "dns", 5, False),
    ("k8s_external example.org example.net {\n apex NS.\n ttl 0\n headless\n}", ["example.org.", "example.net."],
     "ns", 0, True),
])
def test_parse(body: str, zones: list[str], apex: str, ttl: int, headless: bool) -> None:
    cfg = build(parse(f". {{\n{body}\nkubernetes cluster.local {{\n manifests m\n}}\n}}", "Corefile"), 53)
    p = next(p for p in cfg.plugins if isinstance(p, K8sExternal))
    assert (p.zones, p.apex, p.ttl, p.headless) == (zones, apex, ttl, headless)
