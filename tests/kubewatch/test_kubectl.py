"""kubectl against the emulator: apply, get and delete a manifest while kubewatch watches."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from tests.apiemu import Emulator
from tests.kubewatch.conftest import StartWatch
from tests.kubewatch.test_manifests import SHOP, write
from tests.kubewatch.waiting import until


async def kubectl(emu: Emulator, *args: str) -> str:
    kubectl_bin = shutil.which("kubectl") or "/usr/bin/kubectl"
    proc = await asyncio.to_thread(
        subprocess.run,
        [kubectl_bin, "--kubeconfig", str(emu.kubeconfig_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


async def test_kubectl_apply_get_delete(emulator: Emulator, start_watch: StartWatch, tmp_path: Path) -> None:
    manifest = tmp_path / "shop.yaml"
    # Only kinds the emulator serves: kubectl validates each against discovery.
    shop = SHOP.split("# a kind kubewatch does not serve")[0]
    write(manifest, shop)
    store, _ = await start_watch(["services", "endpointslices", "namespaces"])
    out = await kubectl(emulator, "apply", "-f", str(manifest))
    assert "service/web created" in out
    assert "endpointslice.discovery.k8s.io/web-1 created" in out
    await until(lambda: store.service("shop", "web") is not None and store.endpoints_by_ip("10.1.0.1"), store=store)
    web = store.service("shop", "web")
    assert web is not None
    assert web.cluster_ips
    assert web.cluster_ips[0].startswith("10.96.")

    write(manifest, shop.replace("port: 80\n", "port: 8080\n").replace("10.1.0.1", "10.1.0.7"))
    out = await kubectl(emulator, "apply", "-f", str(manifest))
    assert "service/web configured" in out
    await until(lambda: store.service("shop", "web").ports[0].port == 8080, store=store)
    await until(lambda: bool(store.endpoints_by_ip("10.1.0.7")), store=store)
    assert store.service("shop", "web").cluster_ips == web.cluster_ips  # immutable, kept

    assert "web" in await kubectl(emulator, "get", "services", "-n", "shop")
    assert "10.1.0.7" in await kubectl(emulator, "get", "endpointslices", "-n", "shop", "-o", "yaml")
    await kubectl(emulator, "delete", "-f", str(manifest))
    await until(lambda: store.namespace("shop") is None and store.count("services") == 0, store=store)
