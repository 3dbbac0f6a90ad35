"""Integration helpers: a real `portolan dns` process on loopback, queried with real `dig`.

The process is started exactly as an operator would (`portolan dns -conf FILE`), and readiness is
its startup banner on stdout (printed only after every listener is bound), never a sleep.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PORTOLAN = shutil.which("portolan") or ""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host` right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


class Process:
    """A child process whose output lines are collected in the background."""

    def __init__(self, argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Block until an output line matches `pattern`; fail with everything printed so far."""
        rx = re.compile(pattern)
        for line in self.lines:
            m = rx.search(line)
            if m:
                return m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; output:\n" + "\n".join(self.lines))
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process exited ({self.proc.wait()}) before {pattern!r}; output:\n"
                                     + "\n".join(self.lines))
            self.lines.append(line)
            m = rx.search(line)
            if m:
                return m

    def drain(self) -> list[str]:
        while True:
            try:
                line = self._q.get_nowait()
            except queue.Empty:
                return self.lines
            if line is None:
                return self.lines
            self.lines.append(line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.drain()
        return self.proc.returncode


class DnsServer(Process):
    """`portolan dns -conf <dir>/Corefile`; the Corefile text may use {port} for the DNS port."""

    def __init__(self, corefile: str, workdir: Path, port: int | None = None, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.corefile = workdir / "Corefile"
        self.corefile.write_text(corefile.replace("{port}", str(self.port)))
        assert PORTOLAN, "the portolan console script is not installed (pip install -e .)"
        full_env = dict(os.environ, **(env or {}))
        super().__init__([PORTOLAN, "dns", "-conf", str(self.corefile), *args], cwd=str(workdir), env=full_env)
        self.wait_for(r"^portolan-\d")

    def dig(self, *args: str) -> Dig:
        return dig("127.0.0.1", self.port, *args)


def load_error(corefile: str, workdir: Path) -> str:
    """What `portolan dns` prints when `corefile` (text, written to workdir/Corefile) does not load; fails
    if it exits 0 or prints its startup banner (every listener bound) first."""
    path = workdir / "Corefile"
    path.write_text(corefile)
    res = subprocess.run([PORTOLAN, "dns", "-conf", str(path), "-dns.port", str(free_port())], capture_output=True,
                         text=True, timeout=30, cwd=workdir)
    assert res.returncode != 0, res
    assert not re.search(r"^portolan-\d", res.stdout, re.M), res.stdout
    return res.stdout + res.stderr


@dataclass
class Dig:
    """The parts of dig's output a test asserts on. `malformed` is dig's own parser complaining."""

    status: str = ""
    flags: set[str] = field(default_factory=set)
    answer: list[str] = field(default_factory=list)
    authority: list[str] = field(default_factory=list)
    additional: list[str] = field(default_factory=list)
    question: list[str] = field(default_factory=list)
    edns: str = ""
    raw: str = ""
    msg_size: int = 0
    malformed: bool = False

    def rdata(self) -> list[str]:
        """The answer section's data fields (what follows owner, TTL, class, type)."""
        return [line.split(None, 4)[4] for line in self.answer]


def _norm(line: str) -> str:
    return " ".join(line.split())


def parse_dig(out: str) -> Dig:
    d = Dig(raw=out, malformed="malformed message packet" in out)
    sect = None
    for line in out.splitlines():
        m = re.search(r"status: (\w+)", line)
        if m and "->>HEADER<<-" in line:
            d.status = m.group(1)
            continue
        m = re.match(r";; flags: ([a-z ]*);", line)
        if m:
            d.flags = set(m.group(1).split())
            continue
        if line.startswith("; EDNS:"):
            d.edns = line
            continue
        m = re.match(r";; MSG SIZE\s+rcvd: (\d+)", line)
        if m:
            d.msg_size = int(m.group(1))
            continue
        m = re.match(r";; (\w+) SECTION:", line)
        if m:
            sect = m.group(1)
            continue
        if not line.strip():
            sect = None
            continue
        if sect == "QUESTION":
            d.question.append(_norm(line.lstrip(";")))
        elif sect == "ANSWER":
            d.answer.append(_norm(line))
        elif sect == "AUTHORITY":
            d.authority.append(_norm(line))
        elif sect == "ADDITIONAL":
            d.additional.append(_norm(line))
    return d


def dig(server: str, port: int, *args: str, timeout: float = 10.0) -> Dig:
    cmd = ["dig", f"@{server}", "-p", str(port), "+tries=1", "+time=3", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    out = res.stdout + res.stderr
    if res.returncode not in (0,) and "status:" not in out:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{out}")
    d = parse_dig(out)
    # Every reply must satisfy BIND's own message parser, whatever else the test checks.
    assert not d.malformed, f"dig says the reply is malformed:\n{out}"
    return d


def metric(text: str, metric_name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text `text` whose labels include `labels`; fails if absent.

    Label order does not matter (prometheus_client sorts them)."""
    for line in text.splitlines():
        if not line.startswith(metric_name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}") + 1]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {metric_name} {labels} in:\n" + "\n".join(
        x for x in text.splitlines() if x.startswith(metric_name)))


def _proc_mb(path: str, key: str) -> float:
    """The ``key:  N kB`` line of a /proc file in MB (0 if the process is gone)."""
    try:
        m = re.search(rf"^{key}:\s+(\d+) kB", Path(path).read_text(), re.M)
    except OSError:
        return 0.0
    return int(m.group(1)) / 1024 if m else 0.0


def rss_mb(pid: int) -> float:
    """A process's resident memory in MB (0 if it is gone), as the benchmarks report it."""
    return _proc_mb(f"/proc/{pid}/status", "VmRSS")


def pss_mb(pid: int) -> float:
    """Proportional set size: shared pages split between the processes sharing them. Summing RSS over
    nginx's forked workers would count the master's configuration once per worker."""
    return _proc_mb(f"/proc/{pid}/smaps_rollup", "Pss")
