"""k8s_gateway end to end, with real `dig`: from a manifests directory, and with `portolan ingress`
against the API-server emulator writing an Ingress's status (--publish-status-address 127.0.0.1) that
`portolan dns` then answers for the Ingress's host: a cluster's HTTP names without external-dns. The
emulator serves no Gateway API CRDs here; that is reported once and the Ingresses are still served."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.apiemu.harness import Emulator
from tests.ingress.conftest import NGINX, free_ports
from tests.integration.test_kubernetes_api import eventually
from tests.server import DnsServer

ROOT = Path(__file__).resolve().parents[2]
EDGE = ROOT / "tests" / "plugins" / "k8s_gateway" / "edge.yaml"


def test_manifests_with_dig(tmp_path: Path) -> None:
    srv = DnsServer(f"""example.com:{{port}} {{
    bind 127.0.0.1
    k8s_gateway {{
        manifests {EDGE}
        ttl 30
    }}
}}
""", tmp_path)
    try:
        for proto in ("+notcp", "+tcp"):
            d = srv.dig("api.example.com", "A", proto)
            assert d.status == "NOERROR"
            assert "aa" in d.flags
            assert sorted(d.rdata()) == ["192.0.2.30", "192.0.2.31"]
            assert srv.dig("both.example.com", "AAAA", proto).rdata() == ["2001:db8::10"]
            assert srv.dig("front.shop.example.com", "A", proto).rdata() == ["192.0.2.20"]
            d = srv.dig("nope.example.com", "A", proto)
            assert d.status == "NXDOMAIN"
            assert len(d.authority) == 1
        d = srv.dig("example.com", "NS")
        assert d.rdata() == ["dns1.kube-system.example.com."]
        assert d.additional == ["dns1.kube-system.example.com. 60 IN A 192.0.2.53"]
    finally:
        srv.stop()


def ingress_objects(host: str) -> list[dict[str, object]]:
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "portolan"},
         "spec": {"controller": "portolan.dev/ingress-controller"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                  "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "default"},
         "spec": {"ingressClassName": "portolan",
                  "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                      "service": {"name": "web", "port": {"number": 80}}}}]}}]}},
    ]  # fmt: skip


async def test_ingress_controller_and_dns_together(tmp_path: Path) -> None:
    async with Emulator(tmp_path / "emu") as emu:
        await emu.configure(hidden_resources=["gateway.networking.k8s.io/gateways",
                                              "gateway.networking.k8s.io/httproutes",
                                              "gateway.networking.k8s.io/grpcroutes"])
        for obj in ingress_objects("shop.example.com"):
            await emu.create(obj)
        http, https, health = free_ports(3)
        log = (tmp_path / "ingress.log").open("wb")
        ingress = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; from portolan.cli import main; sys.exit(main(sys.argv[1:]))",
            "ingress", "--kubeconfig", str(emu.kubeconfig_path), "--config-dir", str(tmp_path / "run"),
            "--nginx-binary", NGINX, "--bind-address", "127.0.0.1", "--http-port", str(http),
            "--https-port", str(https), "--healthz-address", "127.0.0.1", "--healthz-port", str(health),
            "--publish-status-address", "127.0.0.1", "--sync-debounce", "0.02",
            "--lease-duration", "2", "--renew-deadline", "1", "--retry-period", "0.2",
            cwd=ROOT, stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        log.close()
        srv = await asyncio.to_thread(DnsServer, f""".:{{port}} {{
    bind 127.0.0.1
    k8s_gateway example.com {{
        kubeconfig {emu.kubeconfig_path}
        ttl 5
    }}
}}
""", tmp_path)
        try:
            # The controller writes the status; the DNS server's watch sees it.
            await eventually(lambda: srv.dig("shop.example.com", "A").rdata(), ["127.0.0.1"], timeout=30)
            # A new Ingress host gets its address the same way.
            obj = ingress_objects("api.example.com")[2]
            obj["metadata"] = {"name": "api", "namespace": "default"}
            await emu.create(obj)
            await eventually(lambda: srv.dig("api.example.com", "A", "+tcp").rdata(), ["127.0.0.1"])
            await emu.delete("networking.k8s.io/v1", "Ingress", "api", "default")
            await eventually(lambda: srv.dig("api.example.com", "A").status, "NXDOMAIN")
            # The missing Gateway API CRDs were reported once each, and did not hold the rest back.
            out = "\n".join(srv.drain())
            assert out.count("does not serve gateway.networking.k8s.io/v1") == 3, out  # gateways and 2 routes
        finally:
            srv.stop()
            if ingress.returncode is None:
                ingress.send_signal(signal.SIGTERM)  # our own child, by its PID
            try:
                async with asyncio.timeout(20):
                    await ingress.wait()
            except TimeoutError:
                ingress.kill()
                await ingress.wait()


async def test_one_watch_per_kind_with_the_kubernetes_plugin(tmp_path: Path) -> None:
    """kubernetes and k8s_gateway in two blocks, one cluster: each kind is watched once."""
    async with Emulator(tmp_path / "emu") as emu:
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "front", "namespace": "shop"},
               "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.30", "clusterIPs": ["10.96.0.30"],
                        "ports": [{"port": 443}]}}
        await emu.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        created = await emu.create(svc)
        await emu.update_status({**created, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.20"}]}}})
        srv = await asyncio.to_thread(DnsServer, f""".:{{port}} {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        kubeconfig {emu.kubeconfig_path}
    }}
}}
example.com:{{port}} {{
    bind 127.0.0.1
    k8s_gateway {{
        kubeconfig {emu.kubeconfig_path}
    }}
}}
""", tmp_path)
        try:
            await eventually(lambda: srv.dig("front.shop.svc.cluster.local", "A").rdata(), ["10.96.0.30"])
            await eventually(lambda: srv.dig("front.shop.example.com", "A").rdata(), ["192.0.2.20"])
            watchers = (await emu.state())["watchers"]
            assert {k: v for k, v in watchers.items() if v} == {
                "/services": 1, "/namespaces": 1, "discovery.k8s.io/endpointslices": 1,
                "networking.k8s.io/ingresses": 1, "gateway.networking.k8s.io/gateways": 1,
                "gateway.networking.k8s.io/httproutes": 1, "gateway.networking.k8s.io/grpcroutes": 1}
        finally:
            srv.stop()
