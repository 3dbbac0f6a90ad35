"""Against the API-server emulator (through a kubeconfig): objects changed while requests run,
Ingress status, Events, and leader election between two controllers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ingress.lease import LeaderElector, LeaseTiming
from kubewatch import ApiClient, ClusterConfig
from tests.apiemu import Emulator
from tests.ingress import objects as o
from tests.ingress.conftest import metric, nginx_workers, retired, until
from tests.ingress.fakeclock import FakeClock

NET = "networking.k8s.io/v1"
FAST_LEASE = LeaseTiming(duration=1.0, renew_deadline=0.6, retry=0.1)


@pytest.fixture
async def emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    async with Emulator(tmp_path / "apiemu", persist=False) as emulator:
        yield emulator


async def create(emu: Emulator, *objs: o.Obj) -> None:
    for obj in objs:
        await emu.create(o.for_api(obj))


async def web(emu: Emulator, backends, *names: str, service: str = "web") -> tuple[list[str], int]:
    addrs, port = await backends.start(*names)
    await create(emu, o.service(service, ("http", 80, "http"), cluster_ip=None), o.endpoint_slice(service, addrs, port))
    return addrs, port


def api_options(emu: Emulator, **extra: object) -> dict[str, object]:
    return {"kubeconfig": str(emu.kubeconfig_path), "use_store_source": False, "lease": FAST_LEASE, **extra}


async def lb_status(emu: Emulator, name: str, namespace: str = "default") -> list[dict[str, str]]:
    obj = await emu.get(NET, "Ingress", name, namespace)
    assert obj is not None
    return ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []


async def test_no_request_fails_across_reloads(emu: Emulator, start_controller, backends, client_for) -> None:
    addrs, port = await web(emu, backends, "w1", "w2")
    await create(emu, o.ingress_class(), o.ingress("main", o.rule("foo.com", o.path("/", "web"))))
    controller = await start_controller(**api_options(emu))
    client = client_for(controller)
    assert (await client.request("foo.com", "/")).status == 200

    stop = asyncio.Event()
    results: list[int | str] = []

    async def hammer() -> None:
        # Bounded: stops when told, or after 30 s whatever happens.
        async with asyncio.timeout(30):
            while not stop.is_set():
                try:
                    reply = await client.request("foo.com", "/load")
                    results.append(reply.status if reply.backend in ("w1", "w2", "w3") else f"{reply.status}?")
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    results.append(repr(exc))

    reloads_before = metric(controller, "portolan_ingress_reloads_total")
    workers = [asyncio.create_task(hammer()) for _ in range(4)]
    try:
        extra_addrs, extra_port = await backends.start("w3")
        steps = [  # (change, whether it changes nginx.conf: endpoints alone go live without a reload)
            (create(emu, o.ingress("other", o.rule("bar.com", o.path("/", "web")))), True),
            (emu.replace(o.for_api(o.endpoint_slice("web", addrs[:1], port))), False),
            (create(emu, o.ingress("more", o.rule("foo.com", o.path("/api", "web", path_type="Exact")))), True),
            (emu.replace(o.for_api(o.endpoint_slice("web", addrs, port))), False),
            (emu.delete(NET, "Ingress", "other"), True),
            (create(emu, o.service("w3svc", ("http", 80, "http"), cluster_ip=None),
                    o.endpoint_slice("w3svc", extra_addrs, extra_port),
                    o.ingress("third", o.rule("baz.com", o.path("/", "w3svc")))), True),
            (emu.delete(NET, "Ingress", "more"), True),
        ]  # fmt: skip
        structural = 0
        passes = "portolan_ingress_sync_duration_seconds_count"  # observed when a pass ends
        for step, reloads in steps:
            done, before = metric(controller, passes), metric(controller, "portolan_ingress_reloads_total")
            await step
            await until(lambda done=done: metric(controller, passes) > done and controller.running_hash != "")
            await asyncio.sleep(0.15)  # requests keep flowing while nginx swaps workers
            if not reloads:
                assert metric(controller, "portolan_ingress_reloads_total") == before
            structural += reloads
    finally:
        stop.set()
        await asyncio.gather(*workers)
    reloads = metric(controller, "portolan_ingress_reloads_total") - reloads_before
    failures = [r for r in results if r != 200]
    assert 3 <= reloads <= structural  # close structural changes may share a reload
    assert len(results) > 100
    assert failures == [], failures[:10]
    assert (await client.request("baz.com", "/")).backend == "w3"


async def test_status_events_and_class_changes(
    emu: Emulator, start_controller, backends, client_for, picky_nginx
) -> None:
    await web(emu, backends, "w1")
    await create(
        emu,
        o.ingress_class(),
        o.ingress_class("nginx", controller="k8s.io/ingress-nginx"),
        o.ingress("ours", o.rule("foo.com", o.path("/", "web"))),
        o.ingress("theirs", o.rule("bar.com", o.path("/", "web")), class_name="nginx"),
        o.ingress("bad", o.rule("bad.com", o.path("/a;b", "web", path_type="ImplementationSpecific"))),
        o.ingress("refused", o.rule("reject-me.com", o.path("/", "web"))),  # valid, but nginx -t refuses it
    )
    controller = await start_controller(
        **api_options(emu, publish_status_address=("192.0.2.10", "lb.example.com"), nginx_binary=picky_nginx[0])
    )
    want = [{"ip": "192.0.2.10"}, {"hostname": "lb.example.com"}]
    await until(lambda: _status_is(emu, "ours", want))
    assert await lb_status(emu, "theirs") == []  # another controller's: never touched
    assert await lb_status(emu, "bad") == []  # not served: no address
    assert await lb_status(emu, "refused") == []

    # Both left-out Ingresses are reported as Kubernetes Events on them.
    async def events_for(name: str) -> list[dict]:
        items = (await emu.list("v1", "Event", "default"))["items"]
        return [e for e in items if e["involvedObject"]["name"] == name]

    async def reported() -> bool:
        return bool(await events_for("bad")) and bool(await events_for("refused"))

    await until(reported)
    (bad,) = await events_for("bad")
    assert bad["type"] == "Warning"
    assert bad["reason"] == "InvalidIngress"
    assert "spec.rules[0].http.paths[0].path" in bad["message"]
    assert bad["involvedObject"]["kind"] == "Ingress"
    assert bad["involvedObject"]["uid"]
    (refused,) = await events_for("refused")
    assert refused["reason"] == "ConfigTestFailed"
    assert 'unknown directive "reject-me"' in refused["message"]

    # Leaving our class: the address we wrote is removed, and the host is no longer served.
    moved = o.for_api(o.ingress("ours", o.rule("foo.com", o.path("/", "web")), class_name="nginx"))
    old_workers = nginx_workers(controller)
    await emu.replace(moved)
    await until(lambda: _status_is(emu, "ours", []))
    client = client_for(controller)
    # Status is written apart from the reload: wait for nginx too, and for the workers that
    # still served foo.com to be gone.
    await until(lambda: client.answers("foo.com", status=404))
    await retired(controller, old_workers)
    assert (await client.request("foo.com", "/")).status == 404
    assert await lb_status(emu, "theirs") == []


async def _status_is(emu: Emulator, name: str, want: list[dict[str, str]], namespace: str = "default") -> bool:
    return await lb_status(emu, name, namespace) == want


async def test_status_from_publish_service(emu: Emulator, start_controller, backends) -> None:
    await web(emu, backends, "w1")
    svc = o.service("portolan", ("http", 80, 80), namespace="ingress", cluster_ip=None)
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}
    await create(emu, svc, o.ingress_class(), o.ingress("ours", o.rule("foo.com", o.path("/", "web"))))
    await start_controller(**api_options(emu, publish_service=("ingress", "portolan")))
    await until(lambda: _status_is(emu, "ours", [{"ip": "198.51.100.7"}]))
    # The Service's address changes: so does the Ingress's.
    await emu.update_status({**o.for_api(svc), "status": {"loadBalancer": {"ingress": [{"hostname": "lb.test"}]}}})
    await until(lambda: _status_is(emu, "ours", [{"hostname": "lb.test"}]))


async def test_one_leader_writes_status_and_the_other_takes_over(emu: Emulator, start_controller, backends) -> None:
    await web(emu, backends, "w1")
    await create(emu, o.ingress_class(), o.ingress("ours", o.rule("foo.com", o.path("/", "web"))))
    first = await start_controller(**api_options(emu, publish_status_address=("192.0.2.1",), identity="first"))
    await until(lambda: _status_is(emu, "ours", [{"ip": "192.0.2.1"}]))
    second = await start_controller(**api_options(emu, publish_status_address=("192.0.2.2",), identity="second"))
    assert first.elector is not None
    assert second.elector is not None
    # The second replica serves traffic too, but does not write: the status stays put.
    for _ in range(10):
        await asyncio.sleep(FAST_LEASE.retry)
        assert first.elector.is_leader
        assert not second.elector.is_leader
        assert await lb_status(emu, "ours") == [{"ip": "192.0.2.1"}]
    lease = await emu.get("coordination.k8s.io/v1", "Lease", "portolan-ingress-leader", "default")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "first"
    assert second.metrics.registry.get_sample_value("portolan_ingress_leader") == 0

    await first.stop()  # releases the lease
    await until(lambda: second.elector.is_leader, timeout=5)
    await until(lambda: _status_is(emu, "ours", [{"ip": "192.0.2.2"}]))
    lease = await emu.get("coordination.k8s.io/v1", "Lease", "portolan-ingress-leader", "default")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "second"
    assert lease["spec"]["leaseTransitions"] >= 1


async def test_lease_expiry_takeover_with_an_injected_clock(emu: Emulator) -> None:
    api = ApiClient(ClusterConfig.from_kubeconfig(emu.kubeconfig_path))
    timing = LeaseTiming(duration=15.0, renew_deadline=10.0, retry=2.0)
    clock_a, clock_b = FakeClock(), FakeClock()
    a = LeaderElector(api, "default", "lock", "a", timing=timing, clock=clock_a)
    b = LeaderElector(api, "default", "lock", "b", timing=timing, clock=clock_b)
    unreachable = ApiClient(ClusterConfig.from_url("http://127.0.0.1:1"), connect_timeout=1)
    try:
        assert await a.step()
        assert not await b.step()
        await clock_b.advance(10)
        assert await a.step()  # renewed: b's observation restarts
        assert not await b.step()
        await clock_b.advance(14)
        assert not await b.step()  # 14 s since b last saw the record change: not expired
        # a crashes (no more renewals); 15 s after b last saw a change, b takes over.
        await clock_b.advance(2)
        assert await b.step()
        lease = await api.request("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/lock")
        assert lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] == 1
        # a comes back: it sees b holding a fresh lease and steps down at once.
        assert not await a.step()
        assert not a.is_leader
        # b cannot renew for longer than renew_deadline (the API is unreachable): it steps down.
        b.api = unreachable
        await clock_b.advance(5)
        assert await b.step()  # within the deadline it still counts as leader
        await clock_b.advance(6)
        assert not await b.step()
    finally:
        await api.close()
        await unreachable.close()


async def test_watch_namespace_and_configmap(emu: Emulator, start_controller, backends, client_for) -> None:
    (a_ip,), port = await backends.start("team-a-web")
    (b_ip,), _ = await backends.start("team-b-web")
    await create(
        emu,
        o.ingress_class(),
        o.service("web", ("http", 80, "http"), namespace="team-a", cluster_ip=None),
        o.endpoint_slice("web", [a_ip], port, namespace="team-a"),
        o.ingress("site", o.rule("a.com", o.path("/", "web")), namespace="team-a"),
        o.service("web", ("http", 80, "http"), namespace="team-b", cluster_ip=None),
        o.endpoint_slice("web", [b_ip], port, namespace="team-b"),
        o.ingress("site", o.rule("b.com", o.path("/", "web")), namespace="team-b"),
        o.config_map("portolan", {"proxy-read-timeout": "7", "http-redirect-code": "301"}, namespace="ingress"),
    )
    controller = await start_controller(
        **api_options(
            emu, watch_namespace="team-a", configmap=("ingress", "portolan"), publish_status_address=("192.0.2.3",)
        )
    )
    client = client_for(controller)
    assert (await client.request("a.com", "/")).backend == "team-a-web"
    assert (await client.request("b.com", "/")).status == 404
    assert "proxy_read_timeout 7s;" in controller.layout.conf.read_text()
    await until(lambda: _status_is(emu, "site", [{"ip": "192.0.2.3"}], "team-a"))
    # Out of our namespace: never written.
    obj = await emu.get(NET, "Ingress", "site", "team-b")
    assert obj is not None
    assert not (obj.get("status") or {}).get("loadBalancer", {}).get("ingress")
    # The ConfigMap changes: nginx is reconfigured.
    await emu.replace(o.for_api(o.config_map("portolan", {"proxy-read-timeout": "9"}, namespace="ingress")))
    await until(lambda: "proxy_read_timeout 9s;" in controller.layout.conf.read_text())


async def test_annotations_and_tcp_services_through_the_api(emu: Emulator, start_controller, backends,
                                                            client_for) -> None:  # fmt: skip
    from tests.ingress.conftest import free_ports
    from tests.ingress.test_nginx_l4 import STREAM_MODULE, echo_backends, tcp_exchange

    await web(emu, backends, "w1")
    (tcp_port,) = free_ports(1)
    async with echo_backends("t1", first=130) as (addrs, port):
        await create(
            emu,
            o.ingress_class(),
            o.service("echo", ("tcp", 7000, port), cluster_ip=None),
            o.endpoint_slice("echo", addrs, port, port_name="tcp"),
            o.ingress("moved", o.rule("old.com", o.path("/", "web")),
                      annotations={o.A + "permanent-redirect": "https://new.example.com/"}),
            o.ingress("hostile", o.rule("bad.com", o.path("/", "web")),
                      annotations={o.A + "permanent-redirect": "https://x.com/;\nPWNED"}),
            o.config_map("settings", {"server-tokens": "true"}, namespace="ingress"),
            o.config_map("tcp", {str(tcp_port): "default/echo:7000"}, namespace="ingress"),
        )  # fmt: skip
        controller = await start_controller(**api_options(
            emu, configmap=("ingress", "settings"), tcp_services_configmap=("ingress", "tcp"),
            stream_module=STREAM_MODULE))  # fmt: skip
        client = client_for(controller)
        reply = await client.request("old.com", "/")
        assert (reply.status, reply.headers["Location"]) == (301, "https://new.example.com/")
        assert reply.headers["Server"].startswith("nginx/")
        assert (await tcp_exchange(tcp_port, b"hi\n")).startswith(b"t1:hi")

        async def reported() -> bool:
            items = (await emu.list("v1", "Event", "default"))["items"]
            return any(e["involvedObject"]["name"] == "hostile" and e["reason"] == "InvalidIngress"
                       and "permanent-redirect" in e["message"] for e in items)  # fmt: skip

        await until(reported)
        assert "pwned" not in controller.layout.conf.read_text().lower()
