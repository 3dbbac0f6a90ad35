"""autopath: the search path walked per client (Pods by source address), the CNAME put in front, the
fixed resolv.conf path, the hot path kept per client, and the parse table."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from dnslib import EDNS0, DNSRecord

from corefile import CorefileError, parse
from dnsplugins.autopath import AutoPath, key_name, resolv_search
from dnsplugins.cache import Cache
from dnsserver.config import build
from dnsserver.wire.query import parse_query
from tests.dnstest import Case, Served, check, serve

POD_A = ("10.1.0.2", 40212)  # a Pod in namespace a
POD_B = ("10.1.0.3", 40212)  # a Pod in namespace b
STRANGER = ("10.9.9.9", 40212)  # no Pod has this address

CLUSTER = """apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Namespace
metadata: {name: b}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: b}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: a}
spec:
  clusterIP: 10.96.0.21
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Pod
metadata: {name: pa, namespace: a}
status: {phase: Running, podIP: 10.1.0.2, podIPs: [{ip: 10.1.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: pb, namespace: b}
status: {phase: Running, podIP: 10.1.0.3, podIPs: [{ip: 10.1.0.3}]}
"""

HOSTS = """hosts {
        10.0.0.7 example.com
        10.0.0.8 www.search.test
        fallthrough
    }"""


def corefile(tmp: Path, resolv: str = "@kubernetes", pods: str = "verified", cache: bool = False) -> str:
    (tmp / "cluster.yaml").write_text(CLUSTER)
    return f""". {{
    autopath {resolv}
    {"cache 30" if cache else ""}
    {HOSTS}
    kubernetes cluster.local {{
        manifests {tmp / "cluster.yaml"}
        pods {pods}
    }}
}}"""


Z = "cluster.local."
# (client, case): what each client gets for the names a Pod's resolver asks with ndots:5.
KUBE_CASES = [
    # The first search element of Pod a: the walk finds web.b.svc (the 2nd element), CNAME in front.
    (POD_A, Case(f"web.b.a.svc.{Z}", answer=[f"web.b.a.svc.{Z} 5 IN CNAME web.b.svc.{Z}",
                                             f"web.b.svc.{Z} 5 IN A 10.96.0.20"])),
    # An outside name: found bare, after every cluster element.
    (POD_A, Case(f"example.com.a.svc.{Z}", answer=[f"example.com.a.svc.{Z} 3600 IN CNAME example.com.",
                                                   "example.com. 3600 IN A 10.0.0.7"])),
    # Found at the first element itself: the answer as it is, no CNAME.
    (POD_A, Case(f"api.a.svc.{Z}", answer=[f"api.a.svc.{Z} 5 IN A 10.96.0.21"])),
    # Nothing anywhere: the first lookup's NXDOMAIN, the client searches on.
    (POD_A, Case(f"nothing.a.svc.{Z}", rcode="NXDOMAIN",
                 ns=[f"{Z} 5 IN SOA ns.dns.{Z} hostmaster.{Z} 0 7200 1800 86400 5"])),
    # Not Pod b's first element: passed on untouched (NXDOMAIN from kubernetes).
    (POD_B, Case(f"web.b.a.svc.{Z}", rcode="NXDOMAIN",
                 ns=[f"{Z} 5 IN SOA ns.dns.{Z} hostmaster.{Z} 0 7200 1800 86400 5"])),
    (POD_B, Case(f"example.com.b.svc.{Z}", answer=[f"example.com.b.svc.{Z} 3600 IN CNAME example.com.",
                                                   "example.com. 3600 IN A 10.0.0.7"])),
    # No Pod at the address: no autopath.
    (STRANGER, Case(f"example.com.a.svc.{Z}", rcode="NXDOMAIN",
                    ns=[f"{Z} 5 IN SOA ns.dns.{Z} hostmaster.{Z} 0 7200 1800 86400 5"])),
    # A name outside the cluster's zone is never autopathed.
    (POD_A, Case("example.com.", answer=["example.com. 3600 IN A 10.0.0.7"])),
    # Exactly the first element: passed on (CoreDNS answers SERVFAIL).
    (POD_A, Case(f"a.svc.{Z}", qtype="TXT", rcode="NXDOMAIN",
                 ns=[f"{Z} 5 IN SOA ns.dns.{Z} hostmaster.{Z} 0 7200 1800 86400 5"])),
]


async def _check(s: Served, client: tuple[str, int], case: Case) -> None:
    case.client = client
    reply = await s.query(case)
    for r in reply.auth:  # the SOA's serial is the time of the last change: not under test
        if r.rtype == 6:
            r.rdata.times = (0, *r.rdata.times[1:])
    check(case, reply)


@pytest.mark.parametrize(("client", "case"), KUBE_CASES, ids=[f"{c[0]}-{k.qname}" for c, k in KUBE_CASES])
async def test_kubernetes_search_path(tmp_path: Path, client: tuple[str, int], case: Case) -> None:
    async with serve(corefile(tmp_path)) as s:
        await _check(s, client, case)


@pytest.mark.parametrize("cache", [False, True])
async def test_one_pods_answer_never_answers_another(tmp_path: Path, cache: bool) -> None:
    """Point 6: an answer made for Pod a's namespace never reaches Pod b or a stranger, whatever the order,
    with or without a cache after autopath (whose hot path hands on or walks, per client)."""
    async with serve(corefile(tmp_path, cache=cache)) as s:
        for p in s.config.plugins:
            if isinstance(p, Cache):
                p.clock = lambda: 1000.0  # TTLs must not tick between the answers compared
        cname = KUBE_CASES[0][1]
        nx = KUBE_CASES[4][1]
        for _ in range(3):
            for client, want in ((POD_A, cname), (POD_B, nx), (STRANGER, nx), (POD_A, cname)):
                await _check(s, client, Case(want.qname, answer=list(want.answer), rcode=want.rcode,
                                             ns=list(want.ns)))
        # A query autopath passes on is still answered from the store after it.
        for _ in range(3):
            await _check(s, POD_A, Case(f"web.b.svc.{Z}", answer=[f"web.b.svc.{Z} 5 IN A 10.96.0.20"]))
        assert s.last_fast == cache  # without cache, hosts is the store after autopath: it lacks the name


def _question(name: str, qtype: str, edns: int | None, do: bool = False) -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = 4321
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns, flags="do" if do else ""))
    return bytes(q.pack())


@pytest.mark.parametrize("edns", [None, 1232])
async def test_the_walk_on_stored_answers_gives_the_chains_bytes(tmp_path: Path, edns: int | None) -> None:
    """With a cache after it, autopath walks on the cache's answers without running the chain (once they
    are stored), and every client gets the very bytes the chain gives it."""
    async with serve(corefile(tmp_path, cache=True)) as s:
        cache = next(p for p in s.config.plugins if isinstance(p, Cache))
        for now, (client, case) in zip(itertools.count(1000.0, 0.7), KUBE_CASES, strict=False):
            cache.clock = lambda now=now: now  # the stored TTLs count down between the cases
            for spelling in (case.qname, case.qname.upper()):
                data = _question(spelling, case.qtype, edns, do=edns is not None)
                for proto in ("udp", "tcp"):
                    for _ in range(3):  # the chain stores every lookup; then the walk finds them all
                        got = await s.wire(data, proto, client)
                    want = await s.chain(data, proto, client)
                    assert got == want, (client, spelling, proto)
                    # The bare name `nothing.` has no answer anywhere in this block (none stored): chain.
                    assert s.last_fast == (not case.qname.startswith("nothing.")), (client, spelling, proto)


async def test_without_pods_verified_nothing_is_autopathed(tmp_path: Path) -> None:
    async with serve(corefile(tmp_path, pods="insecure")) as s:
        await _check(s, POD_A, KUBE_CASES[6][1])


async def test_resolv_conf_search_path(tmp_path: Path) -> None:
    (tmp_path / "resolv.conf").write_text("nameserver 10.0.0.1\nsearch first.test search.test\noptions ndots:5\n")
    async with serve(corefile(tmp_path, resolv=str(tmp_path / "resolv.conf"))) as s:
        for client in (POD_A, STRANGER):  # the same path for every client
            await _check(s, client, Case("www.first.test.", answer=["www.first.test. 3600 IN CNAME www.search.test.",
                                                                    "www.search.test. 3600 IN A 10.0.0.8"]))
            await _check(s, client, Case("example.com.first.test.",
                                         answer=["example.com.first.test. 3600 IN CNAME example.com.",
                                                 "example.com. 3600 IN A 10.0.0.7"]))
            await _check(s, client, Case("www.search.test.", answer=["www.search.test. 3600 IN A 10.0.0.8"]))


@pytest.mark.parametrize(("text", "want"), [
    ("search a.test b.test\n", ["a.test.", "b.test."]),
    ("domain d.test\n", ["d.test."]),
    ("search a.test\ndomain d.test\n", ["d.test."]),  # the last line decides
    ("domain d.test\nsearch A.test. # comment\n", ["a.test."]),
    ("nameserver 10.0.0.1\n", []),
])
def test_resolv_search(tmp_path: Path, text: str, want: list[str]) -> None:
    (tmp_path / "r").write_text(text)
    assert resolv_search(str(tmp_path / "r")) == want


@pytest.mark.parametrize(("name", "want"), [
    ("web.b.a.svc.cluster.local.", "web.b.a.svc.cluster.local."),
    ("Mixed.Case.", "mixed.case."),
    (".", "."),
])
def test_key_name(name: str, want: str) -> None:
    q = parse_query(DNSRecord.question(name).pack())
    assert q is not None
    assert key_name(q.key) == want


@pytest.mark.parametrize(("line", "error"), [
    ("autopath", "Corefile:2 - plugin/autopath: no resolv-conf specified"),
    ("autopath cluster.local /nonexistent/resolv.conf", "Corefile:2 - plugin/autopath: failed to parse"),
    ("autopath @", "Corefile:2 - plugin/autopath: no plugin named after @"),
    ("autopath @hosts\nhosts", "Corefile:2 - plugin/autopath: hosts does not implement the AutoPather interface"),
])
def test_parse_errors(line: str, error: str) -> None:
    with pytest.raises(CorefileError) as e:
        build(parse(f". {{\n{line}\n}}", "Corefile"), 53)
    assert str(e.value).startswith(error), str(e.value)


@pytest.mark.parametrize(("line", "zones", "via"), [
    ("autopath @kubernetes", ["."], "kubernetes"),
    ("autopath cluster.local @kubernetes", ["cluster.local."], "kubernetes"),
])
def test_parse(line: str, zones: list[str], via: str) -> None:
    cfg = build(parse(f". {{\n{line}\n}}", "Corefile"), 53)
    p = next(p for p in cfg.plugins if isinstance(p, AutoPath))
    assert (p.zones, p.via) == (zones, via)
