"""Side-by-side DNS benchmark: `portolan dns` and dnsmasq, same queries, same machine, same run.

    python bench/dnsbench.py SCENARIO [--seconds 10] [--rounds 3]     (SCENARIO: hosts, cache)

Each server is pinned to core 0 (taskset) and dnsperf runs on core 1, over loopback only. The
servers alternate within every round so drift on a shared machine hits both alike. Reported per
server: maximum QPS (dnsperf, 100 outstanding queries), the server's own CPU time per answered
query in µs (utime+stime from /proc, which survives noise better than QPS), lost queries, RSS,
and the portolan/dnsmasq ratios. Installs dnsperf, dnsmasq and taskset from Debian if missing.
"""

from __future__ import annotations

import argparse
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

from tests.server import free_port  # noqa: E402

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


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else 0.0


@dataclass
class Result:
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


def wait_udp(port: int, deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        r = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=1", "+short",
                            "bench.example.org"], capture_output=True, text=True)
        if r.stdout.strip():
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
    lat = sorted(float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if line.startswith("> "))
    lost_m = re.search(r"Queries lost:\s+(\d+)", out)
    if not lat:
        raise RuntimeError(f"no latencies from dnsperf:\n{out[-2000:]}")
    return statistics.fmean(lat) * 1000, lat[int(len(lat) * 0.99) - 1] * 1000, int(lost_m.group(1)) if lost_m else -1


def start_dnsmasq(work: Path, port: int, hosts: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", "-c", SERVER_CPU, "dnsmasq", "--keep-in-foreground", "--user=root",
                             f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces",
                             "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "--log-facility=-",
                             f"--pid-file={work / 'dnsmasq.pid'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_portolan(work: Path, port: int, corefile: str) -> subprocess.Popen[bytes]:
    cf = work / "Corefile"
    cf.write_text(corefile.replace("{port}", str(port)))
    exe = shutil.which("portolan") or sys.exit("install portolan first: pip install -e .")
    return subprocess.Popen(["taskset", "-c", SERVER_CPU, exe, "dns", "-quiet", "-conf", str(cf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def scenario_hosts(work: Path, cache: bool = False) -> tuple[Path, str, Path]:
    """One name from a hosts file. With `cache`, portolan answers it from its cache (the hot path)."""
    hosts = work / "hosts"
    hosts.write_text("10.0.0.1 bench.example.org\n")
    queries = work / "queries"
    queries.write_text("bench.example.org A\n")
    cache_line = "    cache 30\n" if cache else ""
    corefile = f".:{{port}} {{\n    bind 127.0.0.1\n{cache_line}    hosts {hosts}\n}}\n"
    return hosts, corefile, queries


SCENARIOS = {
    "hosts": lambda work: scenario_hosts(work),
    "cache": lambda work: scenario_hosts(work, cache=True),
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    ensure_tools()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hosts, corefile, queries = SCENARIOS[args.scenario](work)
        results: dict[str, list[Result]] = {"portolan": [], "dnsmasq": []}
        for rnd in range(args.rounds):
            order = ["portolan", "dnsmasq"] if rnd % 2 == 0 else ["dnsmasq", "portolan"]
            for server in order:
                port = free_port()
                proc = (start_portolan(work, port, corefile) if server == "portolan"
                        else start_dnsmasq(work, port, hosts))
                try:
                    wait_udp(port)
                    res = run_dnsperf(proc.pid, port, queries, args.seconds)
                    res.fixed_avg_ms, res.p99_ms, res.fixed_lost = run_fixed_rate(port, queries, args.seconds)
                    results[server].append(res)
                finally:
                    stop(proc)
        report(args.scenario, results)


if __name__ == "__main__":
    main()
