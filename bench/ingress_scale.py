"""`portolan ingress` at scale: 1,000 and 10,000 Ingresses (one host, two paths each) loaded through the
API emulator, with real nginx on loopback and real backends; what a live data plane has to change.

    python bench/ingress_scale.py [--counts 1000 10000] [--changes 1000] [--quick]

Everything is measured from outside the controller: objects go in through the API emulator, requests
and TLS handshakes through nginx, reloads are read from the controller's /metrics and cross-checked with
nginx's worker PIDs, memory and CPU from /proc. For each count it prints one table:

- time from the last object applied to the last Ingress's host answering 200, nginx.conf size, RSS;
- one more Ingress: time from its create to its host answering 200;
- Secret rotation: a TLS Ingress's Secret replaced by a new certificate, time until a TLS handshake to
  that host shows the new serial, and the reloads over it;
- `--changes` endpoint changes, one at a time: an EndpointSlice's pod replaced (its address switched to
  another real backend), a second slice added or removed, an endpoint's ready condition flipped, one
  Service losing and regaining all its endpoints. For each, the time from the API server accepting
  the write to the first request through nginx that reaches the new endpoint set (every backend
  answers with its name): a request served by a backend the change added, a 503 once no endpoint is
  left, or, where the change only removed endpoints, the first of RUN answers in a row from none of
  the removed ones. The next change is written once the previous one is seen (or PER_CHANGE_TIMEOUT
  has passed), so every change is measured and none is coalesced with another;
- over those changes: reloads, requests failed under a steady keep-alive load, nginx's PSS and
  worker processes with WEBSOCKETS WebSockets held open through it, controller and nginx CPU.

Targets (issue 7 and the live data plane's issue): live within 10 s at 10,000, nginx.conf under 50 MB,
zero failed requests; 0 reloads over 1,000 endpoint changes, endpoint change to traffic p99 <= 1 s,
one more Ingress live <= 2.5 s at 10,000, Secret rotation live <= 1 s with 0 reloads, nginx PSS growth
<= 10 % over the changes with the WebSockets open.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import math
import os
import re
import shlex
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ingress import objects as o  # noqa: E402
from tests.ingress.backends import Backends  # noqa: E402
from tests.ingress.procs import _stat, children  # noqa: E402
from tests.ingress.tlsutil import Authority  # noqa: E402
from tests.server import Process, free_port, pss_mb, rss_mb  # noqa: E402

NS = "bench"
SERVICES = 100  # backends shared by the Ingresses (Ingress i -> svc-(i % 100)), each with its own EndpointSlice
STABLE = 0  # svc-0: always the backend "p0"; the TLS Ingress and the WebSockets go there
CHURN = tuple(range(1, 11))  # the Services whose endpoints the changes move
EMPTY = 11  # the Service that loses and regains all its endpoints (left out of the steady load)
POOL = ("p1", "p2", "p3", "p4", "p5")  # the backends the churned endpoints move between
# One block of changes: six on one churned Service, which end where they began (one pod replaced,
# a spare endpoint not ready, no second slice), then the empty Service out and back.
KINDS = ("replace", "add-slice", "ready-up", "replace", "remove-slice", "ready-down", "lose-all", "gain-all")
RUN = 8  # answers in a row from none of the removed endpoints that show a removal
PROBE_INTERVAL = 0.01  # seconds between probe requests while a change is awaited
PER_CHANGE_TIMEOUT = 30.0
WEBSOCKETS = 200
TLS_HOST = "tls.bench.test"
TLS_SECRET = "tls-cert"
RELOADS = "portolan_ingress_reloads_total"
PHASES = re.compile(r"nginx serves configuration \S+: .*\((.*)\)\s*$")
TICK = os.sysconf("SC_CLK_TCK")


def service(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}", "namespace": NS},
            "spec": {"clusterIP": f"10.96.{i // 250}.{i % 250 + 1}", "ports": [{"name": "http", "port": 80,
                                                                                "protocol": "TCP"}]}}


def host(i: int) -> str:
    return f"h{i}.bench.test"


def ingress(i: int) -> dict[str, Any]:
    svc = f"svc-{i % SERVICES}"
    return o.for_api(o.ingress(f"ing-{i}", o.rule(host(i), o.path("/a", svc), o.path("/b", svc)), namespace=NS))


def tls_ingress() -> dict[str, Any]:
    return o.for_api(o.ingress("tls", o.rule(TLS_HOST, o.path("/", f"svc-{STABLE}")), namespace=NS,
                               tls=[{"hosts": [TLS_HOST], "secretName": TLS_SECRET}]))


# ---------------------------------------------------------------------------------------------- endpoints


@dataclass
class Endpoints:
    """What the bench has written of one Service's endpoints, as backend names."""

    main: str | None  # the ready pod of slice svc-N-x (None: the slice has no endpoint)
    spare: str | None = None  # a second pod in that slice, ready or not
    spare_ready: bool = False
    extra: str | None = None  # the pod of a second slice, svc-N-y, while it exists
    # The pod the last change took out of the main slice. It is not brought back by the next change: for
    # a moment after a reload the old workers still take connections, and an answer from them would
    # look like the new endpoint set.
    gone: str | None = None

    def ready(self) -> frozenset[str]:
        return frozenset(n for n in (self.main, self.spare if self.spare_ready else None, self.extra) if n)


