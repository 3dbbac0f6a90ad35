"""kubewatch against the emulator, reached only through a kubeconfig (or in-cluster files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kubewatch import (
    RUNNING_PODS,
    ApiClient,
    ApiError,
    ApiSource,
    ClusterConfig,
    ConfigError,
    Store,
    WatchSpec,
)
from tests.apiemu import Emulator
from tests.kubewatch import builders as b
from tests.kubewatch.conftest import FAST, StartWatch
from tests.kubewatch.waiting import until

ALL_KINDS = [
    "services",
    "endpointslices",
    "pods",
    "namespaces",
    "ingresses",
    "ingressclasses",
    "secrets",
    "configmaps",
]


def names(store: Store, kind: str, namespace: str | None = None) -> list[str]:
    return sorted(r.name for r in store.list(kind, namespace))


async def caught_up(emu: Emulator, source: ApiSource) -> None:
    """Wait until every reflector has seen everything up to the emulator's current rv: a
    bookmark carries that rv and comes after any event still in flight."""
    rv = str(await emu.resource_version())
    await emu.send_bookmarks()
    await until(lambda: all(r.resource_version == rv for r in source.reflectors))


async def test_initial_sync_of_every_kind(emulator: Emulator, start_watch: StartWatch) -> None:
    await emulator.create(b.namespace("shop"))
    await emulator.create(b.service("web", "shop", cluster_ip="10.96.5.5"))
    await emulator.create(b.endpoint_slice("web-1", "shop", service="web", endpoints=[b.endpoint("10.1.0.1")]))
    await emulator.create(b.pod("web-a", "shop", "10.1.0.1"))
    await emulator.create(b.ingress("site", "shop"))
    await emulator.create(b.ingress_class("portolan"))
    await emulator.create(b.secret("tls", "shop", {"tls.crt": b"C", "tls.key": b"K"}, "kubernetes.io/tls"))
    await emulator.create(b.config_map("cfg", "shop", {"k": "v"}))
    store, source = await start_watch(ALL_KINDS)
    assert store.synced
    assert all(store.is_synced(k) for k in ALL_KINDS)
    assert names(store, "namespaces") == ["default", "kube-node-lease", "kube-public", "kube-system", "shop"]
    assert store.services_by_ip("10.96.5.5")[0].name == "web"
    assert [s.name for s in store.slices_for_service("shop", "web")] == ["web-1"]
    assert store.pods_by_ip("10.1.0.1")[0].name == "web-a"
    ing = store.get("ingresses", "shop", "site")
    assert ing is not None
    assert ing.uid
    assert ing.resource_version
    assert ing.spec["rules"][0]["host"] == "example.com"
    assert store.get("ingressclasses", "", "portolan") is not None
    sec = store.get("secrets", "shop", "tls")
    assert sec is not None
    assert sec.data == {"tls.crt": b"C", "tls.key": b"K"}
    assert store.get("configmaps", "shop", "cfg").data == {"k": "v"}
    await until(lambda: source.connected)
    assert store.staleness() == 0.0


async def test_every_event_kind_reaches_store_and_feed(emulator: Emulator, start_watch: StartWatch) -> None:
    store, source = await start_watch(["services", "endpointslices"])
    feed: list[tuple[str, str, str]] = []
    store.subscribe(lambda kind, etype, old, new: feed.append((kind, etype, (new or old).name)))
    await emulator.create(b.service("web", cluster_ip="10.96.1.1"))
    await emulator.create(b.endpoint_slice("web-1", service="web", endpoints=[b.endpoint("10.1.0.1")]))
    await until(lambda: store.endpoints_by_ip("10.1.0.1") != [], store=store)
    version = store.version
    await emulator.patch("discovery.k8s.io/v1", "EndpointSlice", "web-1", {"endpoints": [{"addresses": ["10.1.0.2"]}]})
    await until(lambda: store.endpoints_by_ip("10.1.0.2") != [], store=store)
    assert store.endpoints_by_ip("10.1.0.1") == []
    assert store.version == version + 1
    # An update that changes nothing kubewatch keeps (a label): new rv, no change, same version.
    await emulator.patch("v1", "Service", "web", {"metadata": {"labels": {"team": "a"}}})
    await caught_up(emulator, source)
    assert store.version == version + 1
    await emulator.delete("v1", "Service", "web")
    await until(lambda: store.service("default", "web") is None, store=store)
    assert feed == [
        ("services", "ADDED", "web"),
        ("endpointslices", "ADDED", "web-1"),
        ("endpointslices", "MODIFIED", "web-1"),
        ("services", "DELETED", "web"),
    ]


async def test_bookmarks_move_the_resume_point(emulator: Emulator, start_watch: StartWatch) -> None:
    await emulator.create(b.service("web"))
    store, source = await start_watch(["services"])
    (reflector,) = source.reflectors
    for i in range(3):
        await emulator.create(b.config_map(f"unwatched-{i}"))  # other kinds move the global rv
    await caught_up(emulator, source)
    # Resuming from the bookmark's rv after a restart works; from the older one it would be 410.
    await emulator.restart()
    await emulator.wait_for_watchers("services")
    await emulator.create(b.service("after"))
    await until(lambda: store.service("default", "after") is not None, store=store)
    assert reflector.relists == 1


async def test_forced_gone_relists_without_dropping_state(emulator: Emulator, start_watch: StartWatch) -> None:
    for name in ("a", "b", "c"):
        await emulator.create(b.service(name))
    store, source = await start_watch(["services"])
    (reflector,) = source.reflectors
    feed: list[Any] = []
    store.subscribe(lambda *change: feed.append(change))
    await emulator.force_gone(mode="event")  # ERROR 410 on the stream
    await until(lambda: reflector.relists == 2)
    assert names(store, "services") == ["a", "b", "c"]
    assert feed == []  # nothing was dropped and re-added: the relist found no difference
    await emulator.configure(gone_as_http=True)
    await emulator.force_gone(mode="close")  # the resume then gets an HTTP 410
    await until(lambda: reflector.relists == 3)
    await emulator.create(b.service("d"))
    await until(lambda: store.service("default", "d") is not None, store=store)
    assert feed[0][1] == "ADDED"
    assert len(feed) == 1


async def test_restart_with_offline_changes_leaves_no_stale_records(
    emulator: Emulator, start_watch: StartWatch
) -> None:
    for name in ("a", "b", "c"):
        await emulator.create(b.service(name))
    await emulator.create(b.endpoint_slice("a-1", service="a", endpoints=[b.endpoint("10.1.0.1")]))
    store, source = await start_watch(["services", "endpointslices"])
    feed: list[tuple[str, str]] = []
    store.subscribe(lambda kind, etype, old, new: feed.append((etype, (new or old).name)))
    await emulator.stop()

    def offline(objs: list[dict[str, Any]]) -> None:
        # Written while the API server was down: the client cannot have seen any of it.
        objs[:] = [o for o in objs if o["metadata"]["name"] not in ("a", "a-1")]
        for o in objs:
            if o["metadata"]["name"] == "b":
                o["spec"]["ports"] = [{"name": "grpc", "port": 9000, "protocol": "TCP", "targetPort": 9000}]
        new = b.service("d", cluster_ip="10.96.9.9")
        new["spec"]["clusterIPs"] = ["10.96.9.9"]
        objs.append(b.with_meta(new, uid="d-uid", creationTimestamp="2024-01-01T00:00:00Z"))

    emulator.edit_state(offline)
    assert store.service("default", "a") is not None  # still served while the server is down
    await emulator.start()
    await until(lambda: store.service("default", "d") is not None, store=store)
    await caught_up(emulator, source)
    assert names(store, "services") == ["b", "c", "d"]
    assert store.count("endpointslices") == 0
    assert store.endpoints_by_ip("10.1.0.1") == []
    assert store.service("default", "b").ports[0].name == "grpc"
    server = await emulator.list("v1", "Service", None)
    assert sorted(i["metadata"]["name"] for i in server["items"]) == names(store, "services")
    assert sorted(feed) == [("ADDED", "d"), ("DELETED", "a"), ("DELETED", "a-1"), ("MODIFIED", "b")]
    assert all(r.relists == 2 for r in source.reflectors)


async def test_unreachable_server_keeps_state_and_reports_staleness(
    emulator: Emulator, start_watch: StartWatch
) -> None:
    await emulator.create(b.service("web"))
    store, source = await start_watch(["services"])
    await emulator.kill()  # a crash: the restarted server still has every object
    await until(lambda: store.staleness("services") > 0.1)
    assert not source.connected
    assert store.service("default", "web") is not None
    (reflector,) = source.reflectors
    await until(lambda: reflector.last_error != "")
    await emulator.start()
    await until(lambda: source.connected)
    assert store.staleness() == 0.0
    await emulator.create(b.service("later"))
    await until(lambda: store.service("default", "later") is not None, store=store)
    assert names(store, "services") == ["later", "web"]
    assert reflector.relists == 1


async def test_selectors_are_pushed_to_the_server(emulator: Emulator, start_watch: StartWatch) -> None:
    for ns in ("shop", "other"):
        await emulator.create(b.namespace(ns))
        await emulator.create(b.service("web", ns, labels={"app": "web"}))
        await emulator.create(b.service("db", ns, labels={"app": "db"}))
    await emulator.create(b.pod("running", "shop", "10.2.0.1"))
    await emulator.create(b.pod("done", "shop", "10.2.0.2", phase="Succeeded"))
    store, _ = await start_watch(
        [
            WatchSpec("services", namespaces=("shop",), label_selector="app=web"),
            WatchSpec("namespaces", namespaces=("shop",)),
            WatchSpec("pods", field_selector=RUNNING_PODS),
        ]
    )
    assert [(s.namespace, s.name) for s in store.list("services")] == [("shop", "web")]
    assert names(store, "namespaces") == ["shop"]
    assert names(store, "pods") == ["running"]
    # Leaving the selection is a DELETED for the watcher, entering it an ADDED.
    await emulator.patch("v1", "Service", "web", {"metadata": {"labels": {"app": "moved"}}}, "shop")
    await emulator.patch("v1", "Service", "db", {"metadata": {"labels": {"app": "web"}}}, "shop")
    await emulator.update_status(b.pod("running", "shop", "10.2.0.1", phase="Failed"))
    await until(lambda: names(store, "pods") == [] and names(store, "services") == ["db"], store=store)
    assert store.pods_by_ip("10.2.0.1") == ()


async def test_in_cluster_token_rotation(tmp_path: Path) -> None:
    token_file = tmp_path / "sa" / "token"
    token_file.parent.mkdir()
    token_file.write_text("token-one\n")
    async with Emulator(tmp_path / "emu", tls=True, tokens=["token-one"]) as emu:
        assert emu.ca_path is not None
        config = ClusterConfig.in_cluster(
            token_path=token_file,
            ca_path=emu.ca_path,
            environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(emu.port)},
        )
        assert config.host == emu.url
        assert config.host.startswith("https://")
        store = Store()
        async with ApiSource(store, config, ["services"], tuning=FAST) as source:
            assert await store.wait_synced(timeout=10)
            # Kubelet-style rotation: a new file swapped in; the API server stops taking the old token.
            fresh = token_file.with_name("token.new")
            fresh.write_text("token-two\n")
            fresh.replace(token_file)
            await emu.set_tokens(["token-two"])
            await emu.drop_watches()
            await emu.create(b.service("after-rotation"))
            await until(lambda: store.service("default", "after-rotation") is not None, store=store)
            # A rewrite the stat check cannot see (same inode, size and mtime): the 401 re-reads it.
            st = token_file.stat()
            with token_file.open("r+") as f:
                f.write("token-333\n")
            os.utime(token_file, ns=(st.st_atime_ns, st.st_mtime_ns))
            await emu.set_tokens(["token-333"])
            await emu.drop_watches()
            await emu.create(b.service("after-second-rotation"))
            await until(lambda: store.service("default", "after-second-rotation") is not None, store=store)
            assert all(r.synced for r in source.reflectors)


async def test_kubeconfig_token_and_explicit_url(tmp_path: Path) -> None:
    async with Emulator(tmp_path / "emu", tokens=["sekret"]) as emu:
        await emu.create(b.service("web"))
        for config in (ClusterConfig.from_kubeconfig(emu.kubeconfig_path, context="apiemu"),
                       ClusterConfig.from_url(emu.url, token="sekret")):  # fmt: skip
            store = Store()
            async with ApiSource(store, config, ["services"], tuning=FAST):
                assert await store.wait_synced(timeout=10)
                assert names(store, "services") == ["web"]
        store = Store()
        bad = ClusterConfig.from_url(emu.url, token="wrong")
        async with ApiSource(store, bad, ["services"], tuning=FAST) as source:
            await until(lambda: "401" in source.reflectors[0].last_error)
            assert not store.synced


async def test_paged_initial_list_and_large_objects(emulator: Emulator, start_watch: StartWatch) -> None:
    for i in range(5):
        await emulator.create(b.service(f"s{i}"))
    tuning = FAST.__class__(**{**FAST.__dict__, "page_size": 2})
    store, _ = await start_watch(["services", "configmaps"], tuning=tuning)
    assert store.count("services") == 5
    # A watch event far longer than aiohttp's default line limit (64 KiB).
    await emulator.create(b.config_map("big", data={"blob": "x" * 300_000}))
    await until(lambda: store.get("configmaps", "default", "big") is not None, store=store)
    assert len(store.get("configmaps", "default", "big").data["blob"]) == 300_000


async def test_malformed_object_from_the_server_is_skipped(emulator: Emulator, start_watch: StartWatch) -> None:
    bad = b.service("bad", ports=[{"name": "x", "port": 80, "targetPort": {"not": "valid"}}])
    await emulator.create(bad)
    await emulator.create(b.service("good"))
    store, _ = await start_watch(["services"])
    assert names(store, "services") == ["good"]


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        ClusterConfig.from_kubeconfig(tmp_path / "missing")
    with pytest.raises(ConfigError, match="in-cluster"):
        ClusterConfig.in_cluster(token_path=tmp_path / "t", ca_path=tmp_path / "c", environ={})
    with pytest.raises(ConfigError):
        ClusterConfig.from_url("ftp://example.com")
    with pytest.raises(KeyError):
        ApiSource(Store(), ClusterConfig.from_url("http://127.0.0.1:1"), ["widgets"])
    with pytest.raises(ValueError, match="twice"):
        ApiSource(Store(), ClusterConfig.from_url("http://127.0.0.1:1"), ["services", "services"])


async def test_api_client_writes_for_consumers(emulator: Emulator) -> None:
    """The generic request the ingress controller uses for status, leases and events."""
    async with ApiClient(ClusterConfig.from_kubeconfig(emulator.kubeconfig_path)) as client:
        created = await client.request(
            "POST", "/apis/networking.k8s.io/v1/namespaces/default/ingresses", body=b.ingress("site")
        )
        path = "/apis/networking.k8s.io/v1/namespaces/default/ingresses/site/status"
        patch = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}
        updated = await client.request("PATCH", path, body=patch, content_type="application/merge-patch+json")
        assert updated["status"] == patch["status"]
        assert updated["metadata"]["uid"] == created["metadata"]["uid"]
        with pytest.raises(ApiError) as missing:
            await client.request("GET", "/api/v1/namespaces/default/services/nope")
        assert missing.value.status == 404
        assert missing.value.reason == "NotFound"
        with pytest.raises(ApiError) as conflict:
            await client.request(
                "POST", "/apis/networking.k8s.io/v1/namespaces/default/ingresses", body=b.ingress("site")
            )
        assert conflict.value.status == 409
        assert conflict.value.reason == "AlreadyExists"
