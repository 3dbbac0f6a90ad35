"""Kinds the API server does not serve: a custom resource without its CRD (404) or not granted (403)
is reported once and served empty, without holding back the kinds that are there; a core kind that
is forbidden is not (it keeps the store unsynced, as a real failure must)."""

from __future__ import annotations

import logging

import pytest

from kubewatch import ApiSource, ClusterConfig, Store, WatchTuning
from tests.apiemu import Emulator
from tests.kubewatch import builders as b
from tests.kubewatch.conftest import StartWatch
from tests.kubewatch.waiting import until

# (how the emulator refuses, the kind refused, whether the store still syncs)
CASES = [
    ("hidden_resources", "gateway.networking.k8s.io/httproutes", "httproutes", True),
    ("forbidden_resources", "multicluster.x-k8s.io/serviceimports", "serviceimports", True),
    ("hidden_resources", "networking.k8s.io/ingresses", "ingresses", True),  # 404 for any kind
    ("forbidden_resources", "networking.k8s.io/ingresses", "ingresses", False),  # 403 only for custom ones
]


@pytest.mark.parametrize(("setting", "key", "kind", "syncs"), CASES, ids=[f"{s} {k}" for s, k, _, _ in CASES])
async def test_refused_kinds(emulator: Emulator, start_watch: StartWatch, caplog: pytest.LogCaptureFixture,
                             setting: str, key: str, kind: str, syncs: bool) -> None:
    await emulator.create(b.service("web", "default", cluster_ip="10.96.5.5"))
    await emulator.configure(**{setting: [key]})
    caplog.set_level(logging.WARNING, "kubewatch")
    store, source = await start_watch(["services", kind], wait=False)
    assert await store.wait_synced(["services"], timeout=10)
    assert store.service("default", "web") is not None
    assert await store.wait_synced(timeout=2) is syncs
    reported = [r for r in caplog.records if "does not serve" in r.getMessage()]
    assert len(reported) == (1 if syncs else 0)
    if syncs:
        refl = next(r for r in source.reflectors if r.kind.name == kind)
        assert refl.not_served
        assert store.count(kind) == 0


async def test_installed_later(emulator: Emulator) -> None:
    """The kind is listed again at the backoff cap and served once it is there."""
    await emulator.configure(hidden_resources=["multicluster.x-k8s.io/serviceimports"])
    store = Store()
    tuning = WatchTuning(backoff_initial=0.05, backoff_cap=0.2)
    source = ApiSource(store, ClusterConfig.from_kubeconfig(emulator.kubeconfig_path), ["serviceimports"],
                       tuning=tuning)
    await source.start()
    try:
        assert await store.wait_synced(timeout=10)
        await emulator.configure(hidden_resources=[])
        await emulator.create({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
                               "metadata": {"name": "svc1", "namespace": "default"},
                               "spec": {"type": "ClusterSetIP", "ips": ["10.0.0.1"]}})
        await until(lambda: store.service_import("default", "svc1") is not None)
    finally:
        await source.stop()