@dataclass
class Change:
    """One endpoint change the bench makes, and when the API server took it."""

    number: int
    kind: str
    svc: int
    before: frozenset[str]
    after: frozenset[str]
    accepted: float = 0.0  # monotonic time the API server answered the write
    latency: float | None = None  # None: not seen within PER_CHANGE_TIMEOUT


class Churn:
    """The endpoint changes, written to the API server one at a time."""

    def __init__(self, emu: Any, addresses: dict[str, str], port: int) -> None:
        self.emu = emu
        self.addresses = addresses
        self.port = port
        self.turn = 0
        self.state = {i: Endpoints("p0") for i in range(SERVICES)}
        for i in (*CHURN, EMPTY):
            main = self.fresh(set())
            self.state[i] = Endpoints(main, self.fresh({main}) if i != EMPTY else None)

    def fresh(self, taken: set[str]) -> str:
        """The next backend of the pool in turn that is not one of ``taken``."""
        for _ in POOL:
            name = POOL[self.turn % len(POOL)]
            self.turn += 1
            if name not in taken:
                return name
        raise RuntimeError(f"the pool {POOL} has no backend besides {sorted(taken)}")

    def slices(self, i: int) -> list[dict[str, Any]]:
        ep = self.state[i]
        ready = [n for n in (ep.main, ep.spare if ep.spare_ready else None) if n]
        main = o.endpoint_slice(f"svc-{i}", [self.addresses[n] for n in ready], self.port, namespace=NS,
                                name=f"svc-{i}-x",
                                not_ready=(self.addresses[ep.spare],) if ep.spare and not ep.spare_ready else ())
        return [main] + ([self.extra_slice(i)] if ep.extra else [])

    def extra_slice(self, i: int) -> dict[str, Any]:
        extra = self.state[i].extra
        assert extra is not None
        return o.endpoint_slice(f"svc-{i}", [self.addresses[extra]], self.port, namespace=NS, name=f"svc-{i}-y")

    def initial(self) -> list[dict[str, Any]]:
        return [s for i in range(SERVICES) for s in self.slices(i)]

    async def write(self, number: int) -> Change:
        kind = KINDS[number % len(KINDS)]
        i = EMPTY if kind in ("lose-all", "gain-all") else CHURN[number // len(KINDS) % len(CHURN)]
        ep = self.state[i]
        before = ep.ready()
        taken = set(before) | {n for n in (ep.spare, ep.gone) if n}
        if kind == "replace":
            ep.gone, ep.main = ep.main, self.fresh(taken)
        elif kind == "add-slice":
            ep.extra = self.fresh(taken)
        elif kind == "remove-slice":
            ep.extra = None
        elif kind in ("ready-up", "ready-down"):
            ep.spare_ready = kind == "ready-up"
        elif kind == "lose-all":
            ep.gone, ep.main = ep.main, None
        else:
            ep.main = self.fresh(taken)
        if kind == "add-slice":
            await self.emu.create(self.extra_slice(i))
        elif kind == "remove-slice":
            await self.emu.delete("discovery.k8s.io/v1", "EndpointSlice", f"svc-{i}-y", NS)
        else:
            await self.emu.replace(self.slices(i)[0])
        return Change(number, kind, i, before, ep.ready(), accepted=time.monotonic())


def why(exc: BaseException) -> str:
    """A failed request's kind: the exception's class, and the errno where there is one."""
    errno = getattr(exc, "errno", None)
    return type(exc).__name__ + (f" ({os.strerror(errno)})" if errno else "")


@dataclass
class Probe:
    """Requests to one host over fresh connections (so no keep-alive pins an old nginx worker)."""

    session: aiohttp.ClientSession
    url: str
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    async def get(self, host: str) -> tuple[int, str | None] | None:
        try:
            async with self.session.get(self.url, headers={"Host": host}) as r:
                await r.read()
                return r.status, r.headers.get("X-Backend")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.errors[why(exc)] += 1
            return None

    async def seen(self, change: Change, timeout: float) -> float | None:
        """When the first answer from the change's new endpoint set arrived (monotonic), or None."""
        added, removed = change.after - change.before, change.before - change.after
        run_start, run = 0.0, 0
        deadline = change.accepted + timeout
        while time.monotonic() < deadline:
            answer = await self.get(host(change.svc))
            now = time.monotonic()
            if answer is not None:
                status, backend = answer
                if status != 200 and not (status == 503 and change.svc == EMPTY):
                    self.errors[f"HTTP {status}"] += 1
                if not change.after:
                    if status == 503:
                        return now
                elif added:
                    if status == 200 and backend in added:
                        return now
                elif status == 200 and backend not in removed:
                    run += 1
                    run_start = now if run == 1 else run_start
                    if run >= RUN:
                        return run_start
                else:
                    run = 0
            await asyncio.sleep(PROBE_INTERVAL)
        return None


# ---------------------------------------------------------------------------------------------- load


@dataclass
class Load:
    """A steady keep-alive request load over many hosts, bounded in time and count. aiohttp retries an
    idempotent request once when a reused connection closes before any answer (RFC 9112, 9.3.1), as
    browsers do; what still fails is counted."""

    session: aiohttp.ClientSession
    url: str
    hosts: list[str]
    rps: float
    seconds: float
    clients: int = 4
    ok: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)

    async def run(self, stop: asyncio.Event) -> None:
        limit = int(self.rps * self.seconds)
        started = time.monotonic()

        async def client(c: int) -> None:
            k = c
            while not stop.is_set() and k < limit and time.monotonic() - started < self.seconds:
                try:
                    async with self.session.get(self.url, headers={"Host": self.hosts[k % len(self.hosts)]}) as r:
                        await r.read()
                        if r.status == 200:
                            self.ok += 1
                        else:
                            self.failed[f"HTTP {r.status}"] += 1
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    self.failed[why(exc)] += 1
                k += self.clients
                await asyncio.sleep(max(0.0, started + k / self.rps - time.monotonic()))

        await asyncio.gather(*(client(c) for c in range(self.clients)))


