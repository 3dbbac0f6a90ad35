"""The store: data, indexes, version rules, sync state and the change feed."""

from __future__ import annotations

import asyncio
import gc
import math
import random

from kubewatch import (
    ENDPOINT_SLICES,
    INGRESSES,
    NAMESPACES,
    PODS,
    SERVICES,
    Backoff,
    Store,
    gc_control,
    settle_gc,
)
from kubewatch.indexes import MultiIndex
from tests.kubewatch import builders as b


def svc(name: str, ip: str, ns: str = "default", **kw) -> object:
    return SERVICES.convert(b.service(name, ns, cluster_ip=ip, **kw))


def test_get_list_count_and_namespace_cleanup() -> None:
    store = Store()
    store.upsert("services", svc("a", "10.0.0.1"))
    store.upsert("services", svc("b", "10.0.0.2", ns="shop"))
    assert store.get("services", "default", "a") is store.service("default", "a")
    assert {s.name for s in store.list("services")} == {"a", "b"}
    assert [s.name for s in store.list("services", "shop")] == ["b"]
    assert store.count("services") == 2
    store.delete("services", "shop", "b")
    assert store.namespaces_with("services") == ["default"]
    assert store.count(SERVICES) == 1
    assert store.delete("services", "shop", "b") is None


def test_ip_indexes_follow_updates() -> None:
    store = Store()
    store.upsert("services", svc("dual", "10.0.0.1", cluster_ips=["10.0.0.1", "fd00::1"]))
    assert [s.name for s in store.services_by_ip("fd00::1")] == ["dual"]
    store.upsert("services", svc("dual", "10.0.0.9"))
    assert store.services_by_ip("10.0.0.1") == ()
    assert store.services_by_ip("fd00::1") == ()
    assert [s.name for s in store.services_by_ip("10.0.0.9")] == ["dual"]

    sl = ENDPOINT_SLICES.convert(
        b.endpoint_slice("web-1", service="web", endpoints=[b.endpoint("10.1.0.1"), b.endpoint("10.1.0.2")])
    )
    other = ENDPOINT_SLICES.convert(b.endpoint_slice("api-1", service="api", endpoints=[b.endpoint("10.1.0.1")]))
    store.upsert("endpointslices", sl)
    store.upsert("endpointslices", other)
    # One pod behind two services: both slices, each with its endpoint.
    assert sorted(s.name for s, _ in store.endpoints_by_ip("10.1.0.1")) == ["api-1", "web-1"]
    assert [s.name for s in store.slices_for_service("default", "web")] == ["web-1"]
    store.delete("endpointslices", "default", "api-1")
    assert [s.name for s, _ in store.endpoints_by_ip("10.1.0.1")] == ["web-1"]
    moved = ENDPOINT_SLICES.convert(b.endpoint_slice("web-1", service="web", endpoints=[b.endpoint("10.1.0.3")]))
    store.upsert("endpointslices", moved)
    assert store.endpoints_by_ip("10.1.0.1") == []
    assert len(store.endpoints_by_ip("10.1.0.3")) == 1
    store.delete("endpointslices", "default", "web-1")
    assert store.slices_for_service("default", "web") == ()
    assert store.indexes.slices_by_service == {}


def test_pods_by_ip_skips_deleting_pods_and_shares_ips() -> None:
    store = Store()
    store.upsert("pods", PODS.convert(b.pod("a", ip="10.2.0.1")))
    store.upsert("pods", PODS.convert(b.pod("host", "kube-system", ip="10.2.0.1")))  # hostNetwork: same IP
    assert sorted(p.name for p in store.pods_by_ip("10.2.0.1")) == ["a", "host"]
    store.upsert("pods", PODS.convert(b.with_meta(b.pod("a", ip="10.2.0.1"), deletionTimestamp="2024-01-01T00:00:00Z")))
    assert [p.name for p in store.pods_by_ip("10.2.0.1")] == ["host"]
    assert store.pod("default", "a") is not None


def test_version_counts_only_dns_relevant_changes() -> None:
    clock = iter(range(100, 200)).__next__
    store = Store(wall_clock=lambda: float(clock()))
    v0 = store.version
    store.upsert("services", svc("a", "10.0.0.1"))
    assert store.version == v0 + 1
    assert store.last_change == 101.0
    # Same content under a new resourceVersion: no change at all.
    assert store.upsert("services", svc("a", "10.0.0.1")) is None
    assert store.version == v0 + 1
    # A pod's phase does not change DNS answers; its IP does.
    store.upsert("pods", PODS.convert(b.pod("p", ip="10.2.0.1", phase="Pending")))
    v1 = store.version
    change = store.upsert("pods", PODS.convert(b.pod("p", ip="10.2.0.1", phase="Running")))
    assert change is not None
    assert change.type == "MODIFIED"
    assert store.version == v1
    store.upsert("pods", PODS.convert(b.pod("p", ip="10.2.0.2")))
    assert store.version == v1 + 1
    # Ingresses are not DNS data: their generation counter moves, the DNS version does not.
    gen = store.generations["ingresses"]
    store.upsert("ingresses", INGRESSES.convert(b.ingress("i")))
    assert store.version == v1 + 1
    assert store.generations["ingresses"] == gen + 1


