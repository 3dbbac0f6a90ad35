"""`portolan dns` with the kubernetes plugin at scale: 10,000 Services, 10,000 EndpointSlices with
100,000 endpoints and 100,000 Pods in the API emulator (kubewatch_scale's fixture).

    python bench/k8sdns_scale.py [--services 10000] [--endpoints-per-slice 10] [--pods 100000]

Reports, per pod mode, the time from start to serving (the plugin waits for the first sync) and the
server's RSS, against CoreDNS's sizing rule MB = (Pods + Services) / 1000 + 54. `pods verified` is
the worst case (it watches every pod); kubeadm's `pods insecure` does not watch pods at all.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from kubewatch_scale import write_fixture  # noqa: E402

from tests.server import Process, free_port, rss_mb  # noqa: E402


async def measure(kubeconfig: Path, work: Path, mode: str, probe: str) -> dict[str, float]:
    port = free_port()
    corefile = work / f"Corefile-{mode}"
    corefile.write_text(f""".:{port} {{
    bind 127.0.0.1
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods {mode}
        startup_timeout 300s
    }}
}}
""")
    exe = shutil.which("portolan") or sys.exit("install portolan first: pip install -e .")
    start = time.monotonic()
    proc = await asyncio.to_thread(Process, [exe, "dns", "-conf", str(corefile)])
    try:
        await asyncio.to_thread(proc.wait_for, r"^portolan-\d", 300)
        ready = time.monotonic() - start
        dug = await asyncio.to_thread(subprocess.run, ["dig", "@127.0.0.1", "-p", str(port), "+short", probe],
                                      capture_output=True, text=True, timeout=10)
        answer = dug.stdout.strip()
        await asyncio.sleep(2)  # let the watch streams settle after the initial lists
        return {"seconds_to_serving": round(ready, 2), "rss_mb": round(rss_mb(proc.proc.pid), 1),
                "answer_ok": float(bool(answer))}
    finally:
        proc.stop()


async def main_async(args: argparse.Namespace) -> None:
    from tests.apiemu import Emulator

    with tempfile.TemporaryDirectory(prefix="k8sdns-scale-") as tmp:
        work = Path(tmp)
        fixture = work / "fixture.ndjson"
        _, size = write_fixture(fixture, args.services, args.endpoints_per_slice, args.pods)
        gc.collect()
        print(f"fixture: {args.services} services, {args.services * args.endpoints_per_slice} endpoints, "
              f"{args.pods} pods ({size / 1e6:.0f} MB of JSON)")
        async with Emulator(work / "emu", state_file=fixture, persist=False, start_timeout=300) as emu:
            svc = (await emu.list("v1", "Service", limit="1"))["items"][0]["metadata"]
            probe = f"{svc['name']}.{svc['namespace']}.svc.cluster.local"
            budget = (args.pods + args.services) / 1000 + 54
            for mode in ("insecure", "verified"):
                r = await measure(emu.kubeconfig_path, work, mode, probe)
                print(f"pods {mode:9s} serving after {r['seconds_to_serving']:6.2f}s  RSS {r['rss_mb']:6.1f} MB  "
                      f"(CoreDNS's rule: {budget:.0f} MB; ratio {r['rss_mb'] / budget:.2f})  "
                      f"answer {'ok' if r['answer_ok'] else 'MISSING'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--endpoints-per-slice", type=int, default=10)
    ap.add_argument("--pods", type=int, default=100_000)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