# ---------------------------------------------------------------------------------------------- nginx, /proc


def cpu_s(pid: int) -> tuple[float, float]:
    """(utime + stime, cutime + cstime) of a process in seconds: its own CPU and that of the children
    it has reaped (the controller's nginx -t runs; nginx's exited workers)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0, 0.0
    return (int(fields[11]) + int(fields[12])) / TICK, (int(fields[13]) + int(fields[14])) / TICK


def workers(master: int) -> set[int]:
    """The master's children but its cache manager and loader. Not by the title "worker process": a
    worker just forked still bears the master's until it sets its own, and would be missed."""
    found = set()
    for pid in children(master):
        with contextlib.suppress(OSError):
            if b"cache" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
    return found


@dataclass
class Nginx:
    """nginx as /proc shows it: the master (from its pid file) and the worker PIDs seen so far. Every
    reload starts a new generation of workers, so the new PIDs count the reloads independently of the
    controller's metrics."""

    pid_file: Path
    master: int = 0
    seen: set[int] = field(default_factory=set)
    masters: set[int] = field(default_factory=set)
    peak_workers: int = 0
    peak_pss: float = 0.0

    def sample(self, pss: bool = False) -> set[int]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            self.master = int(self.pid_file.read_text().split()[0])
        self.masters.add(self.master)
        now = workers(self.master)
        self.seen |= now
        self.peak_workers = max(self.peak_workers, len(now))
        if pss:
            self.peak_pss = max(self.peak_pss, self.pss())
        return now

    def pss(self) -> float:
        return sum(pss_mb(p) for p in {self.master, *children(self.master)})

    def cpu(self) -> float:
        """The master's CPU, its exited workers' and the running workers'."""
        return sum(cpu_s(self.master)) + sum(cpu_s(p)[0] for p in workers(self.master))

    async def watch(self, stop: asyncio.Event, interval: float = 0.2, pss_every: int = 25) -> None:
        n = 0
        while not stop.is_set():
            self.sample(pss=n % pss_every == 0)
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