def test_replace_publishes_a_diff_after_applying_everything() -> None:
    store = Store()
    store.upsert("services", svc("keep", "10.0.0.1"))
    store.upsert("services", svc("change", "10.0.0.2"))
    store.upsert("services", svc("drop", "10.0.0.3"))
    store.upsert("services", svc("other-ns", "10.0.0.4", ns="shop"))
    seen = []

    def on_change(kind, etype, old, new) -> None:
        # Subscribers see the complete new state, whichever change they are told about.
        seen.append((etype, (new or old).name, store.service("default", "add") is not None))

    store.subscribe(on_change)
    changes = store.replace(
        "services",
        [svc("keep", "10.0.0.1"), svc("change", "10.0.0.9"), svc("add", "10.0.0.5")],
        namespace="default",
    )
    assert sorted((c.type, (c.new or c.old).name) for c in changes) == [
        ("ADDED", "add"),
        ("DELETED", "drop"),
        ("MODIFIED", "change"),
    ]
    assert all(full for _, _, full in seen)
    assert len(seen) == 3
    assert store.service("shop", "other-ns") is not None  # outside the scope: untouched
    store.replace("namespaces", [NAMESPACES.convert(b.namespace("a")), NAMESPACES.convert(b.namespace("b"))])
    store.replace("namespaces", [], name="a")  # scope of one cluster-scoped object
    assert [n.name for n in store.list("namespaces")] == ["b"]


async def test_synced_per_kind_and_overall() -> None:
    store = Store()
    assert not store.synced
    store.expect(["services", "endpointslices"])
    store.mark_synced("services")
    assert store.is_synced("services")
    assert not store.synced
    assert not await store.wait_synced(timeout=0.01)
    assert await store.wait_synced(["services"], timeout=0.01)
    waiter = asyncio.create_task(store.wait_synced(timeout=5))
    await asyncio.sleep(0)
    store.mark_synced(ENDPOINT_SLICES)
    assert await waiter
    assert store.synced
    assert store.synced_event().is_set()
    assert store.synced_event("services").is_set()


async def test_queue_subscription_batches_filters_and_overflows() -> None:
    store = Store()
    q = store.subscribe_queue(["services"], maxsize=2)
    getter = asyncio.create_task(q.get_batch())
    await asyncio.sleep(0)
    store.upsert("services", svc("a", "10.0.0.1"))
    store.upsert("pods", PODS.convert(b.pod("p", ip="10.2.0.1")))  # not subscribed
    batch = await getter
    assert [(c.kind, c.type) for c in batch.changes] == [("services", "ADDED")]
    assert not batch.overflowed
    for i in range(3):
        store.upsert("services", svc(f"s{i}", f"10.0.1.{i}"))
    batch = await q.get_batch()
    assert len(batch.changes) == 2
    assert batch.overflowed
    assert q.take() == ([], False)
    q.close()
    store.upsert("services", svc("late", "10.0.0.7"))
    assert len(q) == 0


def test_callbacks_survive_a_failing_subscriber() -> None:
    store = Store()
    got = []

    def broken(*_: object) -> None:
        raise RuntimeError("consumer bug")

    store.subscribe(broken)
    unsubscribe = store.subscribe(lambda kind, etype, old, new: got.append(etype), kinds=["services"])
    store.upsert("services", svc("a", "10.0.0.1"))
    unsubscribe()
    store.upsert("services", svc("b", "10.0.0.2"))
    assert got == ["ADDED"]
    assert store.count("services") == 2


def test_staleness_from_sources() -> None:
    class Source:
        kinds = frozenset({"services"})

        def staleness(self, kind: str) -> float:
            return 4.0

    store = Store()
    assert store.staleness() == math.inf
    store.add_source(Source())
    assert store.staleness("services") == 4.0
    assert store.staleness() == 4.0
    assert store.staleness("pods") == math.inf
    assert "services" in store.expected_kinds


def test_multi_index_single_and_several() -> None:
    idx: MultiIndex[str] = MultiIndex()
    idx.add("k", "a")
    idx.add("k", "b")
    assert idx.get("k") == ("a", "b")
    idx.remove("k", "a")
    assert idx.get("k") == ("b",)
    idx.remove("k", "b")
    assert idx.get("k") == ()
    assert len(idx) == 0


def test_backoff_is_capped_jittered_and_resets() -> None:
    bo = Backoff(initial=1.0, cap=8.0, jitter=0.5, rng=random.Random(1))
    delays = [bo.next() for _ in range(8)]
    bases = [1, 2, 4, 8, 8, 8, 8, 8]
    assert all(base * 0.5 <= d <= base for d, base in zip(delays, bases, strict=True))
    assert len(set(delays)) == len(delays)  # jittered
    bo.reset()
    assert bo.next() <= 1.0
    bo.attempts = 10_000
    assert bo.next() <= 8.0  # no overflow however long the outage


def test_gc_pause_restores_and_settle_freezes() -> None:
    assert gc.isenabled()
    with gc_control.paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_control.paused():
            pass
        assert not gc.isenabled()  # an application's own choice is kept
    finally:
        gc.enable()
    settle_gc()
    try:
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
