"""Requests per core through `portolan ingress`'s nginx, against a minimal proxy_pass nginx.

    python bench/ingress_throughput.py [--rounds 3] [--seconds 5] [--costs] [--only-costs]

Three nginx on loopback, each with one worker pinned to core 0 (taskset): a backend that answers
`return 200`, a minimal proxy (one upstream with keep-alive, the Host header, nginx's `combined`
access log or none), and the nginx of `portolan ingress` (run from a manifests directory: one
Ingress to one Service whose endpoint is the backend; `worker-processes: 1`). Two controllers run
side by side, one with the access log on (the default) and one with `disable-access-log: true`.
The load generator (wrk; h2load for HTTP/2) runs on core 1.

Scenarios: HTTP/1.1 keep-alive; a new connection per request; HTTPS with a new connection per
request, resuming the TLS session (wrk keeps its session across reconnects; both proxies offer
TLSv1.2 and TLSv1.3, so it resumes TLS 1.3 sessions); HTTP/2 over TLS (h2load, 10 streams per
connection). Each with the access log on and off, against the minimal proxy with the same log
setting. Every round runs every row once, minimal proxy and Portolan back to back, so the ratio
of a round compares runs made within seconds of each other; the median ratio of the rounds is
reported, and beside it the median ratio of requests per CPU-second of the proxy's worker
(/proc utime + stime): what a core serves, and the steadier figure when other processes share
core 0 (the backend does too, so the rate ratio also counts the backend's share of the core).
Request metrics (ingress-nginx's series, counted by log_by_lua) are on, as by default; two more
controllers run with `--enable-metrics=false` for the keep-alive rows "metrics off", and the
"request metrics cost" line compares them round by round (issue 14: the loss must be <= 10%).

--costs: the cost table. Copies of Portolan's generated nginx.conf (access log on), each with one
group of per-request work switched off, run as nginx of their own (the bench pushes the route and
endpoint records the controller would), keep-alive HTTP, interleaved with the unmodified copy.

Targets (issue 19): keep-alive >= 0.8x of the minimal proxy with the access log on, >= 0.9x off.
Run by hand on a quiet machine if possible; figures on a shared machine move by several percent.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingress.channel import encode  # noqa: E402
from tests.ingress.procs import children  # noqa: E402
from tests.ingress.tlsutil import Authority  # noqa: E402
from tests.server import free_port  # noqa: E402

HOST = "bench.test"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SERVER_CORE, LOAD_CORE = "0", "1"
CONNECTIONS = 32
H2_STREAMS = 10  # concurrent streams per HTTP/2 connection (h2load -m)
KEEPALIVE_REQUESTS = 1000  # nginx's default, and ingress-nginx's keep-alive-requests


def sh(argv: list[str], timeout: float) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False).stdout


def spawn_nginx(prefix: Path, conf: Path) -> subprocess.Popen[bytes]:
    """nginx in the foreground, its master (and so its worker) on SERVER_CORE; run from ``prefix``
    (a copy of Portolan's config names its status socket relative to it)."""
    return subprocess.Popen(["taskset", "-c", SERVER_CORE, NGINX, "-p", f"{prefix}/", "-c", str(conf),
                             "-e", str(prefix / "error.log"), "-g", "daemon off;"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=prefix)  # fmt: skip


def wait_http(port: int, timeout: float = 30.0, host: str = HOST) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/", headers={"Host": host})
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"nothing answers 200 on 127.0.0.1:{port} (Host {host})")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # nginx: fast shutdown; the controller: stops its nginx, then itself
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------- the servers

@dataclass
class Target:
    """One proxy to measure: its plain HTTP and its TLS port, and its nginx master."""

    name: str
    http: int
    https: int
    master: int = 0

    def cpu(self) -> float:
        """CPU seconds its workers have used (the master is idle)."""
        return sum(_cpu_seconds(pid) for pid in children(self.master))


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


@dataclass(frozen=True)
class Measured:
    """One run: requests/s, and requests per CPU-second of the proxy's worker (what a core
    serves, less sensitive than the rate to other load on a shared machine)."""

    rate: float
    per_cpu: float


BACKEND_CONF = """worker_processes 1;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""

# What a user would write by hand: one upstream with keep-alive, HTTP/1.1, the Host header.
# The access log is nginx's own (format "combined", unbuffered) or off, per server.
MINIMAL_CONF = """worker_processes 1;
pid {dir}/nginx.pid;
events {{ worker_connections 16384; }}
http {{
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 320;
    }}
    ssl_certificate {dir}/cert.pem;
    ssl_certificate_key {dir}/key.pem;
    ssl_session_cache shared:MINIMAL:10m;
    ssl_protocols TLSv1.2 TLSv1.3;  # as Portolan's default (nginx 1.22's own leaves TLSv1.3 out)
    keepalive_requests 1000;
{servers}}}
"""
MINIMAL_SERVER = """    server {{
        listen 127.0.0.1:{http};
        listen 127.0.0.1:{https} ssl http2;
        access_log {log};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}
"""


def start_backend(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    d = work / "backend"
    d.mkdir()
    port = free_port()
    (d / "nginx.conf").write_text(BACKEND_CONF.format(dir=d, port=port))
    proc = spawn_nginx(d, d / "nginx.conf")
    wait_http(port)
    return proc, port


def start_minimal(work: Path, backend: int, authority: Authority) -> tuple[subprocess.Popen[bytes], dict[bool, Target]]:
    d = work / "minimal"
    (d / "tmp").mkdir(parents=True)
    crt, key = authority.issue(HOST)
    (d / "cert.pem").write_bytes(crt)
    (d / "key.pem").write_bytes(key)
    targets = {log: Target("minimal", free_port(), free_port()) for log in (True, False)}
    servers = "".join(MINIMAL_SERVER.format(http=t.http, https=t.https,
                                            log=f"{d}/access.log combined" if log else "off")
                      for log, t in targets.items())  # fmt: skip
    (d / "nginx.conf").write_text(MINIMAL_CONF.format(dir=d, backend=backend, servers=servers))
    proc = spawn_nginx(d, d / "nginx.conf")
    for t in targets.values():
        t.master = proc.pid  # taskset execs nginx
        wait_http(t.http)
    return proc, targets


MANIFESTS = """apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  clusterIP: 10.96.0.10
  ports: [{{name: http, port: 80, targetPort: {port}, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
ports: [{{name: http, port: {port}, protocol: TCP}}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: portolan}}
spec: {{controller: portolan.dev/ingress-controller}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web, namespace: default}}
spec:
  ingressClassName: portolan
  rules:
  - host: {host}
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: portolan, namespace: default}}
data:
{data}
"""


def start_portolan(work: Path, name: str, backend: int, settings: dict[str, str],
                   flags: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], Target, Path]:
    """`portolan ingress` on a manifests directory, on SERVER_CORE (its nginx inherits the core;
    the controller itself is idle once nginx serves)."""
    d = work / name
    (d / "manifests").mkdir(parents=True)
    data = "\n".join(f"  {k}: {v!r}" for k, v in {"worker-processes": "1", **settings}.items())
    (d / "manifests" / "all.yaml").write_text(MANIFESTS.format(port=backend, host=HOST, data=data))
    config_dir = Path(tempfile.mkdtemp(prefix="pt-", dir=work))  # short: the status socket path
    os.chmod(config_dir, 0o711)
    target = Target("portolan", free_port(), free_port())
    exe = shutil.which("portolan") or sys.exit("portolan is not installed (pip install -e .)")
    argv = ["taskset", "-c", SERVER_CORE, exe, "ingress", "--manifests", str(d / "manifests"),
            "--manifest-interval", "3600", "--configmap", "default/portolan", "--bind-address", "127.0.0.1",
            "--http-port", str(target.http), "--https-port", str(target.https), "--healthz-port", str(free_port()),
            "--healthz-address", "127.0.0.1", "--config-dir", str(config_dir), "--log-level", "warning",
            *flags]  # fmt: skip
    log = open(d / "controller.log", "wb")  # noqa: SIM115 (the child holds it)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        wait_http(target.http, timeout=60)
    except SystemExit:
        stop(proc)
        tail = (d / "controller.log").read_text()[-3000:]
        raise SystemExit(f"{name}: not serving; {d / 'controller.log'}:\n{tail}") from None
    target.master = int((config_dir / "nginx.pid").read_text().split()[0])
    return proc, target, config_dir


# ------------------------------------------------------------------------------- the load

@dataclass(frozen=True)
class Scenario:
    """A kind of load, as the issue lists them."""

    name: str
    run: Callable[[Target, float], tuple[int, float]]  # -> (requests, seconds)


def wrk(url: str, seconds: float, *headers: str) -> tuple[int, float]:
    argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "-H", f"Host: {HOST}"]
    for h in headers:
        argv += ["-H", h]
    out = sh([*argv, url], timeout=seconds + 30)
    found = re.search(r"(\d+) requests in ([0-9.]+)(m?s),", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if not found or bad:
        raise SystemExit(f"wrk {url}: failed or non-2xx answers:\n{out}")
    if errors and re.search(r"(read|write|timeout) [1-9]", errors[1]):
        print(f"  (wrk {url}: socket errors: {errors[1]})", file=sys.stderr)
    return int(found[1]), float(found[2]) / (1000 if found[3] == "ms" else 1)


def h2load(url: str, seconds: float) -> tuple[int, float]:
    """HTTP/2 requests/s. nginx closes an HTTP/2 connection after keepalive_requests (1000, both
    proxies), which h2load does not reopen: each run is CONNECTIONS x 1000 requests, repeated
    until ``seconds`` have passed; the rate is their total over h2load's own times."""
    per_run = CONNECTIONS * KEEPALIVE_REQUESTS
    argv = ["taskset", "-c", LOAD_CORE, "h2load", "-t1", f"-c{CONNECTIONS}", f"-m{H2_STREAMS}", f"-n{per_run}",
            "-H", f":authority: {HOST}", url]  # fmt: skip
    done, spent, start = 0, 0.0, time.monotonic()
    while time.monotonic() - start < seconds:
        out = sh(argv, timeout=seconds + 30)
        found = re.search(r"finished in ([0-9.]+)(m?s),", out)
        codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        if not found or not codes or int(codes[1]) != per_run:
            raise SystemExit(f"h2load {url}: failed or non-2xx answers:\n{out}")
        done += per_run
        spent += float(found[1]) / (1000 if found[2] == "ms" else 1)
    return done, spent