async def reloads(session: aiohttp.ClientSession, metrics_url: str) -> float:
    # Only the counter (name[]): the whole exposition carries the request metrics of every host,
    # a million lines at 10,000 hosts, which the bench would otherwise make the controller write per change.
    async with session.get(metrics_url, params={"name[]": RELOADS}) as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith(RELOADS + " "):
            return float(line.split()[1])
    raise RuntimeError(f"no {RELOADS} in {metrics_url}")


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


async def serial(port: int, context: ssl.SSLContext) -> int | None:
    """The serial of the certificate nginx presents for TLS_HOST on a new connection."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=TLS_HOST), 5)
    except (TimeoutError, OSError, ssl.SSLError):
        return None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2)


async def open_websockets(session: aiohttp.ClientSession, url: str, count: int) -> list[Any]:
    """WebSockets through nginx to the stable backend, each checked with one echo. The heartbeat keeps
    them busier than nginx's proxy_read_timeout (60 s)."""
    async def one(k: int) -> Any:
        ws = await session.ws_connect(url, headers={"Host": host(STABLE)}, heartbeat=20)
        await ws.send_str(f"hello {k}")
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type != aiohttp.WSMsgType.TEXT or not msg.data.endswith(f":hello {k}"):
            raise RuntimeError(f"WebSocket {k}: no echo ({msg})")
        return ws

    sockets: list[Any] = []
    for batch in range(0, count, 20):
        sockets += await asyncio.gather(*(one(k) for k in range(batch, min(count, batch + 20))))
    return sockets


async def warm(fresh: aiohttp.ClientSession, url: str, count: int, rounds: int = 2, parallel: int = 32) -> float:
    """Every host requested ``rounds`` times on new connections (so each worker likely meets it):
    the workers then hold what they cache per route and upstream, and the PSS measured over the
    endpoint changes is what the changes cost, not the first meeting of 10,000 hosts. Seconds taken."""
    t0 = time.monotonic()
    queue = [host(i) for i in range(count + 1)] * rounds

    async def worker() -> None:
        while queue:
            name = queue.pop()
            try:
                async with fresh.get(url, headers={"Host": name}) as r:
                    await r.read()
            except (TimeoutError, aiohttp.ClientError):
                pass  # warming only: the load phase counts failures

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return time.monotonic() - t0


async def still_open(sockets: list[Any]) -> int:
    async def echoes(k: int, ws: Any) -> bool:
        if ws.closed:
            return False
        try:
            await ws.send_str(f"still {k}")
            msg = await asyncio.wait_for(ws.receive(), 10)
        except (TimeoutError, aiohttp.ClientError, ConnectionError, RuntimeError):
            return False
        return msg.type == aiohttp.WSMsgType.TEXT and msg.data.endswith(f":still {k}")

    return sum(await asyncio.gather(*(echoes(k, ws) for k, ws in enumerate(sockets))))


# ---------------------------------------------------------------------------------------------- the run


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def spread(values: list[float]) -> str:
    if not values:
        return "none seen"
    return (f"{pct(values, 50):.2f} / {pct(values, 99):.2f} / {max(values):.2f} s"
            f" (n={len(values)}{', p99 = max' if len(values) < 100 else ''})")


def phases(lines: list[str]) -> str:
    """Median of each step the controller logs for the configurations it applied."""
    steps: dict[str, list[float]] = collections.defaultdict(list)
    for line in lines:
        m = PHASES.search(line)
        if m:
            for step, value in re.findall(r"([\w -]+?) (\d+(?:\.\d+)?)s", m.group(1)):
                steps[step.strip(" ,")].append(float(value))
    if not steps:
        return "none logged"
    n = max(len(v) for v in steps.values())
    return ", ".join(f"{k} {statistics.median(v):.2f}s" for k, v in steps.items()) + f" (median of {n})"


def failures(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in counter.most_common(4))


@dataclass
class Settings:
    """How a count's run is driven: changes, request rate, time bounds."""

    changes: int
    rps: float
    max_change_seconds: float
    rotations: int
    latencies: Path | None
    controller_log: Path | None = None


