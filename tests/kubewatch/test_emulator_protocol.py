"""The emulator's own protocol behaviour, checked with raw HTTP: if it drifted from the API
server's, the kubewatch tests that run against it would prove nothing."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.apiemu import Emulator
from tests.apiemu.harness import ROOT
from tests.kubewatch import builders as b

SERVICES = "/api/v1/namespaces/default/services"


class Stream:
    """A watch response read event by event."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.status = resp.status

    async def next(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next event, or None when the server closed the stream."""
        line = await asyncio.wait_for(self.resp.content.readline(), timeout)
        return json.loads(line) if line else None

    async def rest(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        events = []
        while (event := await self.next(timeout)) is not None:
            events.append(event)
        return events


@asynccontextmanager
async def watch(emu: Emulator, path: str, **params: str) -> AsyncIterator[Stream]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(emu.url + path, params={"watch": "true", **params}) as resp,
    ):
        yield Stream(resp)


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (read from /proc, which never blocks)."""
    proc_dir = Path(f"/proc/{pid}")
    return proc_dir.exists() and "Z" not in (proc_dir / "stat").read_text().split(")")[-1][:3]


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


async def test_discovery(emulator: Emulator) -> None:
    _, core = await emulator.request("GET", "/api")
    assert core["versions"] == ["v1"]
    _, groups = await emulator.request("GET", "/apis")
    names = {g["name"] for g in groups["groups"]}
    assert {"discovery.k8s.io", "networking.k8s.io", "coordination.k8s.io", "events.k8s.io"} <= names
    _, v1 = await emulator.request("GET", "/api/v1")
    resources = {r["name"]: r for r in v1["resources"]}
    assert resources["services"]["namespaced"]
    assert not resources["namespaces"]["namespaced"]
    assert "pods/status" in resources
    assert "watch" in resources["pods"]["verbs"]
    _, net = await emulator.request("GET", "/apis/networking.k8s.io/v1")
    assert {r["name"] for r in net["resources"]} == {"ingresses", "ingresses/status", "ingressclasses"}
    status, _ = await emulator.request("GET", "/apis/example.com/v1")
    assert status == 404


async def test_global_resource_version_and_list(emulator: Emulator) -> None:
    rv0 = await emulator.resource_version()
    a = await emulator.create(b.service("a"))
    c = await emulator.create(b.config_map("c"))
    assert int(a["metadata"]["resourceVersion"]) == rv0 + 1
    assert int(c["metadata"]["resourceVersion"]) == rv0 + 2  # one counter across kinds
    listing = await emulator.list("v1", "Service", "default")
    assert listing["kind"] == "ServiceList"
    assert listing["metadata"]["resourceVersion"] == str(rv0 + 2)
    assert [i["metadata"]["name"] for i in listing["items"]] == ["a"]
    assert a["spec"]["clusterIP"].startswith("10.96.")
    assert a["spec"]["ports"][0]["targetPort"] == 80


async def test_paged_list_is_one_consistent_snapshot(emulator: Emulator) -> None:
    for i in range(5):
        await emulator.create(b.service(f"s{i}"))
    first = await emulator.list("v1", "Service", "default", limit="2")
    assert [i["metadata"]["name"] for i in first["items"]] == ["s0", "s1"]
    assert first["metadata"]["remainingItemCount"] == 3
    await emulator.delete("v1", "Service", "s3")  # after the snapshot: not seen by the pages
    second = await emulator.list("v1", "Service", "default", limit="2", **{"continue": first["metadata"]["continue"]})
    third = await emulator.list("v1", "Service", "default", limit="2", **{"continue": second["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in second["items"] + third["items"]] == ["s2", "s3", "s4"]
    assert "continue" not in third["metadata"]
    assert third["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    await emulator.restart()
    status, body = await emulator.request(
        "GET", SERVICES, params={"limit": "2", "continue": first["metadata"]["continue"]}
    )
    assert status == 410
    assert body["reason"] == "Expired"


async def test_watch_streams_every_event_type_in_order(emulator: Emulator) -> None:
    rv = await emulator.resource_version()
    async with watch(emulator, SERVICES, resourceVersion=str(rv)) as stream:
        await emulator.create(b.service("a"))
        await emulator.patch("v1", "Service", "a", {"metadata": {"labels": {"x": "y"}}})
        await emulator.delete("v1", "Service", "a")
        events = [await stream.next() for _ in range(3)]
    assert summary(events) == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs)
    assert rvs[0] == rv + 1
    assert events[0]["object"]["kind"] == "Service"


async def test_watch_from_zero_sends_current_state_then_resume_replays(emulator: Emulator) -> None:
    await emulator.create(b.service("a"))
    rv_after_a = await emulator.resource_version()
    await emulator.create(b.service("b"))
    for start, expected in (("0", [("ADDED", "a"), ("ADDED", "b")]), (str(rv_after_a), [("ADDED", "b")])):
        async with watch(emulator, SERVICES, resourceVersion=start, allowWatchBookmarks="true") as stream:
            await emulator.wait_for_watchers("services")
            await emulator.send_bookmarks()  # a delimiter: everything before it has been sent
            events = [await stream.next() for _ in range(len(expected) + 1)]
        assert summary(events[:-1]) == expected
        assert events[-1]["type"] == "BOOKMARK"


async def test_timeout_seconds_ends_the_stream(emulator: Emulator) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with watch(emulator, SERVICES, resourceVersion="0", timeoutSeconds="1") as stream:
        assert await stream.rest(timeout=5) == []
    assert 0.9 <= loop.time() - start < 3


async def test_too_old_resource_version_is_gone(tmp_path) -> None:
    async with Emulator(tmp_path / "emu", history_window=2) as emu:
        old = await emu.resource_version()
        for i in range(4):
            await emu.create(b.service(f"s{i}"))
        # A real server accepts the watch and sends the 410 as an ERROR event.
        async with watch(emu, SERVICES, resourceVersion=str(old)) as stream:
            assert stream.status == 200
            events = await stream.rest()
        assert len(events) == 1
        assert events[0]["type"] == "ERROR"
        assert events[0]["object"]["code"] == 410
        assert events[0]["object"]["reason"] == "Expired"
        # The HTTP form, for clients that must handle both.
        await emu.configure(gone_as_http=True)
        async with watch(emu, SERVICES, resourceVersion=str(old)) as stream:
            assert stream.status == 410
        # Exact lists at an old rv: served from history while retained, else 410.
        status, _ = await emu.request(
            "GET", SERVICES, params={"resourceVersion": str(old), "resourceVersionMatch": "Exact"}
        )
        assert status == 410
        rv = await emu.resource_version()
        await emu.delete("v1", "Service", "s3")
        past = await emu.list("v1", "Service", "default", resourceVersion=str(rv), resourceVersionMatch="Exact")
        assert [i["metadata"]["name"] for i in past["items"]] == ["s0", "s1", "s2", "s3"]
        assert past["metadata"]["resourceVersion"] == str(rv)


async def test_forced_gone_ends_watches_with_410(emulator: Emulator) -> None:
    rv = await emulator.resource_version()
    async with watch(emulator, SERVICES, resourceVersion=str(rv)) as stream:
        await emulator.wait_for_watchers("services")
        await emulator.force_gone()
        events = await stream.rest()
    assert [e["type"] for e in events] == ["ERROR"]
    assert events[0]["object"]["code"] == 410
    async with watch(emulator, SERVICES, resourceVersion=str(rv)) as stream:
        assert (await stream.next())["object"]["code"] == 410  # even the latest rv is gone now


async def test_bookmarks_only_when_allowed(emulator: Emulator) -> None:
    await emulator.create(b.service("a"))
    rv = await emulator.resource_version()
    async with (
        watch(emulator, SERVICES, resourceVersion=str(rv), allowWatchBookmarks="true") as with_bm,
        watch(emulator, SERVICES, resourceVersion=str(rv)) as without,
    ):
        await emulator.wait_for_watchers("services", 2)
        await emulator.create(b.config_map("unrelated"))  # moves the global rv
        await emulator.send_bookmarks()
        event = await with_bm.next()
        assert event["type"] == "BOOKMARK"
        assert event["object"]["metadata"]["resourceVersion"] == str(rv + 1)
        assert event["object"]["kind"] == "Service"
        await emulator.create(b.service("b"))
        assert summary([await without.next()]) == [("ADDED", "b")]  # no bookmark came first


async def test_periodic_bookmarks(tmp_path) -> None:
    async with Emulator(tmp_path / "emu", bookmark_interval=0.1) as emu, watch(
        emu, SERVICES, resourceVersion=str(await emu.resource_version()), allowWatchBookmarks="1"
    ) as s:
        assert (await s.next(timeout=2))["type"] == "BOOKMARK"


async def test_label_and_field_selectors(emulator: Emulator) -> None:
    await emulator.create(b.service("web", labels={"app": "web", "tier": "front"}))
    await emulator.create(b.service("db", labels={"app": "db"}))
    await emulator.create(b.service("bare"))
    await emulator.create(b.namespace("shop"))
    await emulator.create(b.service("web", "shop", labels={"app": "web"}))
    cases = {
        "app=web": ["web"],
        "app==web": ["web"],
        "app!=web": ["bare", "db"],
        "app in (web,db)": ["db", "web"],
        "app notin (web)": ["bare", "db"],
        "tier": ["web"],
        "!tier": ["bare", "db"],
        "app,!tier": ["db"],
    }
    for selector, names in cases.items():
        got = await emulator.list("v1", "Service", "default", labelSelector=selector)
        assert sorted(i["metadata"]["name"] for i in got["items"]) == names, selector
    everywhere = await emulator.list("v1", "Service", None, fieldSelector="metadata.name=web")
    assert sorted(i["metadata"]["namespace"] for i in everywhere["items"]) == ["default", "shop"]
    only_shop = await emulator.list("v1", "Service", None, fieldSelector="metadata.namespace=shop")
    assert [i["metadata"]["name"] for i in only_shop["items"]] == ["web"]
    status, body = await emulator.request("GET", SERVICES, params={"fieldSelector": "spec.selector=x"})
    assert status == 400
    assert "field label not supported" in body["message"]
    status, _ = await emulator.request("GET", SERVICES, params={"labelSelector": "app in web"})
    assert status == 400


async def test_running_pods_field_selector_turns_updates_into_deletes(emulator: Emulator) -> None:
    pods = "/api/v1/pods"
    await emulator.create(b.pod("done", ip="10.2.0.9", phase="Succeeded"))
    rv = await emulator.resource_version()
    running = "status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown"
    listing = await emulator.list("v1", "Pod", None, fieldSelector=running)
    assert listing["items"] == []
    async with watch(emulator, pods, resourceVersion=str(rv), fieldSelector=running) as stream:
        await emulator.create(b.pod("p", ip="10.2.0.1", phase="Pending"))
        await emulator.update_status(b.pod("p", ip="10.2.0.1", phase="Running"))
        await emulator.update_status(b.pod("p", ip="10.2.0.1", phase="Succeeded"))
        await emulator.update_status(b.pod("p", ip="10.2.0.1", phase="Running"))
        events = [await stream.next() for _ in range(4)]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED", "ADDED"]
    # The DELETED for "stopped matching" carries the last matching content at the new rv.
    assert events[2]["object"]["status"]["phase"] == "Running"
    assert int(events[2]["object"]["metadata"]["resourceVersion"]) > int(
        events[1]["object"]["metadata"]["resourceVersion"]
    )


async def test_create_replace_conflicts_and_noop(emulator: Emulator) -> None:
    created = await emulator.create(b.service("a"))
    status, body = await emulator.request("POST", SERVICES, body=b.service("a"))
    assert status == 409
    assert body["reason"] == "AlreadyExists"
    stale = b.with_meta(b.service("a"), resourceVersion="1")
    status, body = await emulator.request("PUT", f"{SERVICES}/a", body=stale)
    assert status == 409
    assert body["reason"] == "Conflict"
    same = await emulator.replace(created)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]  # no-op write
    changed = await emulator.replace({**created, "spec": {**created["spec"], "ports": [{"port": 81}]}})
    assert int(changed["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert changed["spec"]["clusterIP"] == created["spec"]["clusterIP"]
    assert changed["metadata"]["generation"] == 2
    assert changed["metadata"]["uid"] == created["metadata"]["uid"]
    status, body = await emulator.request("POST", SERVICES, body=b.service("Bad_Name"))
    assert status == 422
    status, body = await emulator.request("GET", f"{SERVICES}/missing")
    assert status == 404
    assert body["reason"] == "NotFound"
    assert body["kind"] == "Status"


async def test_patch_types(emulator: Emulator) -> None:
    await emulator.create(b.service("a", ports=[{"name": "http", "port": 80}, {"name": "https", "port": 443}]))
    merged = await emulator.patch(
        "v1", "Service", "a", {"metadata": {"labels": {"k": "v"}}, "spec": {"type": "NodePort"}}
    )
    assert merged["metadata"]["labels"] == {"k": "v"}
    assert merged["spec"]["type"] == "NodePort"
    removed = await emulator.patch("v1", "Service", "a", {"metadata": {"labels": {"k": None}}})
    assert removed["metadata"]["labels"] == {}
    # Strategic merge: list elements merged by key, directives honoured (what kubectl apply sends).
    smp = {
        "spec": {
            "$setElementOrder/ports": [{"port": 8443}, {"port": 80}],
            "ports": [
                {"port": 443, "$patch": "delete"},
                {"name": "https", "port": 8443},
                {"port": 80, "targetPort": 8080},
            ],
        }
    }
    patched = await emulator.patch("v1", "Service", "a", smp, patch_type="strategic")
    assert [(p["port"], p["targetPort"]) for p in patched["spec"]["ports"]] == [(8443, 8443), (80, 8080)]
    json_patched = await emulator.patch(
        "v1",
        "Service",
        "a",
        [
            {"op": "test", "path": "/spec/type", "value": "NodePort"},
            {"op": "add", "path": "/metadata/labels/z", "value": "1"},
        ],
        patch_type="json",
    )
    assert json_patched["metadata"]["labels"] == {"z": "1"}
    status, _ = await emulator.request("PATCH", f"{SERVICES}/a", body={}, content_type="application/apply-patch+yaml")
    assert status == 415


async def test_status_subresource(emulator: Emulator) -> None:
    ing = await emulator.create(b.ingress("site"))
    lb = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    main = await emulator.replace({**ing, "status": lb, "spec": {**ing["spec"], "ingressClassName": "other"}})
    assert main["status"] == {"loadBalancer": {}}
    assert main["spec"]["ingressClassName"] == "other"
    status_only = await emulator.update_status({**main, "status": lb, "spec": {"ingressClassName": "ignored"}})
    assert status_only["status"] == lb
    assert status_only["spec"]["ingressClassName"] == "other"
    patched = await emulator.patch(
        "networking.k8s.io/v1", "Ingress", "site", {"status": {"loadBalancer": {"ingress": None}}}, subresource="status"
    )
    assert patched["status"] == {"loadBalancer": {}}
    status, _ = await emulator.request("PUT", "/api/v1/namespaces/default/configmaps/x/status", body={})
    assert status == 404


async def test_leases_and_events(emulator: Emulator) -> None:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "ingress-leader", "namespace": "default"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 30},
    }
    created = await emulator.create(lease)
    status, _ = await emulator.request("POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", body=lease)
    assert status == 409  # a second candidate loses the create race
    renewed = await emulator.replace({**created, "spec": {**created["spec"], "holderIdentity": "a", "renewTime": "x"}})
    status, _ = await emulator.request(
        "PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/ingress-leader", body=created
    )
    assert status == 409  # stale resourceVersion: someone else renewed in between
    assert renewed["spec"]["renewTime"] == "x"
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "site.", "namespace": "default"},
        "involvedObject": {"kind": "Ingress", "name": "site", "namespace": "default"},
        "reason": "Sync",
        "type": "Normal",
        "message": "Scheduled for sync",
    }
    made = await emulator.create(event)
    assert made["metadata"]["name"].startswith("site.")
    found = await emulator.list("v1", "Event", "default", fieldSelector="involvedObject.name=site")
    assert len(found["items"]) == 1


async def test_namespace_deletion_terminates_then_cascades(emulator: Emulator) -> None:
    await emulator.configure(namespace_finalize_delay=0.2)
    await emulator.create(b.namespace("shop"))
    await emulator.create(b.service("web", "shop"))
    rv = await emulator.resource_version()
    async with watch(emulator, "/api/v1/services", resourceVersion=str(rv)) as svc_stream:
        terminating = await emulator.delete("v1", "Namespace", "shop")
        assert terminating["status"]["phase"] == "Terminating"
        status, body = await emulator.request("POST", "/api/v1/namespaces/shop/services", body=b.service("new", "shop"))
        assert status == 403
        assert "being terminated" in body["message"]
        assert summary([await svc_stream.next()]) == [("DELETED", "web")]
    assert await emulator.get("v1", "Namespace", "shop") is None


async def test_bearer_tokens(tmp_path) -> None:
    async with Emulator(tmp_path / "emu", tokens=["secret"]) as emu:
        status, _ = await emu.request("GET", SERVICES, token="wrong")
        assert status == 401
        status, _ = await emu.request("GET", SERVICES)
        assert status == 200
        await emu.set_tokens(["rotated"])
        status, body = await emu.request("GET", SERVICES, token="secret")
        assert status == 401
        assert body["reason"] == "Unauthorized"
        async with aiohttp.ClientSession() as session, session.get(emu.url + "/_emu/state") as resp:
            assert resp.status == 200  # test controls need no credentials


async def test_restart_keeps_objects_and_resource_versions(emulator: Emulator) -> None:
    created = await emulator.create(b.service("a"))
    rv = await emulator.resource_version()
    url = emulator.url
    await emulator.restart()
    assert emulator.url == url
    assert await emulator.resource_version() == rv
    kept = await emulator.get("v1", "Service", "a")
    assert kept == created
    async with watch(emulator, SERVICES, resourceVersion=str(rv), allowWatchBookmarks="true") as stream:
        await emulator.wait_for_watchers("services")
        await emulator.send_bookmarks()
        # Resuming at the current rv works after a restart: no 410, nothing replayed.
        assert (await stream.next())["type"] == "BOOKMARK"
    async with watch(emulator, SERVICES, resourceVersion=str(rv - 1)) as stream:
        assert (await stream.next())["object"]["code"] == 410  # older ones: history is gone
    await emulator.create(b.service("b"))
    assert (await emulator.get("v1", "Service", "b"))["spec"]["clusterIP"] != created["spec"]["clusterIP"]


async def test_killed_emulator_keeps_acknowledged_writes(emulator: Emulator) -> None:
    await emulator.create(b.service("a"))
    await emulator.create(b.service("gone"))
    await emulator.delete("v1", "Service", "gone")
    await emulator.patch("v1", "Service", "a", {"metadata": {"labels": {"v": "2"}}})
    await emulator.compact(force=True)  # moves the rv with no object write
    rv = await emulator.resource_version()
    await emulator.kill()
    await emulator.start()
    assert await emulator.resource_version() == rv  # never back in time
    assert (await emulator.get("v1", "Service", "a"))["metadata"]["labels"] == {"v": "2"}
    assert await emulator.get("v1", "Service", "gone") is None


async def test_edit_state_while_down(emulator: Emulator) -> None:
    await emulator.create(b.service("a"))
    await emulator.create(b.service("b"))
    rv = await emulator.resource_version()
    await emulator.stop()

    def edit(objs: list[dict[str, Any]]) -> None:
        objs[:] = [o for o in objs if o["metadata"]["name"] != "a"]
        next(o for o in objs if o["metadata"]["name"] == "b")["metadata"]["labels"] = {"edited": "yes"}

    emulator.edit_state(edit)
    await emulator.start()
    assert await emulator.resource_version() > rv
    assert await emulator.get("v1", "Service", "a") is None
    edited = await emulator.get("v1", "Service", "b")
    assert edited["metadata"]["labels"] == {"edited": "yes"}
    assert int(edited["metadata"]["resourceVersion"]) > rv


async def test_emulator_dies_with_its_launcher(tmp_path) -> None:
    """A crashed test run must not leave emulators behind."""
    script = (
        "import asyncio, os, sys\n"
        "from tests.apiemu import Emulator\n"
        "async def main():\n"
        f"    emu = Emulator({str(tmp_path / 'emu')!r})\n"
        "    await emu.start()\n"
        "    print(emu.pid, flush=True)\n"
        "    os._exit(1)\n"
        "asyncio.run(main())\n"
    )
    launcher = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(launcher.communicate(), 30)
    pid = int(out.split()[0])
    async with asyncio.timeout(10):
        while _alive(pid):  # noqa: ASYNC110  (another process's state: polled, there is no event to await)
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("bad", [b"not json", b'{"kind": "Service"'])
async def test_undecodable_body_is_400(emulator: Emulator, bad: bytes) -> None:
    status, body = await emulator.request("POST", SERVICES, body=bad)
    assert status == 400
    assert body["kind"] == "Status"
