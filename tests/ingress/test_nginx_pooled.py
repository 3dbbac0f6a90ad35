"""Pooled hosts through real nginx (ingress/pooling.py): a path added to a pooled host is
live data (no reload), a new host is one reload, a host that needs a block of its own leaves
the pool and keeps being served, and a path no rule matches is the default backend's 404,
logged nowhere. test_nginx_routing runs the whole routing table pooled as well."""

from __future__ import annotations

import pytest

from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import metric, services, until
from tests.ingress.objects import ann
from tests.ingress.test_nginx_live import RELOADS, go_live, no_reload

pytestmark = pytest.mark.usefixtures("pool_every_host")


def web(name: str, *paths: str, annotations: dict[str, str] | None = None) -> o.Obj:
    """Ingress ``name`` for host ``<name>.com``, each path (Prefix) to Service "web"."""
    return o.ingress(name, o.rule(f"{name}.com", *(o.path(p, "web") for p in paths)), annotations=annotations)


async def test_paths_are_data_and_hosts_join_and_leave(start_controller, backends, client_for) -> None:
    store = Store()
    await services(backends, store, web=("w1",))
    o.put(store, web("one", "/a"), web("two", "/a"))
    controller = await start_controller(store)
    client = client_for(controller)
    conf = controller.layout.conf.read_text()
    assert "# pool:plain: 2 hosts" in conf
    assert "# one.com" not in conf  # no block of its own
    assert (await client.request("one.com", "/b")).status == 404
    unreloaded = no_reload(controller)
    await go_live(controller, store, web("one", "/a", "/b"))  # a new path: data only
    assert (await client.request("one.com", "/b/c")).backend == "w1"
    await go_live(controller, store, web("one", "/b"))  # and one gone
    assert (await client.request("one.com", "/a")).status == 404
    unreloaded()
    # A new host changes the pool's names: one reload.
    reloads = metric(controller, RELOADS)
    o.put(store, web("three", "/a"))
    await until(lambda: client.answers("three.com", "/a", backend="w1"))
    await until(lambda: metric(controller, RELOADS) == reloads + 1)  # counted once nginx confirmed it
    # proxy-body-size needs a location of its own: two.com leaves the pool, still served.
    o.put(store, web("two", "/a", annotations=ann(proxy_body_size="8m")))
    await until(lambda: "# two.com, first named by" in controller.layout.conf.read_text())
    for host in ("one.com", "two.com", "three.com"):
        reply = await client.request(host, f"/{'b' if host == 'one.com' else 'a'}/x")
        assert reply.backend == "w1", host


async def test_unmatched_paths_are_404_and_not_logged(start_controller, backends, client_for) -> None:
    # The balancer fails the request that matched no path; that must read as the built-in
    # default backend's 404 (not logged by default, as ingress-nginx's), with no error line.
    store = Store()
    await services(backends, store, web=("w1",))
    o.put(store, web("one", "/a"), o.ingress("gone", o.rule("gone.com", o.path("/a", "missing"))))
    controller = await start_controller(store)
    client = client_for(controller)
    errors_before = controller.layout.error_log.read_text().count("[error]")
    for n in range(20):
        assert (await client.request("one.com", f"/nothing/{n}")).status == 404
    assert (await client.request("one.com", "/a")).backend == "w1"
    assert (await client.request("gone.com", "/a")).status == 503  # a Service that does not exist
    # nginx writes a request's log line after its answer: wait for the last one's.
    await until(lambda: "GET /a " in controller.layout.access_log.read_text())
    log = controller.layout.access_log.read_text()
    assert "/nothing/" not in log
    assert "GET /a " in log
    errors = controller.layout.error_log.read_text()
    assert errors.count("[error]") == errors_before, errors
    assert "# pool:plain: 2 hosts" in controller.layout.conf.read_text()