async def run(count: int, cfg: Settings, work: Path) -> list[tuple[str, str, str]]:
    from tests.apiemu import Emulator

    rows: list[tuple[str, str, str]] = []
    backends = Backends()
    names = ("p0", *POOL)
    ips, backend_port = await backends.start(*names)
    authority = Authority.create()
    client_tls = authority.client_context(work)
    async with Emulator(work / f"emu-{count}", persist=False) as emu:
        churn = Churn(emu, dict(zip(names, ips, strict=True)), backend_port)
        crt, key = authority.issue(TLS_HOST)
        await emu.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await emu.create(o.ingress_class())
        await emu.bulk_load([service(i) for i in range(SERVICES)] + churn.initial()
                            + [o.tls_secret(TLS_SECRET, crt, key, namespace=NS)])
        http, https, healthz = free_port(), free_port(), free_port()
        config_dir = work / f"ingress-{count}"
        exe = shutil.which("portolan") or sys.exit("install portolan first: pip install -e .")
        ctl = Process([exe, "ingress", "--kubeconfig", str(emu.kubeconfig_path), "--bind-address", "127.0.0.1",
                       "--http-port", str(http), "--https-port", str(https), "--healthz-address", "127.0.0.1",
                       "--healthz-port", str(healthz), "--config-dir", str(config_dir),
                       "--publish-status-address", "127.0.0.1"])
        metrics = f"http://127.0.0.1:{healthz}/metrics"
        url = f"http://127.0.0.1:{http}/a"
        try:
            async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5),
                                              connector=aiohttp.TCPConnector(force_close=True)) as fresh,
                        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                                              connector=aiohttp.TCPConnector(limit=0)) as ws_session):
                await until_200(session, f"http://127.0.0.1:{healthz}/healthz", None, 60)
                # The whole set at once, then wait for the last one to be served.
                # The clock starts when the API server has taken the last object, as the issue defines it.
                await emu.bulk_load([tls_ingress()] + [ingress(i) for i in range(count)])
                t0 = time.monotonic()
                await until_200(session, url, host(count - 1), 600)
                rows.append(("live after the last apply", f"{time.monotonic() - t0:.2f} s", "<= 10 s at 10k"))
                conf = next(config_dir.rglob("nginx.conf"))
                rows.append(("nginx.conf", f"{conf.stat().st_size / 1e6:.2f} MB", "< 50 MB"))
                nginx = Nginx(next(config_dir.rglob("nginx.pid")))
                nginx.sample()
                rows.append(("RSS controller / PSS nginx (master + workers), idle",
                             f"{rss_mb(ctl.proc.pid):.0f} MB / {nginx.pss():.0f} MB", ""))

                t0 = time.monotonic()
                ctl.lines.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} BENCH one more Ingress applied next")
                await emu.create(ingress(count))
                await until_200(session, url, host(count), 120)
                ctl.lines.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} BENCH one more Ingress answers 200")
                rows.append(("one more Ingress live", f"{time.monotonic() - t0:.2f} s", "<= 2.5 s at 10k"))

                rows += await rotate(emu, authority, https, client_tls, session, metrics, cfg.rotations)

                cold = nginx.pss()
                took = await warm(fresh, url, count)
                rows.append(("nginx PSS before -> after every host was requested twice (cold caches)",
                             f"{cold:.0f} -> {nginx.pss():.0f} MB ({took:.0f} s)", ""))
                sockets = await open_websockets(ws_session, url, WEBSOCKETS)
                pss_before, workers_before = nginx.pss(), len(nginx.sample())
                rows += await changes(count, cfg, churn, nginx, session, fresh, url, metrics, ctl)
                nginx.sample()
                pss_after, workers_after = nginx.pss(), len(nginx.sample())
                alive = await still_open(sockets)
                growth = (pss_after - pss_before) / pss_before * 100
                rows.append((f"nginx PSS before -> after the changes, {WEBSOCKETS} WebSockets open",
                             f"{pss_before:.0f} -> {pss_after:.0f} MB ({growth:+.1f} %),"
                             f" peak {max(nginx.peak_pss, pss_before, pss_after):.0f} MB",
                             "growth <= 10 %"))
                rows.append(("nginx worker processes before -> after (peak)",
                             f"{workers_before} -> {workers_after} ({nginx.peak_workers})", ""))
                rows.append(("WebSockets still echoing after the changes", f"{alive} / {WEBSOCKETS}", ""))
                rows.append(("RSS controller after the changes", f"{rss_mb(ctl.proc.pid):.0f} MB", ""))
                if len(nginx.masters) > 1:
                    rows.append(("nginx masters (restarted!)", " ".join(map(str, sorted(nginx.masters))), ""))
                for ws in sockets:
                    await ws.close()
        finally:
            ctl.stop()
            if cfg.controller_log is not None:  # where the time went, step by step
                cfg.controller_log.write_text("\n".join(ctl.lines) + "\n")
    await backends.stop()
    # The controller's own account of the configurations with every Ingress, and with one more.
    at = next(k for k, row in enumerate(rows) if row[0] == "one more Ingress live") + 1
    for label, ingresses in (("one more Ingress", count + 2), ("bulk load", count + 1)):
        lines = [x for x in ctl.lines if f" {ingresses} Ingresses (" in x]
        rows.insert(at, (f"controller phases, {label}", phases(lines[-1:]), ""))
    return rows


