"""k8s_external as a user sees it: a real `portolan dns` serving a manifests directory, real `dig`:
external and load balancer addresses, a load balancer hostname followed through the server itself,
headless endpoints, SRV, the apex, and the kubernetes plugin's names from the same cache; against the
API-server emulator, answers that follow the watch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apiemu.harness import Emulator
from tests.integration.test_kubernetes_api import eventually
from tests.plugins.k8s_external.test_k8s_external import CLUSTER
from tests.server import DnsServer, load_error

COREFILE = """
.:{port} {
    bind 127.0.0.1
    k8s_external example.org {
        headless
    }
    kubernetes cluster.local {
        manifests cluster.yaml
    }
}
provider.test:{port} {
    bind 127.0.0.1
    hosts {
        203.0.113.5 lb.provider.test
    }
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    work = tmp_path_factory.mktemp("k8s_external")
    (work / "cluster.yaml").write_text(CLUSTER)
    srv = DnsServer(COREFILE, work)
    yield srv
    assert srv.stop() == 0


# (name, type, status, answer as dig prints it, TTLs left out)
ROWS = [
    ("lb.ns.example.org", "A", "NOERROR", ["lb.ns.example.org. IN A 192.0.2.10", "lb.ns.example.org. IN A 192.0.2.11"]),
    ("lb.ns.example.org", "AAAA", "NOERROR", ["lb.ns.example.org. IN AAAA 2001:db8::11"]),
    ("_http._tcp.lb.ns.example.org", "SRV", "NOERROR",
     ["_http._tcp.lb.ns.example.org. IN SRV 0 33 80 lb.ns.example.org."]),
    ("named.ns.example.org", "A", "NOERROR", ["named.ns.example.org. IN CNAME lb.provider.test.",
                                              "lb.provider.test. IN A 203.0.113.5"]),
    ("hl.ns.example.org", "A", "NOERROR", ["hl.ns.example.org. IN A 172.17.0.5", "hl.ns.example.org. IN A 172.17.0.6"]),
    ("internal.ns.example.org", "A", "NXDOMAIN", []),
    ("example.org", "SOA", "NOERROR", ["example.org. IN SOA ns1.dns.example.org. hostmaster.dns.example.org."]),
    ("example.org", "NS", "NOERROR", ["example.org. IN NS ns1.dns.example.org."]),
    ("lb.ns.svc.cluster.local", "A", "NOERROR", ["lb.ns.svc.cluster.local. IN A 10.96.0.30"]),
]


def _cut(line: str) -> str:
    words = line.split()
    words = words[:1] + words[2:]  # the TTL
    return " ".join(words[:5] if words[2] == "SOA" else words)  # the SOA serial: the time of the last change


@pytest.mark.parametrize(("name", "qtype", "status", "answer"), ROWS, ids=[f"{r[0]}-{r[1]}" for r in ROWS])
@pytest.mark.parametrize("proto", ["+notcp", "+tcp"])
def test_answers(server: DnsServer, name: str, qtype: str, status: str, answer: list[str], proto: str) -> None:
    for _ in range(2):  # computed, then kept
        d = server.dig(name, qtype, proto)
        assert (d.status, sorted(_cut(x) for x in d.answer)) == (status, sorted(answer))
        assert "aa" in d.flags


def test_load_error_names_the_line(tmp_path: Path) -> None:
    out = load_error(". {\n    k8s_external example.org {\n        frobnicate\n    }\n}\n", tmp_path)
    assert "Corefile:3 - plugin/k8s_external: unknown property 'frobnicate'" in out


async def test_answers_follow_the_api(tmp_path: Path) -> None:
    """The kubernetes plugin's watch feeds k8s_external too: a load balancer's new address is answered."""
    def lb(ips: list[str]) -> dict[str, object]:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "namespace": "ns"},
                "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.30", "clusterIPs": ["10.96.0.30"],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
                "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}}}

    async with Emulator(tmp_path / "emu") as emu:
        await emu.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}})
        await emu.create(lb(["192.0.2.11"]))
        corefile = (f".:{{port}} {{\n    bind 127.0.0.1\n    k8s_external example.org\n"
                    f"    kubernetes cluster.local {{\n        kubeconfig {emu.kubeconfig_path}\n    }}\n}}\n")
        srv = await asyncio.to_thread(DnsServer, corefile, tmp_path)
        try:
            def a() -> list[str]:
                return sorted(srv.dig("lb.ns.example.org", "A").rdata())

            await eventually(a, ["192.0.2.11"])
            await emu.update_status(lb(["192.0.2.12", "192.0.2.13"]))
            await eventually(a, ["192.0.2.12", "192.0.2.13"])
        finally:
            assert srv.stop() == 0
