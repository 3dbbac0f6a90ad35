"""The routing table of test_model, through real nginx: the controller renders, tests and
starts nginx, and real requests with Host headers reach real backends."""

from __future__ import annotations

import pytest

from ingress.classes import ClassPolicy
from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.routing import CASES, SERVICES, Case, standard_objects


def outcome(status: int, backend: str | None) -> str:
    return backend if status == 200 and backend else str(status)


@pytest.mark.parametrize("pooled", [False, True], ids=["own-blocks", "pooled"])
@pytest.mark.parametrize("case", CASES, ids=str)
async def test_routing_through_nginx(case: Case, pooled: bool, start_controller, backends, client_for,
                                     request: pytest.FixtureRequest) -> None:  # fmt: skip
    # Pooled, the hosts that can share a server block do (the balancer matches their paths):
    # every request must meet what the hosts' own blocks give.
    if pooled:
        request.getfixturevalue("pool_every_host")
    addresses = {}
    for name in SERVICES:
        (ip,), port = await backends.start(name)
        addresses[name] = (ip, port)
    store = Store()
    o.put(store, *standard_objects(addresses), *case.ingresses)
    policy = ClassPolicy(watch_without_class=bool(case.options.get("watch_without_class")))
    controller = await start_controller(store, classes=policy)
    client = client_for(controller)
    got = []
    for host, path, _ in case.requests:
        reply = await client.request(host, path)
        got.append((host, path, outcome(reply.status, reply.backend)))
    assert got == case.requests
    conf = controller.layout.conf.read_text()
    assert ("pool:" in conf) == (pooled and any(h and "*" not in h for h, _, _ in case.requests)), conf
