"""Shared pieces of the fault drills (issue 17): a bounded dnsperf load, a misbehaving upstream, and
process numbers from /proc. Every load here is bounded in both rate and duration, on loopback only."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DNSPERF = shutil.which("dnsperf") or "dnsperf"


@dataclass
class PerfResult:
    """What dnsperf reports for one run."""

    sent: int
    completed: int
    lost: int
    rcodes: dict[str, int]
    max_ms: float
    out: str


def _num(pattern: str, out: str) -> float:
    m = re.search(pattern, out)
    if not m:
        raise AssertionError(f"dnsperf output lacks {pattern!r}:\n{out}")
    return float(m.group(1))


def parse_dnsperf(out: str) -> PerfResult:
    codes = dict((k, int(v)) for k, v in re.findall(r"(\w+) (\d+) \(", out.split("Response codes:", 1)[-1]
                                                     .split("\n", 1)[0]))
    return PerfResult(sent=int(_num(r"Queries sent:\s+(\d+)", out)),
                      completed=int(_num(r"Queries completed:\s+(\d+)", out)),
                      lost=int(_num(r"Queries lost:\s+(\d+)", out)), rcodes=codes,
                      max_ms=_num(r"Average Latency \(s\):.*max ([\d.]+)\)", out) * 1000 if "Average Latency" in out
                      else 0.0, out=out)


class DnsPerf:
    """dnsperf in the background: `seconds` long at `qps` queries a second at most (both bounded), with
    `outstanding` queries in flight at most and a query counted lost after `timeout` seconds."""

    def __init__(self, port: int, queries: Path, seconds: float, qps: int = 2000, outstanding: int = 100,
                 timeout: float = 2.0) -> None:
        assert seconds <= 120, "drills keep their load bounded"
        assert qps <= 20000, "drills keep their load bounded"
        self.argv = [DNSPERF, "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds),
                     "-Q", str(qps), "-q", str(outstanding), "-t", str(timeout)]
        self.seconds = seconds
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> DnsPerf:
        self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.STDOUT)
        return self

    async def result(self) -> PerfResult:
        assert self.proc is not None
        try:
            out, _ = await asyncio.wait_for(self.proc.communicate(), self.seconds + 30)
        except TimeoutError:
            self.proc.kill()  # our own child, by its handle
            await self.proc.wait()
            raise
        return parse_dnsperf(out.decode(errors="replace"))


def queries_file(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def rss_kb(pid: int) -> int:
    m = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(m.group(1)) if m else 0


def open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


class Misbehaving(asyncio.DatagramProtocol):
    """A UDP resolver on loopback that misbehaves as `mode` says, changeable at any time:

    ok (NOERROR, no records), slow (the same after `delay` seconds), garble (the reply cut inside its
    question, and its counts scrambled), otherid (a well-formed reply under another ID), silent
    (nothing). Built from the query's bytes alone, so it keeps up with dnsperf."""

    def __init__(self, mode: str = "ok", delay: float = 2.0) -> None:
        self.mode = mode
        self.delay = delay
        self.seen = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def start(self) -> Misbehaving:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        self.seen += 1
        # Header: same ID, QR+RD+RA, NOERROR; the question echoed; no other sections (EDNS dropped).
        end = data.index(0, 12) + 5 if 0 in data[12:] else len(data)
        reply = data[:2] + bytes([0x81, 0x80]) + b"\x00\x01\x00\x00\x00\x00\x00\x00" + data[12:end]
        mode = self.mode
        if mode == "silent":
            return
        if mode == "garble":
            reply = reply[:2] + b"\x81\x80\x00\x07\x00\x09" + reply[8:] + b"\xc0\xff"
            reply = reply[: len(reply) - 6]
        elif mode == "otherid":
            reply = bytes([data[0] ^ 0x5A, data[1] ^ 0xA5]) + reply[2:]
        if mode == "slow":
            asyncio.get_running_loop().call_later(self.delay, self._send, reply, addr)
        else:
            self._send(reply, addr)

    def _send(self, reply: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


async def poll(check: Callable[[], object], timeout: float, interval: float = 0.05) -> float:
    """Seconds until `check()` (a plain callable) is true; fails after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        await asyncio.sleep(interval)
    raise AssertionError(f"not true within {timeout}s")
