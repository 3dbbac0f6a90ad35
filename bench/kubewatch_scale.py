"""Scale benchmark of kubewatch against the API emulator.

    python bench/kubewatch_scale.py [--services 10000] [--endpoints-per-slice 10] [--pods 100000]

Loads 10,000 Services, 10,000 EndpointSlices (100,000 endpoints) and 100,000 Pods into the
emulator through its startup state file (creating 220,000 objects over HTTP one by one would
measure the emulator, not kubewatch), then starts a store in a child process of its own, so
that its RSS is the store's alone, watching services, endpointslices, namespaces and running
pods through a kubeconfig. Reports:

- time from the source's start to ``store.synced``;
- the store process's RSS after a gc (VmRSS), and its peak (VmHWM);
- the delay from the emulator's write of an EndpointSlice (the time it stamps on the write)
  to the store's change callback, over --updates updates sent at --rate per second;
- then, after a forced 410 Gone, how long the relist of everything takes and what it does
  to RSS (the store keeps serving the old state meanwhile and reuses unchanged records).

Targets (issue 4): synced <= 10 s, RSS <= 164 MB, event-to-store p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SELF = Path(__file__).resolve()
ROOT = SELF.parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"synced_s": 10.0, "rss_mb": 164.0, "p99_ms": 50.0}
NAMESPACES = 100
CREATED = "2024-05-01T10:00:00Z"


# ---------------------------------------------------------------------- fixture


def pod_ip(j: int) -> str:
    return f"10.{64 + j // 65536}.{(j // 256) % 256}.{j % 256}"


def service_ip(i: int) -> str:
    n = 10 + i
    return f"10.{96 + n // 65536}.{(n // 256) % 256}.{n % 256}"


def namespace_of(i: int) -> str:
    return f"team-{i % NAMESPACES:03d}"


def make_service(i: int, rv: int) -> dict[str, Any]:
    ns, name = namespace_of(i), f"svc-{i:05d}"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"00000000-0000-4000-8000-{i:012d}",
            "resourceVersion": str(rv),
            "creationTimestamp": CREATED,
            "labels": {"app": name, "app.kubernetes.io/part-of": "bench"},
            "annotations": {"meta.helm.sh/release-name": "bench"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": service_ip(i),
            "clusterIPs": [service_ip(i)],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090},
            ],
            "selector": {"app": name},
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {}},
    }


def pod_name(i: int, k: int) -> str:
    return f"svc-{i:05d}-7d9f8c6b5-{k:03d}x"


def make_endpoint(i: int, k: int, j: int, hostname: str | None = None) -> dict[str, Any]:
    ep: dict[str, Any] = {
        "addresses": [pod_ip(j)],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "nodeName": f"node-{j % 500:03d}",
        "targetRef": {
            "kind": "Pod",
            "namespace": namespace_of(i),
            "name": pod_name(i, k),
            "uid": f"10000000-0000-4000-8000-{j:012d}",
        },
        "zone": f"zone-{j % 3}",
    }
    if hostname:
        ep["hostname"] = hostname
    return ep


def make_slice(i: int, per_slice: int, rv: int) -> dict[str, Any]:
    ns, svc = namespace_of(i), f"svc-{i:05d}"
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc}-x7k2p",
            "namespace": ns,
            "uid": f"20000000-0000-4000-8000-{i:012d}",
            "resourceVersion": str(rv),
            "creationTimestamp": CREATED,
            "generateName": f"{svc}-",
            "generation": 1,
            "labels": {
                "kubernetes.io/service-name": svc,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "app": svc,
            },
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": svc,
                    "uid": f"00000000-0000-4000-8000-{i:012d}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "addressType": "IPv4",
        "endpoints": [make_endpoint(i, k, i * per_slice + k) for k in range(per_slice)],
        "ports": [
            {"name": "http", "port": 8080, "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "protocol": "TCP"},
        ],
    }


def make_pod(j: int, per_slice: int, rv: int) -> dict[str, Any]:
    i, k = divmod(j, per_slice)
    ns, svc = namespace_of(i), f"svc-{i:05d}"
    ip = pod_ip(j)
    node = f"node-{j % 500:03d}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(i, k),
            "generateName": f"{svc}-7d9f8c6b5-",
            "namespace": ns,
            "uid": f"10000000-0000-4000-8000-{j:012d}",
            "resourceVersion": str(rv),
            "creationTimestamp": CREATED,
            "labels": {"app": svc, "pod-template-hash": "7d9f8c6b5"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{svc}-7d9f8c6b5",
                    "uid": f"30000000-0000-4000-8000-{i:012d}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": f"registry.example.com/bench/{svc}:1.4.2",
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                    ],
                    "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "volumeMounts": [
                        {
                            "name": "kube-api-access-x8f2k",
                            "readOnly": True,
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        }
                    ],
                }
            ],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": True,
            "nodeName": node,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {
                    "effect": "NoExecute",
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                },
                {
                    "effect": "NoExecute",
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                },
            ],
            "volumes": [
                {
                    "name": "kube-api-access-x8f2k",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        ],
                    },
                }
            ],
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": CREATED}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "hostIP": f"192.168.{(j % 500) // 256}.{(j % 500) % 256}",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": CREATED,
            "containerStatuses": [
                {
                    "name": "app",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "image": f"registry.example.com/bench/{svc}:1.4.2",
                    "imageID": "registry.example.com/bench@sha256:" + "ab" * 32,
                    "containerID": f"containerd://{j:064x}",
                    "state": {"running": {"startedAt": CREATED}},
                    "lastState": {},
                }
            ],
            "qosClass": "Burstable",
        },
    }


def write_fixture(path: Path, services: int, per_slice: int, pods: int) -> tuple[int, int]:
    """The emulator's state-file format: a header line, then one object per line."""
    rv = 1
    size = 0
    with path.open("wb") as out:
        out.write(b'{"apiemuState":1,"resourceVersion":0}\n')  # rewritten below

        def emit(obj: dict[str, Any]) -> None:
            nonlocal size
            line = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
            size += len(line)
            out.write(line)

        for n in range(NAMESPACES):
            rv += 1
            ns = f"team-{n:03d}"
            emit({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "resourceVersion": str(rv),
                  "uid": f"40000000-0000-4000-8000-{n:012d}", "creationTimestamp": CREATED,
                  "labels": {"kubernetes.io/metadata.name": ns}}, "spec": {"finalizers": ["kubernetes"]},
                  "status": {"phase": "Active"}})  # fmt: skip
        for i in range(services):
            rv += 1
            emit(make_service(i, rv))
        for i in range(services):
            rv += 1
            emit(make_slice(i, per_slice, rv))
        for j in range(pods):
            rv += 1
            emit(make_pod(j, per_slice, rv))
    text = path.read_bytes()
    header = json.dumps({"apiemuState": 1, "resourceVersion": rv}, separators=(",", ":")).encode()
    path.write_bytes(header + text[text.index(b"\n") :])
    return rv, size