SCENARIOS = (
    Scenario("HTTP/1.1 keep-alive", lambda t, s: wrk(f"http://127.0.0.1:{t.http}/", s)),
    Scenario("new connection per request", lambda t, s: wrk(f"http://127.0.0.1:{t.http}/", s, "Connection: close")),
    Scenario("HTTPS, new conn., session reuse",
             lambda t, s: wrk(f"https://127.0.0.1:{t.https}/", s, "Connection: close")),
    Scenario("HTTP/2 over TLS", lambda t, s: h2load(f"https://127.0.0.1:{t.https}/", s)),
)


Row = tuple[str, Target, Callable[[Target, float], tuple[int, float]]]


def measure(target: Target, run: Callable[[Target, float], tuple[int, float]], seconds: float) -> Measured:
    cpu = target.cpu()
    requests, spent = run(target, seconds)
    used = target.cpu() - cpu
    return Measured(requests / spent, requests / used if used > 0 else 0.0)


def interleaved(rows: list[Row], rounds: int, seconds: float) -> dict[str, list[Measured]]:
    """Every row once per round, in order; each run preceded by a one-second warm-up."""
    results: dict[str, list[Measured]] = {name: [] for name, _, _ in rows}
    for r in range(rounds):
        for name, target, run in rows:
            run(target, 1.0)
            results[name].append(measure(target, run, seconds))
        print(f"  round {r + 1} of {rounds} done", file=sys.stderr, flush=True)
    return results