async def rotate(emu: Any, authority: Authority, https: int, context: ssl.SSLContext,
                 session: aiohttp.ClientSession, metrics: str, times: int) -> list[tuple[str, str, str]]:
    """Replace the TLS Ingress's Secret ``times`` times; how long each new certificate takes to be served."""
    took: list[float] = []
    await asyncio.sleep(1.0)  # the reload of the step before is counted once it has taken effect
    before = await reloads(session, metrics)
    if await serial(https, context) is None:
        raise RuntimeError(f"no TLS handshake for {TLS_HOST} with the first certificate")
    for _ in range(times):
        crt, key = authority.issue(TLS_HOST)
        want = x509.load_pem_x509_certificate(crt).serial_number
        await emu.replace(o.tls_secret(TLS_SECRET, crt, key, namespace=NS))
        t0 = time.monotonic()
        while await serial(https, context) != want:
            if time.monotonic() - t0 > 60:
                raise RuntimeError("the new certificate was not served within 60 s")
            await asyncio.sleep(PROBE_INTERVAL)
        took.append(time.monotonic() - t0)
        await asyncio.sleep(1.0)  # a reload the rotation caused is counted after it took effect
    count = await reloads(session, metrics) - before
    return [(f"Secret rotation live, median / max of {times}",
             f"{statistics.median(took):.2f} / {max(took):.2f} s, {count:.0f} reloads", "<= 1 s, 0 reloads")]


