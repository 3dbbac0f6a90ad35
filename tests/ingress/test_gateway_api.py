"""Gateway API against the API-server emulator and from --manifests: status written by the
lease holder as the spec words it (observedGeneration following each change, other
controllers' route parents kept), GET /status, and a cluster without the CRDs."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ingress.controller import Controller
from tests.apiemu import Emulator
from tests.ingress import gateway_objects as g
from tests.ingress import objects as o
from tests.ingress.backends import Backends
from tests.ingress.conftest import StartController, free_ports, until
from tests.ingress.test_api import api_options, create
from tests.ingress.test_cli import ROOT, _ok, controller_args, stop_process, write
from tests.ingress.test_cli import get as cli_get
from tests.ingress.test_gateway_nginx import get, outcome

V1 = g.V1
OTHER = "example.com/other-controller"


@pytest.fixture
async def emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    async with Emulator(tmp_path / "apiemu", persist=False) as emulator:
        yield emulator


def conds(items: list[dict[str, Any]]) -> dict[str, tuple[str, str, int]]:
    return {c["type"]: (c["status"], c["reason"], c["observedGeneration"]) for c in items}


async def obj(emu: Emulator, kind: str, name: str, namespace: str | None = "default") -> dict[str, Any]:
    found = await emu.get(V1, kind, name, namespace)
    assert found is not None
    return found


async def has(emu: Emulator, kind: str, name: str, check: Any, namespace: str | None = "default") -> bool:
    status = (await obj(emu, kind, name, namespace)).get("status") or {}
    try:
        return bool(check(status))
    except (KeyError, IndexError, StopIteration):
        return False


def ours(status: dict[str, Any]) -> dict[str, tuple[str, str, int]]:
    (parent,) = [p for p in status["parents"] if p["controllerName"] == g.CONTROLLER]
    return conds(parent["conditions"])


async def test_status_written_by_the_lease_holder(emu: Emulator, start_controller: StartController,
                                                  backends: Backends) -> None:  # fmt: skip
    (ip,), port = await backends.start("default/a")
    await create(emu, o.service("a", ("http", 80, "http"), cluster_ip=None), o.endpoint_slice("a", [ip], port),
                 g.namespace("other"),
                 o.service("e", ("http", 80, "http"), namespace="other", cluster_ip=None),
                 g.gateway_class(), g.gateway_class("theirs", OTHER), g.gateway("gw", g.listener()),
                 g.route("r", g.rule(g.backend("a"), matches=[g.match("/a")]),
                         g.rule(g.backend("e", namespace="other"), matches=[g.match("/e")])),
                 g.grant("let", "other", "default", to_name="e"))  # fmt: skip
    # Another controller's parent entry on our route: never touched.
    route = await obj(emu, "HTTPRoute", "r")
    theirs = {"parentRef": {"name": "elsewhere"}, "controllerName": OTHER,
              "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                              "observedGeneration": 1, "lastTransitionTime": "2024-01-01T00:00:00Z"}]}  # fmt: skip
    await emu.update_status({**route, "status": {"parents": [theirs]}})
    nginx_port, second_port = free_ports(2)
    controller = await start_controller(**api_options(emu, publish_status_address=("192.0.2.10",),
                                                      listener_port_map={80: nginx_port, 81: second_port}))  # fmt: skip
    await until(lambda: has(emu, "GatewayClass", "portolan",
                            lambda s: conds(s["conditions"])["Accepted"] == ("True", "Accepted", 1), None))
    await until(lambda: has(emu, "Gateway", "gw", lambda s: conds(s["conditions"]) == {
        "Accepted": ("True", "Accepted", 1), "Programmed": ("True", "Programmed", 1)}))  # fmt: skip
    gw = (await obj(emu, "Gateway", "gw"))["status"]
    assert gw["addresses"] == [{"type": "IPAddress", "value": "192.0.2.10"}]
    assert gw["listeners"][0]["attachedRoutes"] == 1
    assert all(c.get("lastTransitionTime") for c in gw["conditions"])
    assert (await obj(emu, "GatewayClass", "theirs", None)).get("status") in (None, {})
    await until(lambda: has(emu, "HTTPRoute", "r", lambda s: ours(s)["ResolvedRefs"][0] == "True"))
    status = (await obj(emu, "HTTPRoute", "r"))["status"]
    assert theirs in status["parents"]
    assert ours(status) == {"Accepted": ("True", "Accepted", 1), "ResolvedRefs": ("True", "ResolvedRefs", 1)}
    assert outcome(*await get(nginx_port, "x.com", "/e")) == "503"  # permitted, but "e" has no endpoint

    # The ReferenceGrant deleted: the share of "other/e" is refused at once.
    await emu.delete(V1, "ReferenceGrant", "let", "other")
    await until(lambda: has(emu, "HTTPRoute", "r", lambda s: ours(s)["ResolvedRefs"][:2] == ("False",
                                                                                             "RefNotPermitted")))
    await until(lambda: _answers(nginx_port, "/e", "500"))
    # The route changed (generation 2): observedGeneration follows; other parents stay.
    route = await obj(emu, "HTTPRoute", "r")
    route["spec"]["hostnames"] = ["nowhere.example.net"]
    route["spec"]["parentRefs"] = [{"name": "gw"}]
    await emu.replace(route)
    await until(lambda: has(emu, "HTTPRoute", "r", lambda s: ours(s)["Accepted"] == ("True", "Accepted", 2)))
    assert theirs in (await obj(emu, "HTTPRoute", "r"))["status"]["parents"]
    # A listener added mid-run: the Gateway's generation 2 shows in every condition.
    gateway = await obj(emu, "Gateway", "gw")
    gateway["spec"]["listeners"].append(g.listener("other", port=81, hostname="other.example.com"))
    await emu.replace(gateway)
    await until(lambda: has(emu, "Gateway", "gw", lambda s: [li["name"] for li in s["listeners"]] == ["http", "other"]
                            and conds(s["listeners"][1]["conditions"])["Accepted"] == ("True", "Accepted", 2)))
    # The route leaves our Gateway: our parent entry goes, the other controller's stays.
    route = await obj(emu, "HTTPRoute", "r")
    route["spec"]["parentRefs"] = [{"name": "elsewhere"}]
    await emu.replace(route)
    await until(lambda: has(emu, "HTTPRoute", "r", lambda s: s["parents"] == [theirs]))
    # /status says the same as the objects.
    items = await status_items(controller)
    kinds = sorted((i["kind"], i["metadata"]["name"]) for i in items)
    assert kinds == [("Gateway", "gw"), ("GatewayClass", "portolan")]


async def _answers(port: int, path: str, want: str) -> bool:
    return outcome(*await get(port, "x.com", path)) == want


async def status_items(controller: Controller) -> list[dict[str, Any]]:
    port = controller.httpd.ports["healthz"]
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/status") as resp:
        assert resp.status == 200
        body = await resp.json()
    items: list[dict[str, Any]] = body["items"]
    return items


async def test_without_the_crds_ingresses_are_served(tmp_path: Path, start_controller: StartController,
                                                     backends: Backends, client_for: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    async with Emulator(tmp_path / "apiemu", persist=False, without_groups=("gateway.networking.k8s.io",)) as emu:
        (ip,), port = await backends.start("w1")
        await create(emu, o.service("web", ("http", 80, "http"), cluster_ip=None), o.endpoint_slice("web", [ip], port),
                     o.ingress_class(), o.ingress("i", o.rule("foo.com", o.path("/", "web"))))  # fmt: skip
        controller = await start_controller(**api_options(emu))
        assert controller.gateway is None
        assert (await client_for(controller).request("foo.com", "/")).backend == "w1"
        said = [r.message for r in caplog.records if "Gateway API CRDs" in r.message]
        assert len(said) == 1, said


async def test_manifests_and_status_without_a_cluster(tmp_path: Path, start_controller: StartController,
                                                      backends: Backends) -> None:  # fmt: skip
    (ip,), port = await backends.start("default/a")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    docs = [o.service("a", ("http", 80, "http")), o.endpoint_slice("a", [ip], port), g.gateway_class(),
            g.gateway("gw", g.listener()), g.route("good", g.rule(g.backend("a"))),
            g.route("lost", g.rule(g.backend("a")), hostnames=["x.com"], parents=[g.parent(section="nope")]),
            o.ingress_class(), o.ingress("ing", o.rule("foo.com", o.path("/", "a")))]  # fmt: skip
    (manifests / "all.yaml").write_text("\n---\n".join(json.dumps(d) for d in docs))
    (nginx_port,) = free_ports(1)
    controller = await start_controller(manifests=str(manifests), use_store_source=False,
                                        listener_port_map={80: nginx_port},
                                        publish_status_address=("192.0.2.1",))  # fmt: skip
    assert outcome(*await get(nginx_port, "any.host", "/x")) == "default/a"
    items = {(i["kind"], i["metadata"]["name"]): i for i in await status_items(controller)}
    assert conds(items[("HTTPRoute", "good")]["status"]["parents"][0]["conditions"])["Accepted"][:2] == ("True",
                                                                                                         "Accepted")
    assert conds(items[("HTTPRoute", "lost")]["status"]["parents"][0]["conditions"])["Accepted"][:2] == (
        "False", "NoMatchingParent")
    assert items[("Ingress", "ing")]["status"] == {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    assert items[("Gateway", "gw")]["metadata"] == {"namespace": "default", "name": "gw", "generation": 1}


async def test_status_of_a_manifest_directory_as_a_user_sees_it(config_dir: Path, backends: Backends) -> None:
    # `portolan ingress --manifests DIR` and `curl /status`: why a route is not accepted, before any cluster.
    (ip,), port = await backends.start("default/a")
    manifests = config_dir / "manifests"
    manifests.mkdir()
    write(manifests / "all.yaml", o.service("a", ("http", 80, "http")), o.endpoint_slice("a", [ip], port),
          g.gateway_class(), g.gateway("gw", g.listener(hostname="*.example.com")),
          g.route("shop", g.rule(g.backend("a")), hostnames=["shop.example.com"]),
          g.route("typo", g.rule(g.backend("a")), hostnames=["shop.example.net"]))  # fmt: skip
    http, https, health, listener = free_ports(4)
    args = [*controller_args(config_dir, manifests, http, https, health), "--listener-port-map", f"80={listener}"]
    log = (config_dir / "controller.log").open("wb")
    proc = await asyncio.create_subprocess_exec(*args, cwd=ROOT, stdout=log, stderr=log,
                                                env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    log.close()
    try:
        await until(lambda: _ok(f"http://127.0.0.1:{health}/healthz"), timeout=20)
        code, text = await cli_get(f"http://127.0.0.1:{health}/status")
        assert code == 200
        items = {(i["kind"], i["metadata"]["name"]): i for i in json.loads(text)["items"]}
        typo = items[("HTTPRoute", "typo")]["status"]["parents"][0]
        assert conds(typo["conditions"])["Accepted"][:2] == ("False", "NoMatchingListenerHostname")
        assert outcome(*await get(listener, "shop.example.com", "/")) == "default/a"
    finally:
        await stop_process(proc)
