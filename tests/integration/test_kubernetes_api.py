"""Cluster DNS against the API-server emulator, through a kubeconfig, with real `dig`: services and
endpoints created, scaled and deleted through the API change the answers; a forced 410 Gone and an
API-server restart do not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.apiemu.harness import Emulator
from tests.server import DnsServer

CLUSTER = Path(__file__).resolve().parents[1] / "data" / "k8s" / "cluster.yaml"


def corefile(kubeconfig: Path) -> str:
    return f""".:{{port}} {{
    bind 127.0.0.1
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        ttl 5
    }}
}}
"""


async def eventually(check: Callable[[], object], want: object, timeout: float = 10.0) -> None:
    """Poll `check` (a dig) until it returns `want`; the watch delivers changes asynchronously."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = await asyncio.to_thread(check)
        if got == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still {got!r}, want {want!r}")


def service(name: str, ip: str, headless: bool = False) -> dict[str, object]:
    spec: dict[str, object] = {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    spec.update({"clusterIP": "None"} if headless else {"clusterIP": ip, "clusterIPs": [ip]})
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "testns"}, "spec": spec}


def endpoint_slice(service_name: str, ips: list[str]) -> dict[str, object]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service_name}-x", "namespace": "testns",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


async def test_answers_follow_the_api(tmp_path: Path) -> None:
    async with Emulator(tmp_path / "emu") as emu:
        for doc in yaml.safe_load_all(CLUSTER.read_text()):
            await emu.apply(doc)
        srv = await asyncio.to_thread(DnsServer, corefile(emu.kubeconfig_path), tmp_path)
        try:
            def a(name: str) -> list[str]:
                return sorted(srv.dig(f"{name}.testns.svc.cluster.local", "A").rdata())

            def status(name: str) -> str:
                return srv.dig(f"{name}.testns.svc.cluster.local", "A").status

            await eventually(lambda: a("my-svc"), ["10.96.0.11"])
            # Create.
            await emu.create(service("new-svc", "10.96.0.55"))
            await eventually(lambda: a("new-svc"), ["10.96.0.55"])
            await emu.create(service("pool", "", headless=True))
            await emu.create(endpoint_slice("pool", ["172.17.1.1"]))
            await eventually(lambda: a("pool"), ["172.17.1.1"])
            # Scale up, then down.
            await emu.replace(endpoint_slice("pool", ["172.17.1.1", "172.17.1.2", "172.17.1.3"]))
            await eventually(lambda: a("pool"), ["172.17.1.1", "172.17.1.2", "172.17.1.3"])
            await emu.replace(endpoint_slice("pool", ["172.17.1.3"]))
            await eventually(lambda: a("pool"), ["172.17.1.3"])
            # Delete.
            await emu.delete("v1", "Service", "new-svc", "testns")
            await eventually(lambda: status("new-svc"), "NXDOMAIN")

            before = {n: a(n) for n in ("my-svc", "pool", "headless")}
            # 410 Gone on every watch: the relist must not lose or invent anything.
            await emu.force_gone()
            await emu.create(service("after-gone", "10.96.0.66"))
            await eventually(lambda: a("after-gone"), ["10.96.0.66"])
            assert {n: a(n) for n in before} == before
            # An API-server restart: answers keep coming from the last state meanwhile, and after.
            await emu.kill()
            assert {n: a(n) for n in before} == before
            assert a("after-gone") == ["10.96.0.66"]
            await emu.start()
            await emu.delete("v1", "Service", "after-gone", "testns")
            await eventually(lambda: status("after-gone"), "NXDOMAIN", timeout=20)
            assert {n: a(n) for n in before} == before
        finally:
            assert srv.stop() == 0