# ---------------------------------------------------------------------- store child


def vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def child_main(kubeconfig: str) -> None:
    t_import = time.perf_counter()
    from kubewatch import RUNNING_PODS, ApiSource, ClusterConfig, Store, WatchSpec

    config = ClusterConfig.from_kubeconfig(kubeconfig)
    import_s = time.perf_counter() - t_import
    store = Store()
    seen: dict[str, float] = {}

    def on_slice(kind: str, etype: str, old: Any, new: Any) -> None:
        if new is not None and new.endpoints:
            marker = new.endpoints[0].hostname
            if marker and marker.startswith("u") and marker not in seen:
                seen[marker] = time.time()

    store.subscribe(on_slice, kinds=["endpointslices"])
    specs = ["services", "endpointslices", "namespaces", WatchSpec("pods", field_selector=RUNNING_PODS)]
    source = ApiSource(store, config, specs)
    t0 = time.perf_counter()
    await source.start()
    ok = await store.wait_synced(timeout=120)
    synced_s = time.perf_counter() - t0
    gc.collect()
    report = {
        "event": "synced",
        "ok": ok,
        "synced_s": synced_s,
        "import_and_config_s": import_s,
        "rss_kb": vm_kb("VmRSS"),
        "hwm_kb": vm_kb("VmHWM"),
        "counts": {k: store.count(k) for k in ("services", "endpointslices", "pods", "namespaces")},
        "endpoints": sum(len(s.endpoints) for s in store.iter("endpointslices")),
    }
    print(json.dumps(report), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # the parent has sent its updates
    gc.collect()
    print(json.dumps({"event": "report", "seen": seen, "rss_kb": vm_kb("VmRSS")}), flush=True)
    # Then the parent forces a 410: every reflector relists while the store keeps serving.
    await loop.run_in_executor(None, sys.stdin.readline)
    t1 = time.perf_counter()
    while not all(r.relists >= 2 for r in source.reflectors):  # noqa: ASYNC110  (counters, no event to await)
        await asyncio.sleep(0.01)
    relist_s = time.perf_counter() - t1
    gc.collect()
    print(json.dumps({"event": "relisted", "relist_s": relist_s, "rss_kb": vm_kb("VmRSS"), "hwm_kb": vm_kb("VmHWM")}),
          flush=True)  # fmt: skip
    await source.stop()


# ---------------------------------------------------------------------- parent


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def send_updates(emu: Any, n: int, rate: float, services: int, per_slice: int) -> dict[str, float]:
    """PATCH n EndpointSlices (marker hostname u<k> on the first endpoint), paced at ``rate``
    per second; returns marker -> the write time the emulator stamped."""
    import aiohttp

    written: dict[str, float] = {}
    interval = 1.0 / rate
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with aiohttp.ClientSession() as session:
        for k in range(n):
            i = (k * 7919) % services  # spread over namespaces and slices
            marker = f"u{k}"
            endpoints = [make_endpoint(i, e, i * per_slice + e, marker if e == 0 else None) for e in range(per_slice)]
            path = f"/apis/discovery.k8s.io/v1/namespaces/{namespace_of(i)}/endpointslices/svc-{i:05d}-x7k2p"
            async with session.patch(
                emu.url + path,
                data=json.dumps({"endpoints": endpoints}),
                headers={"Content-Type": "application/merge-patch+json"},
            ) as resp:
                assert resp.status == 200, await resp.text()
                written[marker] = float(resp.headers["X-Apiemu-Write-Time"])
            delay = start + (k + 1) * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
    return written


async def read_json_line(stream: asyncio.StreamReader, timeout: float) -> dict[str, Any]:
    line = await asyncio.wait_for(stream.readline(), timeout)
    if not line:
        raise RuntimeError("the store process exited early")
    return json.loads(line)


async def parent_main(args: argparse.Namespace) -> dict[str, Any]:
    from tests.apiemu import Emulator

    with tempfile.TemporaryDirectory(prefix="kubewatch-bench-") as tmp:
        work = Path(tmp)
        fixture = work / "fixture.ndjson"
        t = time.perf_counter()
        rv, size = write_fixture(fixture, args.services, args.endpoints_per_slice, args.pods)
        print(f"fixture: {size / 1e6:.0f} MB of JSON, resourceVersion {rv}, written in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        async with Emulator(work / "emu", state_file=fixture, persist=False, start_timeout=300) as emu:
            print(f"emulator loaded the fixture in {time.perf_counter() - t:.1f}s")
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                str(SELF),
                "--child",
                str(emu.kubeconfig_path),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            assert child.stdout is not None
            assert child.stdin is not None
            try:
                synced = await read_json_line(child.stdout, 180)
                print(f"store synced: {json.dumps(synced)}")
                await emu.wait_for_watchers("endpointslices")
                written = await send_updates(emu, args.updates, args.rate, args.services, args.endpoints_per_slice)
                # Let the last events arrive: bounded, far above any plausible delay.
                await asyncio.sleep(1.0)
                child.stdin.write(b"report\n")
                await child.stdin.drain()
                report = await read_json_line(child.stdout, 60)
                child.stdin.write(b"relist\n")
                await child.stdin.drain()
                await emu.force_gone()
                relisted = await read_json_line(child.stdout, 180)
            finally:
                if child.returncode is None:
                    try:
                        await asyncio.wait_for(child.wait(), 30)
                    except TimeoutError:
                        child.kill()
                        await child.wait()
    seen = report["seen"]
    delays = [(seen[m] - w) * 1000 for m, w in written.items() if m in seen]
    return {
        "objects": {
            "services": args.services,
            "endpointslices": args.services,
            "endpoints": args.services * args.endpoints_per_slice,
            "pods": args.pods,
        },
        "synced_ok": synced["ok"],
        "store_counts": synced["counts"],
        "store_endpoints": synced["endpoints"],
        "synced_s": round(synced["synced_s"], 2),
        "import_and_config_s": round(synced["import_and_config_s"], 2),
        "rss_mb": round(synced["rss_kb"] / 1024, 1),
        "peak_rss_during_sync_mb": round(synced["hwm_kb"] / 1024, 1),
        "rss_after_updates_mb": round(report["rss_kb"] / 1024, 1),
        "relist_after_410_s": round(relisted["relist_s"], 2),
        "rss_after_relist_mb": round(relisted["rss_kb"] / 1024, 1),
        "peak_rss_overall_mb": round(relisted["hwm_kb"] / 1024, 1),
        "updates": len(written),
        "updates_seen": len(delays),
        "p50_ms": round(statistics.median(delays), 2) if delays else None,
        "p99_ms": round(percentile(delays, 99), 2) if delays else None,
        "max_ms": round(max(delays), 2) if delays else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    p.add_argument("--services", type=int, default=10_000)
    p.add_argument("--endpoints-per-slice", type=int, default=10)
    p.add_argument("--pods", type=int, default=100_000)
    p.add_argument("--updates", type=int, default=1_000)
    p.add_argument("--rate", type=float, default=200.0, help="updates per second")
    args = p.parse_args()
    if args.child:
        asyncio.run(child_main(args.child))
        return
    result = asyncio.run(parent_main(args))
    print(json.dumps(result, indent=2))
    checks = [
        ("time to synced", result["synced_s"], TARGETS["synced_s"], "s"),
        ("store RSS after sync", result["rss_mb"], TARGETS["rss_mb"], "MB"),
        ("event-to-store p99", result["p99_ms"], TARGETS["p99_ms"], "ms"),
    ]
    for label, value, target, unit in checks:
        verdict = "ok" if value is not None and value <= target else "MISSED"
        print(f"{label:>22}: {value} {unit} (target <= {target} {unit}) {verdict}")
    if result["updates_seen"] != result["updates"]:
        print(f"WARNING: only {result['updates_seen']} of {result['updates']} updates reached the store")


if __name__ == "__main__":
    main()
