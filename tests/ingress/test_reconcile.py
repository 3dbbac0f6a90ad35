"""The reconcile loop against real nginx: changes picked up, identical configs skipped, a
configuration nginx -t rejects never replacing the running one and its Ingress named, nginx
restarted when it dies, health and metrics served."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import aiohttp

from ingress.controller import calls_for_rebuild
from ingress.debounce import Debouncer
from kubewatch import Store
from tests.ingress import objects as o
from tests.ingress.conftest import metric, nginx_workers, services, until
from tests.ingress.fakeclock import FakeClock

RELOADS = "portolan_ingress_reloads_total"
# Observed when a pass ends (syncs_total counts it when it begins).
PASSES_DONE = "portolan_ingress_sync_duration_seconds_count"


async def _setup(backends, *names: str) -> tuple[Store, list[str], int]:
    store = Store()
    addrs, port = (await services(backends, store, web=names))["web"]
    return store, addrs, port


async def test_changes_are_applied_and_identical_configs_skipped(start_controller, backends, client_for) -> None:
    store, addrs, port = await _setup(backends, "w1", "w2")
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "web"))))
    controller = await start_controller(store)
    client = client_for(controller)
    assert metric(controller, RELOADS) == 1
    first_hash = controller.running_hash

    # A new Ingress: picked up from the store's change feed.
    o.put(store, o.ingress("j", o.rule("bar.com", o.path("/", "web"))))
    await until(lambda: client.answers("bar.com"))
    await until(lambda: metric(controller, RELOADS) == 2)

    # A change of status only (written by us or someone): no pass at all, so no reload (the
    # debouncer's quiet period is 20 ms here; half a second is many of them).
    changed = o.ingress("j", o.rule("bar.com", o.path("/", "web")))
    changed["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    syncs = metric(controller, "portolan_ingress_syncs_total")
    o.put(store, changed)
    await asyncio.sleep(0.5)
    assert metric(controller, "portolan_ingress_syncs_total") == syncs
    assert metric(controller, RELOADS) == 2
    # A change of its annotations is a pass (that renders the same configuration: no reload).
    done = metric(controller, PASSES_DONE)
    o.put(store, {**changed, "metadata": {**changed["metadata"], "annotations": {"team": "x"}}})
    await until(lambda: metric(controller, "portolan_ingress_syncs_total") > syncs
                and metric(controller, PASSES_DONE) > done)  # fmt: skip
    assert metric(controller, RELOADS) == 2

    # Endpoints changed: live data, no reload; the same workers serve the new set.
    workers, second_hash = nginx_workers(controller), controller.running_hash
    pushes = metric(controller, "portolan_ingress_data_pushes_total")
    o.put(store, o.endpoint_slice("web", addrs[:1], port))
    await until(lambda: metric(controller, "portolan_ingress_data_pushes_total") > pushes)
    for _ in range(4):
        assert (await client.request("foo.com", "/")).backend == "w1"
    assert metric(controller, RELOADS) == 2
    assert nginx_workers(controller) == workers
    assert controller.running_hash == second_hash != first_hash
    assert metric(controller, "portolan_ingress_config_hash") == int(controller.running_hash[:12], 16)

    # Deleting the Ingress: host gone.
    o.remove(store, o.ingress("j"))
    await until(lambda: client.answers("bar.com", status=404))


async def test_failed_config_test_names_the_ingress_and_serves_the_rest(
    start_controller, backends, client_for, picky_nginx, caplog
) -> None:
    binary, _ = picky_nginx
    store, _, _ = await _setup(backends, "w1")
    o.put(store, o.ingress("a-good", o.rule("good.com", o.path("/", "web")), created="2024-01-01T00:00:00Z"))
    controller = await start_controller(store, nginx_binary=binary)
    client = client_for(controller)
    good_hash = controller.running_hash
    caplog.set_level(logging.WARNING)

    # One Ingress nginx refuses, between an older and a younger one that are fine.
    o.put(
        store,
        o.ingress("b-bad", o.rule("reject-me.com", o.path("/", "web")), created="2024-01-02T00:00:00Z"),
        o.ingress("c-later", o.rule("later.com", o.path("/", "web")), created="2024-01-03T00:00:00Z"),
    )
    await until(lambda: client.answers("later.com"))
    await until(lambda: controller.running_hash != good_hash)  # recorded just after nginx serves it
    assert await client.answers("good.com")
    assert (await client.request("reject-me.com", "/")).status == 404
    assert "reject-me" not in controller.layout.conf.read_text()
    assert set(controller.culprits) == {"default/b-bad"}
    assert metric(controller, "portolan_ingress_rejected_total", namespace="default", ingress="b-bad",
                  reason="config_test") == 1  # fmt: skip
    assert metric(controller, "portolan_ingress_reload_failures_total", reason="config_test") >= 1
    assert metric(controller, "portolan_ingress_rejected_ingresses") == 1
    named = [r.getMessage() for r in caplog.records if "default/b-bad" in r.getMessage()]
    assert any("ConfigTestFailed" in m and 'unknown directive "reject-me"' in m for m in named), named

    # Fixed (a new version): tried again and served.
    o.put(store, o.ingress("b-bad", o.rule("fixed.com", o.path("/", "web")), created="2024-01-02T00:00:00Z",
                           resource_version="2"))  # fmt: skip
    await until(lambda: client.answers("fixed.com"))
    assert controller.culprits == {}


async def test_config_failing_without_any_ingress_keeps_the_last_good_one(
    start_controller, backends, client_for, picky_nginx
) -> None:
    binary, marker = picky_nginx
    store, _, _ = await _setup(backends, "w1")
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "web"))))
    controller = await start_controller(store, nginx_binary=binary)
    client = client_for(controller)
    good_hash = controller.running_hash
    marker.touch()
    failures = metric(controller, "portolan_ingress_reload_failures_total", reason="config_test")
    o.put(store, o.ingress("j", o.rule("bar.com", o.path("/", "web"))))
    await until(lambda: metric(controller, "portolan_ingress_last_reload_successful") == 0)
    assert metric(controller, "portolan_ingress_reload_failures_total", reason="config_test") > failures
    assert controller.running_hash == good_hash
    assert controller.culprits == {}  # nobody blamed
    assert await client.answers("foo.com")
    assert (await client.request("bar.com", "/")).status == 404
    # Once nginx accepts configurations again, the retry applies the pending change.
    marker.unlink()
    await until(lambda: client.answers("bar.com"), timeout=15)


async def test_nginx_is_restarted_when_it_dies(start_controller, backends, client_for) -> None:
    store, _, _ = await _setup(backends, "w1")
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "web"))))
    controller = await start_controller(store)
    client = client_for(controller)
    pid = controller.nginx.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the master we started, by its PID
    await until(lambda: controller.nginx.pid not in (None, pid), timeout=10)
    await until(lambda: client.answers("foo.com"), timeout=10)
    assert metric(controller, "portolan_ingress_nginx_restarts_total") == 1


async def test_health_and_metrics_endpoints(start_controller, backends) -> None:
    store, _, _ = await _setup(backends, "w1")
    o.put(store, o.ingress("i", o.rule("foo.com", o.path("/", "web"))))
    o.put(store, o.ingress("bad", o.rule("foo.com", o.path("/x{", "web", path_type="ImplementationSpecific"))))
    controller = await start_controller(store)
    port = controller.httpd.ports["healthz"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
    assert resp.status == 200
    rejected = 'portolan_ingress_rejected_total{ingress="bad",namespace="default",reason="invalid"} 1.0'
    names = ("portolan_ingress_reloads_total 1.0", "portolan_ingress_reload_failures_total",
             "portolan_ingress_last_reload_timestamp_seconds", "portolan_ingress_config_hash")  # fmt: skip
    for name in (*names, rejected):
        assert name in text, name
    await controller.nginx.stop()
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as resp:
        assert resp.status == 503


async def test_nginx_runs_from_the_config_dir(start_controller, backends) -> None:
    store, _, _ = await _setup(backends, "w1")
    controller = await start_controller(store)
    layout = controller.layout
    assert layout.pid.read_text().strip() == str(controller.nginx.pid)
    conf = layout.conf.read_text()
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f'{kind}_temp_path "{layout.temp_path(kind)}";' in conf
    assert f'error_log "{layout.error_log}"' in conf
    assert f'access_log "{layout.access_log}"' in conf
    assert "/var/" not in conf
    assert "/run/" not in conf.replace(str(layout.run), "")


# ----------------------------------------------------------------------------- debounce


async def test_debounce_waits_for_quiet_and_bounds_the_delay() -> None:
    store = Store()
    clock = FakeClock()
    debouncer = Debouncer(store.subscribe_queue(["configmaps"]), clock, quiet=0.1, max_delay=0.5)

    def change(i: int) -> None:
        o.put(store, o.config_map("c", {"k": str(i)}))

    task = asyncio.create_task(debouncer.wait())
    await asyncio.sleep(0)
    change(0)
    await clock.advance(0)
    for i in range(1, 4):  # changes every 50 ms keep it waiting...
        await clock.advance(0.05)
        change(i)
        await clock.advance(0)
    assert not task.done()
    await clock.advance(0.1)  # ...until 100 ms pass quietly
    assert task.done()
    assert task.result() == 4

    task = asyncio.create_task(debouncer.wait())
    await asyncio.sleep(0)
    began = clock.now()
    change(10)
    await clock.advance(0)
    for i in range(11, 20):  # a steady trickle: released by max_delay after 0.5 s
        await clock.advance(0.06)
        if task.done():
            break
        change(i)
        await clock.advance(0)
    assert task.done()
    assert 0.5 <= clock.now() - began < 0.5 + 0.06 + 1e-6


async def test_status_writes_neither_start_nor_prolong_a_burst() -> None:
    # The controller's own status writes (a new record, the same spec) call for no rebuild: a
    # Secret rotated among thousands of them is rebuilt after the quiet period, not max_delay.
    store = Store()
    clock = FakeClock()
    web = o.ingress("web", o.rule("foo.com", o.path("/", "a")))
    o.put(store, web)
    debouncer = Debouncer(store.subscribe_queue(["ingresses", "configmaps"]), clock, quiet=0.1, max_delay=1.0,
                          relevant=calls_for_rebuild)  # fmt: skip
    debouncer.queue.take()

    def status_write(i: int) -> None:
        o.put(store, {**web, "metadata": {**web["metadata"], "resourceVersion": str(100 + i)},
                      "status": {"loadBalancer": {"ingress": [{"ip": f"10.0.0.{i % 250}"}]}}})  # fmt: skip

    task = asyncio.create_task(debouncer.wait())
    for i in range(5):
        status_write(i)
        await clock.advance(0.05)
    assert not task.done()  # no burst started
    o.put(store, o.config_map("c", {"k": "1"}))
    await clock.advance(0)
    for i in range(5, 8):  # still writing statuses every 20 ms
        await clock.advance(0.02)
        status_write(i)
        await clock.advance(0)
    await clock.advance(0.05)
    assert task.done()  # quiet 0.1 s after the relevant change: not held until max_delay
    assert task.result() == 1
    o.put(store, o.ingress("web", o.rule("foo.com", o.path("/b", "a")), resource_version="200"))
    assert calls_for_rebuild(debouncer.queue.take().changes[-1])  # a spec change does


async def test_poke_triggers_without_a_change() -> None:
    store = Store()
    clock = FakeClock()
    debouncer = Debouncer(store.subscribe_queue(["configmaps"]), clock, quiet=0.1)
    task = asyncio.create_task(debouncer.wait())
    await asyncio.sleep(0)
    debouncer.poke()
    await clock.advance(0)
    await clock.advance(0.1)
    assert task.done()
    assert task.result() == 0


async def test_metrics_on_their_own_port(start_controller) -> None:
    controller = await start_controller(metrics_port=0)  # 0: a free port of its own
    ports = controller.httpd.ports
    assert ports["healthz"] != ports["metrics"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{ports['metrics']}/metrics") as resp:
            assert resp.status == 200
            assert "portolan_ingress_reloads_total" in await resp.text()
        async with session.get(f"http://127.0.0.1:{ports['metrics']}/healthz") as resp:
            assert resp.status == 404
        async with session.get(f"http://127.0.0.1:{ports['healthz']}/healthz") as resp:
            assert resp.status == 200
