"""The API-server outage drill, shared by the test (a short outage) and bench/drills.py (60 s): under
dnsperf against `portolan dns` and an HTTP load through the ingress controller's nginx, the API server
is killed, a Service and an EndpointSlice change while it is down, and it comes back without its watch
history, so every watch resumed from before gets 410 Gone and both servers relist."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.apiemu.harness import Emulator
from tests.drills.kit import DnsPerf, PerfResult, queries_file
from tests.ingress import objects as o
from tests.ingress.backends import Backends
from tests.ingress.conftest import Client
from tests.server import DnsServer

DNS_NAME = "my-svc.testns.svc.cluster.local"  # in tests/data/k8s/cluster.yaml, answered throughout
NEW_NAME = "during-outage.testns.svc.cluster.local"  # created while the API server is down
NEW_IP = "10.96.0.77"


CLUSTER = Path(__file__).resolve().parents[1] / "data" / "k8s" / "cluster.yaml"


async def seed(emu: Emulator, backends: Backends) -> tuple[list[str], int]:
    """The drill's objects: the DNS test cluster, and Ingress foo.com -> Service web -> backend w1.
    Returns backend w2's (addresses, port), where web's EndpointSlice moves while the API server is down."""
    for doc in yaml.safe_load_all(CLUSTER.read_text()):
        await emu.apply(doc)
    (ip,), port = await backends.start("w1")
    moved_to = await backends.start("w2")
    for obj in (o.service("web", ("http", 80, "http"), cluster_ip=None), o.endpoint_slice("web", [ip], port),
                o.ingress_class(), o.ingress("i", o.rule("foo.com", o.path("/", "web")))):
        await emu.create(o.for_api(obj))
    return moved_to


def dns_corefile(kubeconfig: Path) -> str:
    return f""".:{{port}} {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        kubeconfig {kubeconfig}
    }}
}}
"""


def new_service() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "during-outage", "namespace": "testns"},
            "spec": {"clusterIP": NEW_IP, "clusterIPs": [NEW_IP],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}


@dataclass
class OutageNumbers:
    """What the drill measured."""

    outage: float  # seconds the API server was down
    dns: PerfResult  # dnsperf over the whole drill
    http_ok: int  # requests served through nginx over the whole drill
    http_failed: int
    relisted: float  # seconds from the API server's return to both servers watching what changed again
    dns_converged: float  # seconds from the return to the Service made while down being answered
    ingress_converged: float  # seconds from the return to the EndpointSlice changed while down being used
    dns_gone: int  # lines in which portolan dns reports a 410 Gone watch (the drill's premise)


async def _until(check: Any, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"not converged within {timeout}s")


async def api_outage_drill(emu: Emulator, srv: DnsServer, client: Client, moved_to: tuple[list[str], int],
                           outage: float, workdir: Path, qps: int = 1000, after: float = 8.0) -> OutageNumbers:
    """`emu` serves tests/data/k8s/cluster.yaml plus Ingress foo.com -> Service web (backend w1); `srv` and
    `client`'s controller both watch it. While the API server is down, Service during-outage is created and
    web's EndpointSlice moves to `moved_to` (backend w2). The loads run 1 s before the outage and `after`
    seconds after it."""
    assert outage <= 90, "bounded"
    settle = 40.0  # at most: the watchers' reconnect backoff (capped at 30 s) plus the relist
    queries = queries_file(workdir / "outage-queries", f"{DNS_NAME} A")
    perf = await DnsPerf(srv.port, queries, 1 + outage + after, qps=qps).start()
    ok = failed = 0

    async def http_load() -> None:
        # Bounded: 2 such loops, one request at a time each, for the drill's length at most.
        nonlocal ok, failed
        end = time.monotonic() + 1 + outage + after
        while time.monotonic() < end:
            if await client.answers("foo.com"):
                ok += 1
            else:
                failed += 1
            await asyncio.sleep(0.01)

    loads = [asyncio.create_task(http_load()) for _ in range(2)]
    try:
        await asyncio.sleep(1)
        await emu.kill()
        addrs, port = moved_to

        def edit(objs: list[dict[str, Any]]) -> None:
            objs.append(new_service())
            moved = o.for_api(o.endpoint_slice("web", addrs, port))
            for i, obj in enumerate(objs):
                if obj["kind"] == "EndpointSlice" and obj["metadata"]["name"] == moved["metadata"]["name"]:
                    objs[i] = {**moved, "metadata": {**obj["metadata"], "labels": moved["metadata"]["labels"]}}

        emu.edit_state(edit)
        await asyncio.sleep(outage)
        await emu.start()  # no watch history: a watch resumed from before the outage gets 410 Gone
        back = time.monotonic()

        def dns_new() -> bool:
            return srv.dig(NEW_NAME, "A").rdata() == [NEW_IP]

        async def ingress_moved() -> bool:
            return await client.answers("foo.com", backend="w2")

        dns_task = asyncio.create_task(_until(lambda: asyncio.to_thread(dns_new), settle))
        ingress_task = asyncio.create_task(_until(ingress_moved, settle))
        # Relisted: both servers watch Services and EndpointSlices again (each after its own 410 and
        # list; each reflector backs off on its own while the API server is down, up to 30 s).
        for resource in ("services", "endpointslices"):
            await emu.wait_for_watchers(resource, 2, timeout=settle)
        relisted = time.monotonic() - back
        dns_converged, ingress_converged = await asyncio.gather(dns_task, ingress_task)
    finally:
        await asyncio.gather(*loads)
    gone = sum(("410" in line or "Gone" in line) for line in srv.drain())
    return OutageNumbers(outage, await perf.result(), ok, failed, relisted, dns_converged, ingress_converged, gone)
