"""`portolan ingress` at scale: 1,000 and 10,000 Ingresses (one host, two paths each) loaded through the
API emulator, with real nginx on loopback and real backends.

    python bench/ingress_scale.py [--counts 1000 10000] [--changes 100]

For each count: the time from the last object applied to nginx serving the new config (a request to the
last Ingress's host answers 200), the size of nginx.conf, the controller's and nginx's RSS, the time one
further Ingress takes to go live, and the requests that failed while one Service's endpoints changed
`--changes` times under a steady request load. Targets (issue 7): live within 10 s at 10,000, nginx.conf
under 50 MB, zero failed requests.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ingress import objects as o  # noqa: E402
from tests.ingress.backends import Backends  # noqa: E402
from tests.ingress.procs import children  # noqa: E402
from tests.server import Process, free_port, pss_mb, rss_mb  # noqa: E402

SERVICES = 100  # backends shared by the Ingresses, each with its own EndpointSlice
NS = "bench"


def service(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}", "namespace": NS},
            "spec": {"clusterIP": f"10.96.{i // 250}.{i % 250 + 1}", "ports": [{"name": "http", "port": 80,
                                                                                "protocol": "TCP"}]}}


def endpoint_slice(i: int, ips: list[str], port: int) -> dict[str, Any]:
    return o.endpoint_slice(f"svc-{i}", ips, port, namespace=NS, name=f"svc-{i}-x")


def ingress(i: int) -> dict[str, Any]:
    svc = f"svc-{i % SERVICES}"
    return o.for_api(o.ingress(f"ing-{i}", o.rule(f"h{i}.bench.test", o.path("/a", svc), o.path("/b", svc)),
                               namespace=NS))


async def until_200(session: aiohttp.ClientSession, url: str, host: str | None, timeout: float) -> float:
    """Seconds until ``url`` (with this Host header) answers 200."""
    start = time.monotonic()
    headers = {"Host": host} if host else {}
    while time.monotonic() - start < timeout:
        try:
            async with session.get(url, headers=headers) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except (TimeoutError, aiohttp.ClientError):  # a request the session's timeout cut: try again
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} (Host {host}) not answering 200 within {timeout}s")


async def run(count: int, changes: int, work: Path) -> dict[str, float]:
    from tests.apiemu import Emulator

    backends = Backends()
    ips, backend_port = await backends.start("a", "b")
    async with Emulator(work / f"emu-{count}", persist=False) as emu:
        await emu.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await emu.create(o.ingress_class())
        await emu.bulk_load([service(i) for i in range(SERVICES)]
                            + [endpoint_slice(i, ips[:1], backend_port) for i in range(SERVICES)])
        http, https, healthz = free_port(), free_port(), free_port()
        config_dir = work / f"ingress-{count}"
        exe = shutil.which("portolan") or sys.exit("install portolan first: pip install -e .")
        ctl = Process([exe, "ingress", "--kubeconfig", str(emu.kubeconfig_path), "--bind-address", "127.0.0.1",
                       "--http-port", str(http), "--https-port", str(https), "--healthz-address", "127.0.0.1",
                       "--healthz-port", str(healthz), "--config-dir", str(config_dir),
                       "--publish-status-address", "127.0.0.1"])
        result: dict[str, float] = {}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                await until_200(session, f"http://127.0.0.1:{healthz}/healthz", None, 60)
                # The whole set at once, then wait for the last one to be served.
                # The clock starts when the API server has taken the last object, as the issue defines it.
                await emu.bulk_load([ingress(i) for i in range(count)])
                t0 = time.monotonic()
                await until_200(session, f"http://127.0.0.1:{http}/a", f"h{count - 1}.bench.test", 300)
                result["live_s"] = time.monotonic() - t0
                conf = next(config_dir.rglob("nginx.conf"))
                result["conf_mb"] = conf.stat().st_size / 1e6
                master = int(next(config_dir.rglob("nginx.pid")).read_text().split()[0])
                result["controller_rss_mb"] = rss_mb(ctl.proc.pid)
                result["nginx_rss_mb"] = sum(pss_mb(p) for p in {master, *children(master)})
                t0 = time.monotonic()
                await emu.create(ingress(count))
                await until_200(session, f"http://127.0.0.1:{http}/a", f"h{count}.bench.test", 120)
                result["one_more_s"] = time.monotonic() - t0
                result["failed"], result["requests"] = await churn(session, emu, http, ips, backend_port, changes)
        finally:
            ctl.stop()
            for line in [x for x in ctl.drain() if "nginx serves configuration" in x][-3:]:
                print(f"  controller: {line.split('nginx serves', 1)[1].strip()}")
    await backends.stop()
    return result


async def churn(session: aiohttp.ClientSession, emu: Any, port: int, ips: list[str], backend_port: int,
                changes: int) -> tuple[float, float]:
    """Requests to one host (4 clients) while its Service's endpoints change `changes` times."""
    stop = asyncio.Event()
    counts = {"ok": 0, "failed": 0}

    async def client() -> None:
        while not stop.is_set():
            try:
                async with session.get(f"http://127.0.0.1:{port}/a", headers={"Host": "h0.bench.test"}) as r:
                    await r.read()
                    counts["ok" if r.status == 200 else "failed"] += 1
            except (TimeoutError, aiohttp.ClientError):
                counts["failed"] += 1

    clients = [asyncio.create_task(client()) for _ in range(4)]
    for k in range(changes):
        # Alternate between one backend, the other, and both: every change alters the upstream set.
        chosen = [[ips[0]], [ips[1]], ips][k % 3]
        await emu.replace(endpoint_slice(0, chosen, backend_port))
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # the last reload lands under load too
    stop.set()
    await asyncio.gather(*clients)
    return counts["failed"], counts["ok"] + counts["failed"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--changes", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingress-scale-") as tmp:
        for count in args.counts:
            r = asyncio.run(run(count, args.changes, Path(tmp)))
            print(f"{count:6d} Ingresses: live {r['live_s']:.2f}s after the last apply;"
                  f" nginx.conf {r['conf_mb']:.2f} MB;"
                  f" RSS controller {r['controller_rss_mb']:.0f} MB, nginx (PSS, master+workers)"
                  f" {r['nginx_rss_mb']:.0f} MB;"
                  f" one more Ingress live in {r['one_more_s']:.2f}s;"
                  f" {r['failed']:.0f} of {r['requests']:.0f} requests failed over {args.changes} endpoint changes",
                  flush=True)


if __name__ == "__main__":
    main()
