"""kubernetes `multicluster` against the API-server emulator, with real `dig`: ServiceImports and
multicluster EndpointSlices created and deleted through the API change the clusterset answers; a
cluster without the ServiceImport CRD is reported once and its cluster names are still served."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from tests.apiemu.harness import Emulator
from tests.integration.test_kubernetes_api import eventually
from tests.server import DnsServer

DATA = Path(__file__).resolve().parents[1] / "data" / "k8s"
HL = "hdls1.testns.svc.clusterset.local"


def corefile(kubeconfig: Path) -> str:
    return f""".:{{port}} {{
    bind 127.0.0.1
    kubernetes cluster.local clusterset.local {{
        kubeconfig {kubeconfig}
        multicluster clusterset.local
    }}
}}
"""


async def load(emu: Emulator) -> None:
    for name in ("cluster.yaml", "multicluster.yaml"):
        for doc in yaml.safe_load_all((DATA / name).read_text()):
            await emu.apply(doc)


async def test_clusterset_names_follow_the_api(tmp_path: Path) -> None:
    async with Emulator(tmp_path / "emu") as emu:
        await load(emu)
        srv = await asyncio.to_thread(DnsServer, corefile(emu.kubeconfig_path), tmp_path)
        try:
            def a(name: str, *args: str) -> list[str]:
                return sorted(srv.dig(name, "A", *args).rdata())

            await eventually(lambda: a("svc1.testns.svc.clusterset.local"), ["10.0.0.1"])
            for proto in ("+notcp", "+tcp"):
                assert a(HL, proto) == ["172.0.0.2", "172.0.0.3"]
                assert a(f"hdls1-a.cluster1.{HL}", proto) == ["172.0.0.2"]
                assert srv.dig(f"hdls1-a.cluster2.{HL}", "AAAA", proto).rdata() == ["5678:abcd::1"]
                assert sorted(srv.dig(HL, "SRV", proto).rdata()) == [
                    f"0 33 80 172-0-0-3.cluster1.{HL}.", f"0 33 80 hdls1-a.cluster1.{HL}.",
                    f"0 33 80 hdls1-a.cluster2.{HL}."]
            assert a("svc1.testns.svc.cluster.local") == ["10.96.0.99"]
            # A new import, and an endpoint slice of a third cluster.
            await emu.create({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
                              "metadata": {"name": "new", "namespace": "testns"},
                              "spec": {"type": "ClusterSetIP", "ips": ["10.0.0.44"], "ports": [{"port": 80}]}})
            await eventually(lambda: a("new.testns.svc.clusterset.local"), ["10.0.0.44"])
            await emu.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                              "metadata": {"name": "hdls1-c3", "namespace": "testns", "labels": {
                                  "multicluster.kubernetes.io/service-name": "hdls1",
                                  "multicluster.kubernetes.io/source-cluster": "cluster3"}},
                              "addressType": "IPv4", "endpoints": [{"addresses": ["172.0.3.1"], "hostname": "c"}],
                              "ports": [{"name": "http", "protocol": "TCP", "port": 80}]})
            await eventually(lambda: a(f"c.cluster3.{HL}"), ["172.0.3.1"])
            await emu.delete("discovery.k8s.io/v1", "EndpointSlice", "hdls1-c1", "testns")
            await eventually(lambda: a(HL), ["172.0.3.1"])
            await emu.delete("multicluster.x-k8s.io/v1alpha1", "ServiceImport", "new", "testns")
            await eventually(lambda: srv.dig("new.testns.svc.clusterset.local", "A").status, "NXDOMAIN")
        finally:
            srv.stop()


async def test_a_cluster_without_the_crd(tmp_path: Path) -> None:
    async with Emulator(tmp_path / "emu") as emu:
        await load(emu)
        await emu.configure(hidden_resources=["multicluster.x-k8s.io/serviceimports"])
        srv = await asyncio.to_thread(DnsServer, corefile(emu.kubeconfig_path), tmp_path)
        try:
            await eventually(lambda: srv.dig("my-svc.testns.svc.cluster.local", "A").rdata(), ["10.96.0.11"])
            d = srv.dig("svc1.testns.svc.clusterset.local", "A")
            assert d.status == "NXDOMAIN"
            out = "\n".join(srv.drain())
            assert out.count("does not serve multicluster.x-k8s.io/v1alpha1") == 1, out
        finally:
            srv.stop()
