"""Fault drills too long for the test suite (issue 17), run by hand:

    python bench/drills.py api-outage [--outage 60] [--after 40] [--qps 1000]

`api-outage`: `portolan dns` (kubernetes plugin) and `portolan ingress` (nginx) both watch the API-server
emulator under load (dnsperf at --qps, two aiohttp clients through nginx). The emulator is killed for
--outage seconds; a Service is created and an EndpointSlice moved while it is down; it comes back
without its watch history, so every watch resumed from before gets 410 Gone. Reported: DNS queries and
lost ones, HTTP requests served and failed, and how long after the API server's return both servers
watch again (relisted) and serve what changed while it was down (converged). Fails (exit 1) unless 0
DNS queries are lost, 0 HTTP requests fail, and both converge within 5 s of the relist.

The shorter drills (reloads, nginx kill -9, misbehaving upstreams, held TCP connections, a 5 s outage)
are tests: tests/drills/ and tests/ingress/test_drills.py. Everything is on 127.0.0.1, and every load is
bounded in rate and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from ingress.controller import Controller  # noqa: E402
from kubewatch import Store  # noqa: E402
from tests.apiemu.harness import Emulator  # noqa: E402
from tests.drills.api_outage import OutageNumbers, api_outage_drill, dns_corefile, seed  # noqa: E402
from tests.ingress.backends import Backends  # noqa: E402
from tests.ingress.conftest import Client, make_options  # noqa: E402
from tests.server import DnsServer  # noqa: E402


async def api_outage(outage: float, after: float, qps: int) -> OutageNumbers:
    work = Path(tempfile.mkdtemp(prefix="drill-"))
    os.chmod(work, 0o711)  # nginx's workers must reach the config dir under it (see tests/ingress/conftest.py)
    backends = Backends()
    controller: Controller | None = None
    client: Client | None = None
    try:
        async with Emulator(work / "emu") as emu:
            moved_to = await seed(emu, backends)
            srv = await asyncio.to_thread(DnsServer, dns_corefile(emu.kubeconfig_path), work)
            try:
                (work / "ing").mkdir(mode=0o711)
                options = make_options(work / "ing", kubeconfig=str(emu.kubeconfig_path))
                controller = Controller(options, store=Store(), source=None)
                await controller.start()
                client = Client(controller)
                for _ in range(200):
                    if await client.answers("foo.com", backend="w1"):
                        break
                    await asyncio.sleep(0.05)
                return await api_outage_drill(emu, srv, client, moved_to, outage, work, qps=qps, after=after)
            finally:
                srv.stop()
    finally:
        if client is not None:
            await client.close()
        if controller is not None:
            await controller.stop()
        await backends.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("drill", choices=["api-outage"])
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the API server is down (at most 90)")
    parser.add_argument("--after", type=float, default=40.0,
                        help="seconds of load after the return (at least the watchers' 30 s backoff cap)")
    parser.add_argument("--qps", type=int, default=1000, help="dnsperf's rate (at most 20000)")
    args = parser.parse_args()
    n = asyncio.run(api_outage(args.outage, args.after, args.qps))
    print(f"api outage {n.outage:.0f}s, then 410 Gone on every resumed watch (dns reported it {n.dns_gone}x)")
    print(f"  dns:     {n.dns.completed} queries, {n.dns.lost} lost, rcodes {n.dns.rcodes}, "
          f"max latency {n.dns.max_ms:.1f} ms")
    print(f"  ingress: {n.http_ok} requests served, {n.http_failed} failed")
    print(f"  after the return: both watching again in {n.relisted:.2f}s; the change made while down served by "
          f"dns in {n.dns_converged:.2f}s, by ingress in {n.ingress_converged:.2f}s")
    ok = (n.dns.lost == 0 and n.http_failed == 0 and n.dns_converged - n.relisted <= 5
          and n.ingress_converged - n.relisted <= 5)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
