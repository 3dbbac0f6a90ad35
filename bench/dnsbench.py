"""Side-by-side DNS benchmark: `portolan dns` and dnsmasq, same queries, same machine, same run.

    python bench/dnsbench.py SCENARIO [--seconds 10] [--rounds 3]
    python bench/dnsbench.py all [--seconds 10] [--rounds 3]

Scenarios: `hosts` (a hosts-file name, no cache), `cache` (the same through `cache`: hits on the hot
path), `nxdomain` (cache hits with 30% NXDOMAIN from an authoritative zone), `forward` (every query
a miss, forwarded to a third server: a dnsmasq upstream, the same for both), `cluster` (cluster names
from the kubernetes plugin without cache, against dnsmasq's hosts-file answers).

Each server is pinned to core 0 (taskset) and dnsperf runs on core 1, over loopback only. The
servers alternate within every round so drift on a shared machine hits both alike. Reported per
server: maximum QPS (dnsperf, 100 outstanding queries), the server's own CPU time per answered
query in µs (utime+stime from /proc, which survives noise better than QPS), lost queries, RSS,
and the portolan/dnsmasq ratios. Installs dnsperf, dnsmasq and taskset from Debian if missing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.server import free_port, rss_mb  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = "0", "1"


def ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("dnsperf", "dnsperf"), ("dnsmasq", "dnsmasq-base"), ("taskset", "util-linux"))
               if shutil.which(tool) is None]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


@dataclass
class Result:
    """One server's numbers for one scenario round (dnsperf and /proc)."""

    qps: float
    completed: int
    lost: int
    cpu_us: float
    avg_ms: float
    rss: float
    p99_ms: float = 0.0  # at the fixed rate (FIXED_QPS), from dnsperf -v per-query latencies
    fixed_avg_ms: float = 0.0
    fixed_lost: int = 0


FIXED_QPS = 20000


def wait_udp(port: int, name: str, deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        r = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=1", name],
                           capture_output=True, text=True)
        # Only a real answer counts: dig also prints "connection refused" before the server is up.
        if "status: NOERROR" in r.stdout:
            return
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not answer")


def run_dnsperf(pid: int, port: int, queries: Path, seconds: int, qps_limit: int | None = None) -> Result:
    cmd = ["taskset", "-c", CLIENT_CPU, "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
           "-l", str(seconds), "-q", "100", "-t", "2"]
    if qps_limit:
        cmd += ["-Q", str(qps_limit)]
    before = cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    used = cpu_seconds(pid) - before

    def num(pattern: str) -> float:
        m = re.search(pattern, out)
        if not m:
            raise RuntimeError(f"dnsperf output lacks {pattern!r}:\n{out}")
        return float(m.group(1))

    completed = int(num(r"Queries completed:\s+(\d+)"))
    return Result(qps=num(r"Queries per second:\s+([\d.]+)"), completed=completed,
                  lost=int(num(r"Queries lost:\s+(\d+)")), cpu_us=used / max(completed, 1) * 1e6,
                  avg_ms=num(r"Average Latency \(s\):\s+([\d.]+)") * 1000, rss=rss_mb(pid))


