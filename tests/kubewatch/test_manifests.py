"""The manifest-directory source."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from pathlib import Path

import pytest

from kubewatch import ManifestSource, Store, WatchSpec
from tests.kubewatch.waiting import until

SHOP = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: retail}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.1.0.1]
---
# a kind kubewatch does not serve: skipped, not an error
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec: {}
---
"""

LIST = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: db}
  spec: {clusterIP: None, ports: [{port: 5432}]}
- apiVersion: v1
  kind: Service
  metadata: {name: search, labels: {app: web}}
  spec: {type: ExternalName, externalName: search.example.com}
"""


def write(path: Path, text: str) -> None:
    """Write and move the mtime forward: file timestamps are only as fine as the kernel
    tick, and two quick writes of the same size would otherwise look unchanged."""
    mtime = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    if path.stat().st_mtime_ns <= mtime:
        os.utime(path, ns=(mtime + 1_000_000, mtime + 1_000_000))


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "manifests"
    root.mkdir()
    write(root / "shop.yaml", SHOP)
    write(root / "list.yml", LIST)
    write(root / "cfg.json", json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}))
    write(root / "README.txt", "not a manifest")
    return root


def test_loads_documents_lists_and_json(tree: Path) -> None:
    store = Store()
    source = ManifestSource(store, tree)
    assert source.load()
    assert source.errors == []
    assert store.synced
    assert sorted((s.namespace, s.name) for s in store.list("services")) == [
        ("default", "db"),
        ("default", "search"),
        ("shop", "web"),
    ]
    web = store.service("shop", "web")
    assert web is not None
    assert web.ports[0].target_port == "http"
    # Nobody allocates ClusterIPs without a cluster: a stable one from the service CIDR.
    assert ipaddress.ip_address(web.cluster_ips[0]) in ipaddress.ip_network("10.96.0.0/12")
    assert store.service("default", "db").headless
    assert store.service("default", "search").is_external_name
    assert [s.name for s in store.slices_for_service("shop", "web")] == ["web-1"]
    assert store.get("configmaps", "default", "cfg") is not None
    # Namespaces that hold objects exist; declared ones keep their labels.
    assert {n.name: n.labels for n in store.list("namespaces")} == {"default": {}, "shop": {"team": "retail"}}
    again = Store()
    ManifestSource(again, tree).load()
    assert again.service("shop", "web").cluster_ips == web.cluster_ips


def test_add_change_and_delete_files(tree: Path) -> None:
    store = Store()
    source = ManifestSource(store, tree)
    source.load()
    feed: list[tuple[str, str, str]] = []
    store.subscribe(lambda kind, etype, old, new: feed.append((kind, etype, (new or old).name)))
    assert not source.check()  # nothing changed on disk
    write(tree / "extra.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: extra}\nspec: {ports: [{port: 1}]}\n")
    assert source.check()
    write(tree / "shop.yaml", SHOP.replace("10.1.0.1", "10.1.0.2"))
    assert source.check()
    assert store.endpoints_by_ip("10.1.0.2")
    assert not store.endpoints_by_ip("10.1.0.1")
    (tree / "list.yml").unlink()
    assert source.check()
    assert feed == [
        ("services", "ADDED", "extra"),
        ("endpointslices", "MODIFIED", "web-1"),
        ("services", "DELETED", "db"),
        ("services", "DELETED", "search"),
    ]


def test_malformed_yaml_keeps_the_previous_state(tree: Path) -> None:
    clock = FakeClock()
    store = Store()
    source = ManifestSource(store, tree, clock=clock)
    assert source.staleness("services") == float("inf")
    source.load()
    version = store.version
    assert source.staleness("services") == 0.0
    write(tree / "shop.yaml", SHOP.replace("port: 80\n", "port: [80\n"))  # broken in document 1
    assert not source.check()
    assert next(str(e) for e in source.errors).startswith(f"{tree / 'shop.yaml'}: document 1: invalid YAML")
    assert (source.errors[0].path, source.errors[0].document) == (str(tree / "shop.yaml"), 1)
    assert store.version == version
    assert store.service("shop", "web") is not None
    clock.now += 30
    assert store.staleness("services") == 30.0  # how long the store has lagged the files
    write(tree / "shop.yaml", SHOP)
    assert source.check()
    assert source.errors == []
    assert store.staleness("services") == 0.0


def test_malformed_objects_name_file_document_and_item(tree: Path) -> None:
    store = Store()
    source = ManifestSource(store, tree)
    source.load()
    write(tree / "shop.yaml", SHOP.replace("  - name: http\n    port: 80", "  - name: http\n    port: eighty"))
    write(tree / "list.yml", LIST.replace("[{port: 5432}]", "not-a-list"))
    write(tree / "cfg.json", "{broken")
    write(tree / "odd.yaml", "- just\n- a list\n")
    assert not source.check()
    messages = sorted(str(e) for e in source.errors)
    assert f"{tree / 'cfg.json'}: document 0: invalid JSON" in messages[0]
    assert messages[1].startswith(f"{tree / 'list.yml'}: document 0: items[0]: spec.ports is not a list")
    assert messages[2] == f"{tree / 'odd.yaml'}: document 0: not a mapping"
    assert messages[3] == f"{tree / 'shop.yaml'}: document 1: spec.ports[0].port is not an integer"
    assert store.count("services") == 3  # all of the last good state is still served


def test_documents_of_the_wrong_shape_are_errors_not_crashes(tmp_path: Path) -> None:
    """Found by fuzz/manifests_target.py (fuzz/corpus/manifests/crash-*): a Service whose metadata is a
    string (the cluster IP allocation read it as a mapping), a mapping among clusterIPs, an unquoted
    timestamp (a datetime: read as the string meant)."""
    write(tmp_path / "a.yaml", "apiVersion: v1\nkind: Service\nmetadata: just a string\nspec: {ports: [{port: 80}]}\n"
                               "---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n"
                               "spec: {clusterIPs: [10.96.0.11, \"fd00::a\":]}\n")
    source = ManifestSource(Store(), tmp_path)
    assert not source.load()
    assert [(e.document, e.message) for e in source.errors] == [
        (0, "metadata is missing or not a mapping"), (1, "spec.clusterIPs holds something other than strings")]
    write(tmp_path / "a.yaml", "apiVersion: v1\nkind: Service\n"
                               "metadata: {name: c, creationTimestamp: 2024-01-02T03:04:05Z}\n"
                               "spec: {ports: [{port: 80}]}\n")
    assert source.load()
    assert [svc.created for svc in source.store.iter("services")] == ["2024-01-02T03:04:05Z"]


def test_selectors_and_a_single_file(tree: Path) -> None:
    store = Store()
    source = ManifestSource(
        store,
        [tree / "shop.yaml", tree / "list.yml"],
        specs=[WatchSpec("services", label_selector="app=web"), WatchSpec("namespaces", namespaces=("shop",))],
    )
    source.load()
    assert sorted(s.name for s in store.list("services")) == ["search", "web"]
    assert [n.name for n in store.list("namespaces")] == ["shop"]
    assert store.count("endpointslices") == 0
    assert source.kinds == {"services", "namespaces"}


async def test_polling_loop_with_injected_sleep(tree: Path) -> None:
    ticks: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(seconds: float) -> None:
        assert seconds == 7.0
        await ticks.get()

    store = Store()
    async with ManifestSource(store, tree, interval=7.0, sleep=sleep) as source:
        assert store.synced
        assert source.loads == 1
        write(tree / "extra.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n")
        ticks.put_nowait(None)
        await until(lambda: store.get("configmaps", "default", "extra") is not None, store=store)
        assert source.loads == 2
