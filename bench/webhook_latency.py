"""The validating admission webhook's latency with 10,000 Ingresses in the controller's store.

    python bench/webhook_latency.py [--count 10000] [--reviews 500]

A controller (real nginx, in this process, its store filled directly as the tests do) serves
COUNT Ingresses, one host and two paths each, with the webhook on loopback. AdmissionReviews are
then posted over TLS one at a time, as the API server sends them, for each kind of review:

- allowed: a new Ingress on a new host;
- conflict: a new Ingress claiming a path an existing one holds (denied, naming it);
- invalid: a hostile annotation (denied by the model's parser);
- update: an existing Ingress changed (its own paths are no conflict);
- other class: not ours (allowed without parsing).

Kept-alive connections (what the API server does) and, as a second table, a new TLS connection
per review. Then the same reviews while the controller reconciles a change every RECONCILE_EVERY
seconds: the webhook shares the controller's event loop, so a long reconcile delays answers.
Prints p50, p99 and max per kind, in milliseconds. The issue's target: <= 100 ms at 10,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingress import admission  # noqa: E402
from ingress.controller import Controller  # noqa: E402
from kubewatch import Store  # noqa: E402
from tests.ingress import objects as o  # noqa: E402
from tests.ingress.conftest import WATCHED, StoreSource, free_ports, make_options  # noqa: E402
from tests.ingress.tlsutil import Authority  # noqa: E402

NAME = "portolan-ingress-admission.portolan-ingress.svc"
SERVICES = 100
RECONCILE_EVERY = 0.5
CHANGES = 20


def host(i: int) -> str:
    return f"h{i}.bench.test"


def ingress(i: int, name: str | None = None, created: str = "2024-01-01T00:00:00Z", **kw: Any) -> o.Obj:
    svc = f"svc-{i % SERVICES}"
    return o.ingress(name or f"ing-{i}", o.rule(host(i), o.path("/a", svc), o.path("/b", svc)), created=created, **kw)


def review(obj: o.Obj, operation: str = "CREATE") -> bytes:
    return json.dumps({"apiVersion": admission.API_VERSION, "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "operation": operation, "object": obj,
        "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
    }}).encode()  # fmt: skip


def kinds(count: int) -> dict[str, tuple[Callable[[int], bytes], bool]]:
    """kind -> (the k-th review of that kind, whether it is to be allowed)."""
    later = "2025-01-01T00:00:00Z"
    bad = o.ann(rewrite_target="/x;}\nssl_engine /tmp/x.so;#")
    return {
        "allowed": (lambda k: review(ingress(count + k, f"new-{k}", later)), True),
        "conflict": (lambda k: review(ingress(k * 7 % count, f"dup-{k}", later)), False),
        "invalid": (lambda k: review(ingress(count + k, f"bad-{k}", later, annotations=bad)), False),
        "update": (lambda k: review(ingress(k * 13 % count), "UPDATE"), True),
        "other class": (lambda k: review(ingress(k % count, f"theirs-{k}", later, class_name="nginx")), True),
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(url: str, context: ssl.SSLContext, count: int, reviews: int, fresh: bool) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    connector = aiohttp.TCPConnector(force_close=fresh, limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for kind, (make, allowed) in kinds(count).items():
            bodies = [make(k) for k in range(reviews)]  # made before the clock starts
            spent = times[kind] = []
            for body in bodies:
                began = time.perf_counter()
                async with session.post(url, data=body, ssl=context, server_hostname=NAME,
                                        headers={"Content-Type": "application/json"}) as resp:  # fmt: skip
                    answer = await resp.json()
                spent.append((time.perf_counter() - began) * 1000)
                assert answer["response"]["allowed"] is allowed, (kind, answer)
    return times


def table(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    print(f"{'review':<12} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    every: list[float] = []
    for kind, spent in times.items():
        every += spent
        print(f"{kind:<12} {len(spent):>6} {statistics.median(spent):>8.2f} {pct(spent, 99):>8.2f} {max(spent):>8.2f}")
    print(f"{'all':<12} {len(every):>6} {statistics.median(every):>8.2f} {pct(every, 99):>8.2f} {max(every):>8.2f}")


async def churn(store: Store, count: int) -> None:
    """CHANGES changes of existing Ingresses, one every RECONCILE_EVERY seconds: a reconcile each."""
    for n in range(1, CHANGES + 1):
        obj = ingress(n % count)
        obj["spec"]["rules"][0]["http"]["paths"][1]["path"] = f"/b{n}"
        obj["metadata"]["resourceVersion"] = str(n + 1)
        o.put(store, obj)
        await asyncio.sleep(RECONCILE_EVERY)


async def run(count: int, reviews: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="pwh-"))
    os.chmod(work, 0o711)
    authority = Authority.create()
    crt, key = authority.issue(NAME)
    (work / "tls.crt").write_bytes(crt)
    (work / "tls.key").write_bytes(key)
    store = Store()
    o.put(store, o.ingress_class())
    for i in range(SERVICES):
        o.put(store, o.service(f"svc-{i}", ("http", 80, 8080)), o.endpoint_slice(f"svc-{i}", ["127.0.0.1"], 9))
    began = time.perf_counter()
    for i in range(count):
        o.put(store, ingress(i))
    (port,) = free_ports(1)
    (work / "c").mkdir(mode=0o711)
    options = make_options(work / "c", validating_webhook=("127.0.0.1", port),
                           validating_webhook_certificate=str(work / "tls.crt"),
                           validating_webhook_key=str(work / "tls.key"), sync_timeout=120.0,
                           reload_timeout=120.0)  # fmt: skip
    controller = Controller(options, store=store, source=StoreSource(store, WATCHED))
    try:
        await controller.start()
        assert controller.model is not None
        assert len(controller.model.ingresses) == count
        print(f"{count} Ingresses in the store, controller and nginx up in {time.perf_counter() - began:.1f} s")
        url = f"https://127.0.0.1:{port}{admission.PATH}"
        context = authority.client_context(work)
        table("kept-alive connection (as the API server)", await measure(url, context, count, reviews, False))
        table("a new TLS connection per review", await measure(url, context, count, reviews // 5, True))
        changes = asyncio.create_task(churn(store, count))
        reconciles = controller.reconciles
        times: dict[str, list[float]] = {}
        while not changes.done():  # rounds of every kind until the changes are over
            for kind, spent in (await measure(url, context, count, 20, False)).items():
                times.setdefault(kind, []).extend(spent)
        phases = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in controller.reconciler.phases.items())
        table(f"kept-alive, while {CHANGES} changes made {controller.reconciles - reconciles} reconciles "
              f"(the last one: {phases})", times)  # fmt: skip
    finally:
        await controller.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--reviews", type=int, default=500, help="reviews of each kind (kept-alive)")
    args = p.parse_args()
    asyncio.run(run(args.count, args.reviews))


if __name__ == "__main__":
    main()
