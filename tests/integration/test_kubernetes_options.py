"""kubernetes options that shape what is watched: labels, namespace_labels, noendpoints, endpoint URL.

Selectors go to the API server (the emulator), so these run against it, through the real plugin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from tests.apiemu.harness import Emulator
from tests.dnstest import Case, serve

CLUSTER = Path(__file__).resolve().parents[1] / "data" / "k8s" / "cluster.yaml"
Z = "cluster.local."


@pytest.fixture
async def emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    async with Emulator(tmp_path / "emu") as e:
        for doc in yaml.safe_load_all(CLUSTER.read_text()):
            await e.apply(doc)
        labelled = {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "labelled", "namespace": "testns", "labels": {"tier": "dns"}},
                    "spec": {"clusterIP": "10.96.0.99", "clusterIPs": ["10.96.0.99"],
                             "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
        await e.create(labelled)
        await e.create({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "team-a", "labels": {"dns": "on"}}})
        await e.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "team-a"},
                        "spec": {"clusterIP": "10.96.0.98", "clusterIPs": ["10.96.0.98"],
                                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        yield e


def corefile(emu: Emulator, options: str, source: str | None = None) -> str:
    return f"cluster.local {{\n kubernetes {{\n  {source or f'kubeconfig {emu.kubeconfig_path}'}\n  {options}\n }}\n}}"


async def rcode(s: object, name: str) -> int:
    return (await s.query(Case(name, "A"))).header.rcode  # type: ignore[attr-defined]


async def test_labels_selects_services(emu: Emulator) -> None:
    async with serve(corefile(emu, "labels tier=dns")) as s:
        assert await rcode(s, f"labelled.testns.svc.{Z}") == 0
        assert await rcode(s, f"my-svc.testns.svc.{Z}") == 3  # not labelled: not watched


async def test_namespace_labels_selects_namespaces(emu: Emulator) -> None:
    async with serve(corefile(emu, "namespace_labels dns=on")) as s:
        assert await rcode(s, f"web.team-a.svc.{Z}") == 0
        assert await rcode(s, f"my-svc.testns.svc.{Z}") == 3  # its namespace is not selected


async def test_noendpoints_makes_headless_names_nxdomain(emu: Emulator) -> None:
    async with serve(corefile(emu, "noendpoints")) as s:
        assert await rcode(s, f"my-svc.testns.svc.{Z}") == 0  # ClusterIP answers need no endpoints
        assert await rcode(s, f"headless.testns.svc.{Z}") == 3


async def test_endpoint_url(emu: Emulator) -> None:
    async with serve(corefile(emu, "", source=f"endpoint {emu.url}")) as s:
        r = await s.query(Case(f"my-svc.testns.svc.{Z}", "A"))
        assert [str(x.rdata) for x in r.rr] == ["10.96.0.11"]