def ratio_line(label: str, minimal: list[Measured], mine: list[Measured]) -> str:
    ratios = [p.rate / m.rate for p, m in zip(mine, minimal, strict=True)]
    per_cpu = [p.per_cpu / m.per_cpu for p, m in zip(mine, minimal, strict=True)]
    rounds = "  ".join(f"{m.rate / 1000:6.1f}k {p.rate / 1000:6.1f}k {q:5.2f}x"
                       for m, p, q in zip(minimal, mine, ratios, strict=True))  # fmt: skip
    return f"{label:<41} {rounds}   {statistics.median(ratios):5.2f}x  {statistics.median(per_cpu):5.2f}x"


def main_table(minimal: dict[bool, Target], portolan: dict[bool, Target], no_metrics: dict[bool, Target],
               rounds: int, seconds: float) -> None:
    rows: list[Row] = []
    for sc in SCENARIOS:
        for log in (True, False):
            for who, target in (("minimal", minimal[log]), ("portolan", portolan[log])):
                rows.append((f"{sc.name}|{log}|{who}", target, sc.run))
            if sc is SCENARIOS[0]:
                rows.append((f"{sc.name}|{log}|no-metrics", no_metrics[log], sc.run))
    res = interleaved(rows, rounds, seconds)
    head = "  ".join(f"{'minimal':>7} {'portolan':>7} {'ratio':>6}" for _ in range(rounds))
    print(f"\n{'scenario (requests/s per round)':<41} {head}   median  per CPU-s")
    for sc in SCENARIOS:
        for log in (True, False):
            key = f"{sc.name}|{log}|"
            print(ratio_line(f"{sc.name}, log {'on' if log else 'off'}", res[key + "minimal"], res[key + "portolan"]))
    keep = SCENARIOS[0].name
    for log in (True, False):
        key = f"{keep}|{log}|"
        print(ratio_line(f"{keep}, log {'on' if log else 'off'}, metrics off", res[key + "minimal"],
                         res[key + "no-metrics"]))  # fmt: skip
    for log in (True, False):
        key = f"{keep}|{log}|"
        # metrics on against off, round by round: the share of the rate (and of a core) the counting costs
        print(ratio_line(f"request metrics cost (on/off), log {'on' if log else 'off'}", res[key + "no-metrics"],
                         res[key + "portolan"]))  # fmt: skip