async def changes(count: int, cfg: Settings, churn: Churn, nginx: Nginx, session: aiohttp.ClientSession,
                  fresh: aiohttp.ClientSession, url: str, metrics: str, ctl: Process) -> list[tuple[str, str, str]]:
    """``cfg.changes`` endpoint changes, one at a time, under a steady load."""
    hosts = [host(i) for i in range(count) if i % SERVICES != EMPTY]
    load = Load(session, url, hosts, cfg.rps, cfg.max_change_seconds + PER_CHANGE_TIMEOUT + 10)
    probe = Probe(fresh, url)
    stop = asyncio.Event()
    logged = len(ctl.drain())
    reloads_before = await reloads(session, metrics)
    nginx.seen.clear()  # the generations of the steps before are not this phase's
    workers_before = nginx.sample(pss=True)
    per_generation = len(workers_before)
    ctl_cpu, nginx_cpu = cpu_s(ctl.proc.pid), nginx.cpu()
    tasks = [asyncio.create_task(load.run(stop)), asyncio.create_task(nginx.watch(stop))]
    done: list[Change] = []
    t0 = time.monotonic()
    try:
        for k in range(cfg.changes):
            if time.monotonic() - t0 > cfg.max_change_seconds:
                break
            change = await churn.write(k)
            at = await probe.seen(change, PER_CHANGE_TIMEOUT)
            change.latency = None if at is None else at - change.accepted
            done.append(change)
            nginx.sample()
            if (k + 1) % 50 == 0:  # a long run shows it is alive (stderr: the tables stay clean)
                print(f"  {count}: {k + 1} changes in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        elapsed = time.monotonic() - t0
        await asyncio.sleep(2.0)  # the last change's reload, if any, lands under load and is counted
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    ctl_after, nginx_after = cpu_s(ctl.proc.pid), nginx.cpu()
    count_reloads = await reloads(session, metrics) - reloads_before
    generations = len(nginx.seen - workers_before) / max(1, per_generation)
    if cfg.latencies is not None:
        with cfg.latencies.open("a") as f:
            for c in done:
                f.write(f"{count}\t{c.number}\t{c.kind}\tsvc-{c.svc}\t"
                        f"{'' if c.latency is None else f'{c.latency:.4f}'}\n")
    n = len(done)
    seen = [c.latency for c in done if c.latency is not None]
    kinds = collections.Counter(c.kind for c in done)
    by_kind = "; ".join(
        f"{kind} {pct(v, 50):.2f}/{max(v):.2f}"
        for kind in dict.fromkeys(KINDS)
        if (v := [c.latency for c in done if c.kind == kind and c.latency is not None]))
    bounded = f", stopped by --max-change-seconds after {n}" if n < cfg.changes else ""
    requests = load.ok + sum(load.failed.values())
    return [
        ("endpoint changes, one at a time",
         f"{n} in {elapsed:.0f} s{bounded} ({', '.join(f'{k} {v}' for k, v in kinds.items())})", ""),
        ("reloads during the changes: /metrics, new nginx worker generations",
         f"{count_reloads:.0f}, {generations:.0f} ({per_generation} workers each)", "0"),
        ("endpoint change to traffic p50 / p99 / max", spread(seen), "<= 1 s"),
        ("  by kind, p50/max (s)", by_kind, ""),
        ("changes not seen within 30 s", f"{n - len(seen)}", "0"),
        (f"failed requests under the load ({cfg.rps:.0f} req/s keep-alive over {len(hosts)} hosts)",
         f"{sum(load.failed.values())} of {requests}" + (f": {failures(load.failed)}" if load.failed else ""),
         "0"),
        ("probe requests failed (fresh connections, while awaiting each change)",
         f"{sum(probe.errors.values())}" + (f": {failures(probe.errors)}" if probe.errors else ""), "0"),
        ("controller CPU per change: own (+ reaped children, i.e. nginx -t)",
         f"{(ctl_after[0] - ctl_cpu[0]) / max(1, n):.3f} s (+ {(ctl_after[1] - ctl_cpu[1]) / max(1, n):.3f} s)",
         ""),
        ("nginx CPU per change (master, workers; serving the load included)",
         f"{(nginx_after - nginx_cpu) / max(1, n):.3f} s", ""),
        ("controller phases during the changes", phases(ctl.drain()[logged:]), ""),
    ]


def table(count: int, rows: list[tuple[str, str, str]]) -> str:
    lines = [f"| {count:,} Ingresses (+1 TLS) | measured | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--changes", type=int, nargs="+", default=[1000],
                    help="endpoint changes at each count (one value for all, or one per count)")
    ap.add_argument("--max-change-seconds", type=float, default=1200,
                    help="stop writing endpoint changes after this long (the table says so)")
    ap.add_argument("--rps", type=float, default=150, help="the steady load's requests per second")
    ap.add_argument("--rotations", type=int, default=3, help="Secret rotations measured")
    ap.add_argument("--latencies", type=Path, help="append each change's latency here (tab-separated)")
    ap.add_argument("--controller-log", type=Path, help="write the controller's log (and the bench's marks) here")
    ap.add_argument("--quick", action="store_true", help="a smoke run: --counts 200 --changes 50")
    args = ap.parse_args()
    if args.quick:
        args.counts, args.changes = [200], [50]
    if min(args.counts) < SERVICES:
        ap.error(f"--counts must be at least {SERVICES}: every Service needs an Ingress")
    if len(args.changes) not in (1, len(args.counts)):
        ap.error("--changes takes one value, or one per count")
    per_count = args.changes * len(args.counts) if len(args.changes) == 1 else args.changes
    print("command: PYTHONPATH=. python3 " + shlex.join(sys.argv), flush=True)
    with tempfile.TemporaryDirectory(prefix="ingress-scale-") as tmp:
        for count, n in zip(args.counts, per_count, strict=True):
            log = args.controller_log.with_suffix(f".{count}.log") if args.controller_log else None
            cfg = Settings(n, args.rps, args.max_change_seconds, args.rotations, args.latencies, log)
            rows = asyncio.run(run(count, cfg, Path(tmp)))
            print("\n" + table(count, rows) + "\n", flush=True)


if __name__ == "__main__":
    main()