def run_fixed_rate(port: int, queries: Path, seconds: int) -> tuple[float, float, int]:
    """(average ms, p99 ms, lost) at FIXED_QPS, from dnsperf's per-query latency lines."""
    cmd = ["taskset", "-c", CLIENT_CPU, "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
           "-l", str(seconds), "-Q", str(FIXED_QPS), "-q", "500", "-t", "2", "-v"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    lat = []
    for line in out.splitlines():
        if line.startswith("> "):
            # A timed-out query's line carries no latency: it is counted in "lost" below.
            with contextlib.suppress(ValueError):
                lat.append(float(line.rsplit(" ", 1)[1]))
    lat.sort()
    lost_m = re.search(r"Queries lost:\s+(\d+)", out)
    if not lat:
        raise RuntimeError(f"no latencies from dnsperf:\n{out[-2000:]}")
    return statistics.fmean(lat) * 1000, lat[int(len(lat) * 0.99) - 1] * 1000, int(lost_m.group(1)) if lost_m else -1


def start_dnsmasq(work: Path, port: int, args: list[str], cpu: str = SERVER_CPU) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", "-c", cpu, "dnsmasq", "--keep-in-foreground", "--user=root",
                             f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces",
                             "--no-hosts", "--log-facility=-", f"--pid-file={work / f'dnsmasq-{port}.pid'}", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_portolan(work: Path, port: int, corefile: str) -> subprocess.Popen[bytes]:
    cf = work / "Corefile"
    cf.write_text(corefile.replace("{port}", str(port)))
    exe = shutil.which("portolan") or sys.exit("install portolan first: pip install -e .")
    # The log is kept for a look when something is lost; the child has its own copy of the file
    # descriptor, so ours is closed at once rather than left open for every round.
    with open(work / f"portolan-{port}.log", "wb") as logf:
        return subprocess.Popen(["taskset", "-c", SERVER_CPU, exe, "dns", "-quiet", "-conf", str(cf)],
                                stdout=logf, stderr=subprocess.STDOUT)


def stop(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


@dataclass
class Scenario:
    """What both servers are set up to answer, and the queries dnsperf sends them."""

    corefile: str  # for portolan; {port} is filled in
    dnsmasq: list[str]  # dnsmasq's arguments for the same answers
    queries: Path
    upstream: list[str] | None = None  # a dnsmasq both forward to (never measured)
    upstream_port: int = 0
    dnsmasq_queries: Path | None = None  # when dnsmasq is the yardstick on other names (cluster)


def scenario_hosts(work: Path, cache: bool = False) -> Scenario:
    """One name from a hosts file. With `cache`, portolan answers it from its cache (the hot path)."""
    hosts = work / "hosts"
    hosts.write_text("10.0.0.1 bench.example.org\n")
    queries = work / "queries"
    queries.write_text("bench.example.org A\n")
    cache_line = "    cache 30\n" if cache else ""
    corefile = f".:{{port}} {{\n    bind 127.0.0.1\n{cache_line}    hosts {hosts}\n}}\n"
    return Scenario(corefile, ["--no-resolv", f"--addn-hosts={hosts}"], queries)


def scenario_nxdomain(work: Path) -> Scenario:
    """Ten names of an authoritative zone, three of every ten queries for names that do not exist."""
    names = [f"host{i}.bench.test" for i in range(7)]
    zone = work / "db.bench.test"
    zone.write_text("$TTL 300\n@ IN SOA ns.bench.test. admin.bench.test. 1 7200 1800 86400 300\n@ IN NS ns\n"
                    "ns IN A 10.0.0.53\n" + "".join(f"{n}. IN A 10.0.1.{i}\n" for i, n in enumerate(names)))
    hosts = work / "hosts-nx"
    hosts.write_text("".join(f"10.0.1.{i} {n}\n" for i, n in enumerate(names)) + "10.0.0.53 ns.bench.test\n")
    queries = work / "queries-nx"
    queries.write_text("".join(f"{n} A\n" for n in names) + "".join(f"missing{i}.bench.test A\n" for i in range(3)))
    corefile = f"bench.test:{{port}} {{\n    bind 127.0.0.1\n    cache 30\n    file {zone}\n}}\n"
    return Scenario(corefile, ["--no-resolv", "--local=/bench.test/", f"--addn-hosts={hosts}"], queries)


def scenario_forward(work: Path) -> Scenario:
    """Every query a miss: 1,000 distinct names, no cache on the measured server, one upstream."""
    hosts = work / "hosts-up"
    hosts.write_text("".join(f"10.1.{i // 250}.{i % 250} n{i}.up.test\n" for i in range(1000)))
    queries = work / "queries-fwd"
    queries.write_text("".join(f"n{i}.up.test A\n" for i in range(1000)))
    up_port = free_port()
    corefile = f".:{{port}} {{\n    bind 127.0.0.1\n    forward . 127.0.0.1:{up_port}\n}}\n"
    # dnsmasq as the measured forwarder: no cache, so it forwards every query as portolan does.
    return Scenario(corefile, ["--no-resolv", f"--server=127.0.0.1#{up_port}", "--cache-size=0"], queries,
                    upstream=["--no-resolv", f"--addn-hosts={hosts}", "--local=/up.test/"], upstream_port=up_port)


CLUSTER_FIXTURE = ROOT / "tests" / "data" / "k8s" / "cluster.yaml"


def scenario_cluster(work: Path) -> Scenario:
    """Cluster names from the kubernetes plugin alone (no cache): services, headless, SRV, PTR, pods,
    30% NXDOMAIN; against dnsmasq answering its hosts-file name (issue 5's yardstick)."""
    z = "cluster.local"
    names = [f"my-svc.testns.svc.{z} A", f"headless.testns.svc.{z} A", f"_http._tcp.my-svc.testns.svc.{z} SRV",
             f"_http._tcp.headless.testns.svc.{z} SRV", "11.0.96.10.in-addr.arpa PTR", f"kubernetes.default.svc.{z} A",
             f"172-17-0-5.testns.pod.{z} A"]
    missing = [f"nope{i}.testns.svc.{z} A" for i in range(3)]
    queries = work / "queries-cluster"
    queries.write_text("\n".join(names + missing) + "\n")
    corefile = (f".:{{port}} {{\n    bind 127.0.0.1\n    kubernetes {z} in-addr.arpa ip6.arpa {{\n"
                f"        manifests {CLUSTER_FIXTURE}\n        pods insecure\n    }}\n}}\n")
    hosts = scenario_hosts(work)
    return Scenario(corefile, hosts.dnsmasq, queries, dnsmasq_queries=hosts.queries)


def scenario_kubeadm(work: Path, autopath: bool = False) -> Scenario:
    """kubeadm's stock Corefile (its HTTP endpoints left out: health, ready, prometheus, reload) serving
    the cluster fixture with cache and forward, the bench client a Pod in testns (127.0.0.1); with
    `autopath`, `autopath @kubernetes` and `pods verified` added. The queries are a Pod's with ndots:5:
    names under its namespace's search element (which autopath works on: the chain, every time), others
    (the hot path), and outside names with the search suffix (autopath walks to the upstream's answer)."""
    z = "cluster.local"
    manifests = work / "kubeadm-manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "cluster.yaml").write_text(CLUSTER_FIXTURE.read_text())
    (manifests / "bench-pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bench, namespace: testns}\n"
        "status: {phase: Running, podIP: 127.0.0.1, podIPs: [{ip: 127.0.0.1}]}\n")
    hosts = work / "hosts-kubeadm"
    hosts.write_text("10.0.0.1 bench.example.org\n192.0.2.80 example.com\n")
    up_port = free_port()
    names = [f"my-svc.testns.svc.{z} A", f"headless.testns.svc.{z} A", f"_http._tcp.my-svc.testns.svc.{z} SRV",
             f"kubernetes.default.svc.{z} A", "11.0.96.10.in-addr.arpa PTR", "example.com A",
             f"example.com.testns.svc.{z} A", f"kubernetes.default.testns.svc.{z} A",
             f"nope.default.svc.{z} A"]
    # No name that exists nowhere under the Pod's own search element: the upstream (dnsmasq) answers its
    # NXDOMAIN without an SOA, which no cache keeps, so autopath's walk to it would run the chain every
    # time (a real resolver's NXDOMAIN carries the SOA and is kept).
    queries = work / ("queries-kubeadm-autopath" if autopath else "queries-kubeadm")
    queries.write_text("\n".join(names) + "\n")
    corefile = (".:{port} {\n    bind 127.0.0.1\n    errors\n" + ("    autopath @kubernetes\n" if autopath else "")
                + f"    kubernetes {z} in-addr.arpa ip6.arpa {{\n        manifests {manifests}\n"
                f"        pods {'verified' if autopath else 'insecure'}\n        fallthrough in-addr.arpa ip6.arpa\n"
                f"        ttl 30\n    }}\n    forward . 127.0.0.1:{up_port} {{\n        max_concurrent 1000\n    }}\n"
                "    cache 30\n    loop\n    loadbalance\n}\n")
    yardstick = scenario_hosts(work)
    return Scenario(corefile, yardstick.dnsmasq, queries, dnsmasq_queries=yardstick.queries,
                    upstream=["--no-resolv", f"--addn-hosts={hosts}", "--local=/#/"], upstream_port=up_port)


SCENARIOS = {
    "hosts": lambda work: scenario_hosts(work),
    "cache": lambda work: scenario_hosts(work, cache=True),
    "nxdomain": scenario_nxdomain,
    "forward": scenario_forward,
    "cluster": scenario_cluster,
    "kubeadm": lambda work: scenario_kubeadm(work),
    "kubeadm-autopath": lambda work: scenario_kubeadm(work, autopath=True),
}


def report(name: str, results: dict[str, list[Result]]) -> None:
    print(f"\n== {name}: median of {len(results['portolan'])} round(s)")
    med: dict[str, dict[str, float]] = {}
    for server, rs in results.items():
        med[server] = {k: statistics.median(getattr(r, k) for r in rs)
                       for k in ("qps", "cpu_us", "avg_ms", "rss", "lost", "p99_ms", "fixed_avg_ms", "fixed_lost")}
        m = med[server]
        print(f"{server:9s} qps {m['qps']:10.0f}  cpu/query {m['cpu_us']:7.1f} µs  avg latency {m['avg_ms']:7.3f} ms"
              f"  lost {m['lost']:5.0f}  rss {m['rss']:6.1f} MB  @{FIXED_QPS}qps: avg {m['fixed_avg_ms']:.3f} ms"
              f" p99 {m['p99_ms']:.3f} ms lost {m['fixed_lost']:.0f}")
    p, d = med["portolan"], med["dnsmasq"]
    print(f"ratio     qps {p['qps'] / d['qps']:10.2f}  cpu/query {p['cpu_us'] / d['cpu_us']:7.2f}"
          f"     avg latency {p['avg_ms'] / d['avg_ms']:7.2f}   p99@{FIXED_QPS} {p['p99_ms'] / d['p99_ms']:.2f}")


def run_scenario(name: str, seconds: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sc = SCENARIOS[name](work)
        upstream = start_dnsmasq(work, sc.upstream_port, sc.upstream, cpu=CLIENT_CPU) if sc.upstream else None
        results: dict[str, list[Result]] = {"portolan": [], "dnsmasq": []}
        try:
            for rnd in range(rounds):
                order = ["portolan", "dnsmasq"] if rnd % 2 == 0 else ["dnsmasq", "portolan"]
                for server in order:
                    port = free_port()
                    proc = (start_portolan(work, port, sc.corefile) if server == "portolan"
                            else start_dnsmasq(work, port, sc.dnsmasq))
                    queries = sc.dnsmasq_queries if server == "dnsmasq" and sc.dnsmasq_queries else sc.queries
                    try:
                        wait_udp(port, queries.read_text().split()[0])
                        res = run_dnsperf(proc.pid, port, queries, seconds)
                        res.fixed_avg_ms, res.p99_ms, res.fixed_lost = run_fixed_rate(port, queries, seconds)
                        results[server].append(res)
                    finally:
                        stop(proc)
        finally:
            if upstream is not None:
                stop(upstream)
        report(name, results)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=[*sorted(SCENARIOS), "all"])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ensure_tools()
    for name in (SCENARIOS if args.scenario == "all" else [args.scenario]):
        run_scenario(name, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