# ------------------------------------------------------------------------------- the cost table

def _sub(pattern: str, repl: str, count: int = 0) -> Callable[[str], str]:
    def edit(text: str) -> str:
        new, n = re.subn(pattern, repl, text, flags=re.M)
        if n == 0 or (count and n != count):
            raise SystemExit(f"cost table: {pattern!r} matched {n} times in the generated config")
        return new

    return edit


def _both(*edits: Callable[[str], str]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        for e in edits:
            text = e(text)
        return text

    return edit


def cost_edits(backend: int) -> dict[str, Callable[[str], str]]:
    no_log = _sub(r"^(\s*)access_log \"[^\"]*\" portolan[^;]*;", r"\1access_log off;", 1)
    no_forwarded = _sub(r"^\s*proxy_set_header (X-Forwarded-[A-Za-z]+|X-Real-IP) .*\n", "")
    # $req_id is the client's X-Request-ID or $request_id, made per request (16 bytes of OpenSSL's
    # RAND_bytes; wrk sends none), for the header and the log
    no_request_id = _both(_sub(r"^\s*proxy_set_header X-Request-ID .*\n", "", 1),
                          _sub(r"^(\s*log_format portolan .*) \$req_id(\"?;)$", r"\1\2", 1))
    no_maps = _both(_sub(r"proxy_set_header Connection \$portolan_connection;", 'proxy_set_header Connection "";', 1),
                    _sub(r"proxy_set_header Host \$portolan_vhost;", "proxy_set_header Host $host;", 1),
                    _sub(r"^\s*set \$portolan_vhost \$portolan_host;\n", ""))  # fmt: skip
    # (every balancer_by_lua upstream: portolan_balancer and the one for verified backend TLS)
    no_lua = _sub(r"server 0\.0\.0\.1;.*\n\s*balancer_by_lua_block \{[^}]*\}", f"server 127.0.0.1:{backend};")
    combined = ('log_format portolan "$remote_addr - $remote_user [$time_local] $request $status $body_bytes_sent'
                ' $http_referer $http_user_agent";')
    # The request metrics' log_by_lua (http level; the error locations' own stay, rarely run)
    no_metrics = _sub(r"^    log_by_lua_block \{\s*portolan\.log\(\)\s*\}\n", "", 1)
    buffered = _sub(r"^(\s*access_log \"[^\"]*\" portolan);", r"\1 buffer=64k flush=1s;", 1)  # access-log-params
    return {
        "access log": no_log,
        "unbuffered log writes (buffer=64k flush=1s)": buffered,
        "log format (nginx's combined instead)": _sub(r"log_format portolan .*;", combined.replace("\\", "\\\\"), 1),
        "proxy_buffering off (on instead)": _sub(r"^(\s*)proxy_buffering off;", r"\1proxy_buffering on;", 1),
        "forwarded headers (X-Forwarded-*, X-Real-IP)": no_forwarded,
        "request id (header and log)": no_request_id,
        "other maps (Connection, Host)": no_maps,
        "Lua balancer (vs a plain upstream)": no_lua,
        "Lua request metrics (log_by_lua)": no_metrics,
        "all of the above": _both(no_log, no_forwarded, no_request_id, no_maps, no_lua, no_metrics),
    }


def _push(prefix: Path, conf: str, backend: int) -> None:
    """The records the controller would push for the one route: its upstream and endpoint."""
    routes = re.findall(r"set \$portolan_route (r\w+);", conf)
    if not routes:
        return
    # (every location names a route; those that answer with a status never reach the balancer)
    records = {f"r:{route}": "u=bench&lb=round_robin" for route in routes}
    body = encode("bench", True, {**records, "u:bench": f"127.0.0.1:{backend}"}, [])
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(prefix / "run" / "nginx-status.sock"))
    conn = http.client.HTTPConnection("localhost")
    conn.sock = sock
    conn.request("POST", "/portolan/data", body=body)
    reply = conn.getresponse()
    if reply.status != 200:
        raise SystemExit(f"push to {prefix}: {reply.status} {reply.read()!r}")


