"""Shared stores: readers of one cluster with agreeing specs share a store and one source per kind;
a different selection or cluster gets a store of its own; the last member to stop ends it all."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubewatch import WatchSpec
from kubewatch.shared import ManifestOrigin, SharedStores

CLUSTER = Path(__file__).resolve().parents[1] / "data" / "k8s" / "cluster.yaml"

SVC = WatchSpec("services")
NS = WatchSpec("namespaces")
ING = WatchSpec("ingresses")
LABELLED = WatchSpec("services", label_selector="app=web")

# (first member's specs and key, second member's): whether they share a store.
CASES = [
    (("a", [SVC, NS]), ("a", [SVC, ING]), True),  # services agree; ingresses added
    (("a", [SVC, NS]), ("a", [ING]), True),  # nothing in common
    (("a", [SVC, NS]), ("a", [LABELLED]), False),  # another selection of services
    (("a", [SVC]), ("b", [SVC]), False),  # another cluster
]


@pytest.mark.parametrize(("first", "second", "shared"), CASES)
def test_who_shares(first: tuple[str, list[WatchSpec]], second: tuple[str, list[WatchSpec]], shared: bool) -> None:
    reg = SharedStores()

    def origin() -> ManifestOrigin:
        return ManifestOrigin(str(CLUSTER))

    m1 = reg.join(first[0], first[1], origin)
    m2 = reg.join(second[0], second[1], origin)
    assert (m1.store is m2.store) is shared
    assert len(reg) == (1 if shared else 2)


async def test_sources_per_kind_and_the_last_stop() -> None:
    reg = SharedStores()
    m1 = reg.join("a", [NS, SVC], lambda: ManifestOrigin(str(CLUSTER)))
    await m1.start()
    assert m1.synced
    assert m1.store.service("testns", "my-svc") is not None
    m2 = reg.join("a", [SVC, ING], lambda: ManifestOrigin(str(CLUSTER)))
    assert not m2.synced  # ingresses are not fed yet
    await m2.start()
    assert m2.synced
    shared = m1.shared
    assert sorted(shared.fed) == ["ingresses", "namespaces", "services"]
    assert len(shared.sources) == 2  # one for m1's kinds, one for the kind only m2 added
    await m1.stop()
    assert len(reg) == 1  # m2 still runs
    assert m2.store.service("testns", "my-svc") is not None
    await m2.stop()
    assert len(reg) == 0
    assert not shared.sources
