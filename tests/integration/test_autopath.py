"""autopath as a user sees it: a real `portolan dns` fed by the API-server emulator (Pods watched with
`pods verified`), real `dig` sent from different 127.0.0.x addresses as different Pods; a cache after
autopath never gives one Pod's answer to another; a Pod that moves namespace gets its new path."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.apiemu.harness import Emulator
from tests.integration.test_kubernetes_api import eventually
from tests.server import DnsServer, load_error

POD_A, POD_B, STRANGER = "127.0.0.2", "127.0.0.3", "127.0.0.9"
Z = "cluster.local."


def corefile(kubeconfig: Path) -> str:
    return f""".:{{port}} {{
    bind 127.0.0.1
    autopath @kubernetes
    cache 30
    hosts {{
        10.0.0.7 example.com
        fallthrough
    }}
    kubernetes cluster.local {{
        kubeconfig {kubeconfig}
        pods verified
    }}
}}
"""


def namespace(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(name: str, ns: str, ip: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


def service(name: str, ns: str, ip: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


# (source address, name, proto, status, answer records as `dig` prints them after the owner's TTL is cut)
ROWS = [
    (POD_A, f"web.b.a.svc.{Z}", "NOERROR", [f"web.b.a.svc.{Z} CNAME web.b.svc.{Z}", f"web.b.svc.{Z} A 10.96.0.20"]),
    (POD_B, f"web.b.a.svc.{Z}", "NXDOMAIN", []),
    (STRANGER, f"web.b.a.svc.{Z}", "NXDOMAIN", []),
    (POD_A, f"example.com.a.svc.{Z}", "NOERROR", [f"example.com.a.svc.{Z} CNAME example.com.",
                                                  "example.com. A 10.0.0.7"]),
    (POD_B, f"example.com.b.svc.{Z}", "NOERROR", [f"example.com.b.svc.{Z} CNAME example.com.",
                                                  "example.com. A 10.0.0.7"]),
    (POD_B, f"example.com.a.svc.{Z}", "NXDOMAIN", []),
    (POD_A, f"web.b.svc.{Z}", "NOERROR", [f"web.b.svc.{Z} A 10.96.0.20"]),
]


def short(lines: list[str]) -> list[str]:
    return [" ".join(p for i, p in enumerate(line.split()) if i not in (1, 2)) for line in lines]


async def test_each_pod_gets_its_own_search_path(tmp_path: Path) -> None:
    async with Emulator(tmp_path / "emu") as emu:
        for doc in (namespace("a"), namespace("b"), service("web", "b", "10.96.0.20"), pod("pa", "a", POD_A),
                    pod("pb", "b", POD_B)):
            await emu.create(doc)
        srv = await asyncio.to_thread(DnsServer, corefile(emu.kubeconfig_path), tmp_path)
        try:
            await eventually(lambda: srv.dig("-b", POD_A, f"web.b.a.svc.{Z}").status, "NOERROR")
            for _ in range(3):  # again and again, UDP and TCP, in both orders: the cache in between
                for rows in (ROWS, ROWS[::-1]):
                    for source, name, status, answer in rows:
                        for proto in ("+notcp", "+tcp"):
                            d = await asyncio.to_thread(srv.dig, "-b", source, name, "A", proto)
                            assert (d.status, short(d.answer)) == (status, answer), (source, name, proto)
            # Pod a's address moves to a Pod in namespace b: its path follows the watch.
            await emu.delete("v1", "Pod", "pa", "a")
            await emu.create(pod("pa2", "b", POD_A))
            await eventually(lambda: srv.dig("-b", POD_A, f"example.com.b.svc.{Z}").status, "NOERROR")
            await eventually(lambda: srv.dig("-b", POD_A, f"web.b.a.svc.{Z}").status, "NXDOMAIN")
        finally:
            assert srv.stop() == 0


def test_load_error_names_the_line(tmp_path: Path) -> None:
    out = load_error(". {\n    autopath\n}\n", tmp_path)
    assert "Corefile:2 - plugin/autopath: no resolv-conf specified" in out