def start_copy(work: Path, name: str, source: Path, text: str, backend: int) -> tuple[subprocess.Popen[bytes], Target]:
    """A copy of a controller's config dir, on new ports, running its own nginx."""
    d = Path(tempfile.mkdtemp(prefix="pc-", dir=work))
    os.chmod(d, 0o711)
    shutil.copytree(source, d, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.sock", "nginx.pid", "*.log"))
    target = Target(name, free_port(), free_port())
    old = re.findall(r"listen 127\.0\.0\.1:(\d+)", text)
    ports = dict(zip(dict.fromkeys(old), (target.http, target.https), strict=True))
    text = re.sub(r"listen 127\.0\.0\.1:(\d+)", lambda m: f"listen 127.0.0.1:{ports[m[1]]}", text)
    (d / "nginx.conf").write_text(text.replace(str(source), str(d)))
    proc = spawn_nginx(d, d / "nginx.conf")
    deadline = time.monotonic() + 20
    while not (d / "run" / "nginx-status.sock").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"{name}: nginx did not start; {d / 'logs' / 'error.log'}")
        time.sleep(0.1)
    target.master = proc.pid
    try:
        _push(d, text, backend)
        wait_http(target.http)
    except SystemExit:
        stop(proc)  # not yet in the caller's list: it would outlive the bench
        raise
    return proc, target


def cost_table(work: Path, source: Path, backend: int, minimal: Target, rounds: int, seconds: float) -> None:
    base = (source / "nginx.conf").read_text()
    variants = {"as generated": base, **{k: edit(base) for k, edit in cost_edits(backend).items()}}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        targets = {}
        for name, text in variants.items():
            proc, targets[name] = start_copy(work, name, source, text, backend)
            procs.append(proc)
        keep_alive = SCENARIOS[0].run
        rows: list[Row] = [("minimal", minimal, keep_alive)]
        rows += [(name, t, keep_alive) for name, t in targets.items()]
        res = interleaved(rows, rounds, seconds)
    finally:
        for proc in procs:
            stop(proc)
    def ratios(name: str, field: str) -> float:
        return statistics.median(getattr(p, field) / getattr(m, field) for p, m in zip(res[name], res["minimal"],
                                                                                        strict=True))  # fmt: skip

    print(f"\ncost table: keep-alive HTTP/1.1, access log on; each row a copy of the generated config with one group "
          f"switched off\n{'switched off':<46} {'req/s':>8} {'ratio':>6} {'cost':>6}   {'per CPU-s':>9} {'cost':>6}")
    for name in res:
        rate, cpu = ratios(name, "rate"), ratios(name, "per_cpu")
        base = name in ("minimal", "as generated")
        cost = "" if base else f"{rate - ratios('as generated', 'rate'):+.2f}"
        cpu_cost = "" if base else f"{cpu - ratios('as generated', 'per_cpu'):+.2f}"
        print(f"{name:<46} {statistics.median(m.rate for m in res[name]):8.0f} {rate:5.2f}x {cost:>6}   {cpu:8.2f}x"
              f" {cpu_cost:>6}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each measured run")
    ap.add_argument("--costs", action="store_true", help="also the cost table")
    ap.add_argument("--only-costs", action="store_true", help="only the cost table")
    ap.add_argument("--portolan-setting", action="append", default=[], metavar="KEY=VALUE",
                    help="a ConfigMap key for both controllers (e.g. access-log-params=buffer=64k)")
    args = ap.parse_args()
    for tool in ("wrk", "h2load", "taskset", NGINX):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")
    extra = dict(kv.split("=", 1) for kv in args.portolan_setting)
    work = Path(tempfile.mkdtemp(prefix="ingress-throughput-"))
    os.chmod(work, 0o711)  # nginx workers (user nobody when root) reach the config dirs
    procs: list[subprocess.Popen[bytes]] = []
    try:
        backend_proc, backend = start_backend(work)
        procs.append(backend_proc)
        minimal_proc, minimal = start_minimal(work, backend, Authority.create())
        procs.append(minimal_proc)
        portolan: dict[bool, Target] = {}
        dirs: dict[bool, Path] = {}
        for log in (True, False):
            settings = {**extra, **({} if log else {"disable-access-log": "true"})}
            proc, portolan[log], dirs[log] = start_portolan(work, f"portolan-log-{'on' if log else 'off'}", backend,
                                                            settings)  # fmt: skip
            procs.append(proc)
        print(f"nginx {sh([NGINX, '-v'], 10) or sh_err_version()}; one worker each on core {SERVER_CORE},"
              f" load on core {LOAD_CORE}; {CONNECTIONS} connections, {args.seconds:g}s per run, {args.rounds} rounds;"
              f" Portolan settings {extra or 'defaults'}", flush=True)
        no_metrics: dict[bool, Target] = {}
        if not args.only_costs:
            for log in (True, False):
                settings = {**extra, **({} if log else {"disable-access-log": "true"})}
                proc, no_metrics[log], _ = start_portolan(work, f"portolan-nometrics-log-{'on' if log else 'off'}",
                                                          backend, settings, ("--enable-metrics=false",))  # fmt: skip
                procs.append(proc)
            main_table(minimal, portolan, no_metrics, args.rounds, args.seconds)
        if args.costs or args.only_costs:
            cost_table(work, dirs[True], backend, minimal[True], args.rounds, args.seconds)
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def sh_err_version() -> str:
    return subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=False).stderr.strip().split("/")[-1]


if __name__ == "__main__":
    main()
