"""secondary: serve zones transferred (AXFR) from a primary server, kept fresh by their SOA's timers.

## Syntax

```
secondary [ZONES...] {
    transfer from ADDRESS...
    fallthrough [ZONES...]
}
```

* **ZONES**: the zones transferred and served; default the block's zones.
* `transfer from`: the primaries, tried in order until one answers: `IP`, `IP:PORT` (port 53 by
  default) or a resolv.conf-style file of `nameserver` lines. It may be repeated; at least one is
  required. Re-exporting the zone to other secondaries is the *transfer* plugin's job (`transfer to`
  in the same block).
* `fallthrough [ZONES]`: a name the zone does not have (NXDOMAIN) goes to the next plugin.

The zone is transferred when the server starts, without holding the start-up back: until the first
transfer succeeds its names are SERVFAIL, and it is retried after 0.25 s, doubling up to 10 s,
indefinitely. Then, as CoreDNS does (RFC 1034 §4.3.5): every SOA REFRESH seconds the primaries'
SOA serial is asked over TCP, and the zone transferred again if it is newer (RFC 1982); if no
primary answers (or the transfer fails) it is tried again every RETRY seconds, and once EXPIRE
seconds have passed since the last refresh that worked, the zone answers SERVFAIL until a primary
answers again. Each wait has a random jitter (up to 5 s before a refresh, 2 s before a retry, and at
most a quarter of the interval). A transfer that fails part-way (an error, a record outside the
zone, no closing SOA, more than 2,000,000 records, or longer than 60 s) changes nothing: the zone
being served stays. The zone is held in memory only: a restart transfers it again.

Answers are those of the *file* plugin for the same records (authoritative; referrals, wildcards,
CNAME chains, the SOA on negative answers); AXFR and IXFR here are REFUSED unless `transfer` answers
them. Hot path: none, as for *file*: every query runs the chain (put *cache* in front to keep
answers); the zone can change at any refresh.

CoreDNS's `catalog` (RFC 9432 catalog zones) is not supported.

## Examples

```corefile
example.org {
    secondary {
        transfer from 10.0.1.1 10.1.2.1
    }
}
```

```corefile
example.net {
    secondary {
        transfer from 10.1.2.1:5353
        fallthrough
    }
    transfer {
        to *
    }
    whoami
}
```
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from dnslib import QTYPE, RR, DNSQuestion, DNSRecord

from corefile import Dispenser
from dnsplugins.file.zone import DELEGATION, NXDOMAIN, Zone, in_zone
from dnsplugins.file.zonefile import ParsedZone, Record
from dnsplugins.forward.config import parse_to
from dnsserver import wire
from dnsserver.logs import plugin_log
from dnsserver.periodic import cancel_task
from dnsserver.plugin import Fallthrough, Next, Plugin, SetupContext, match_zone, plugin_zones
from dnsserver.request import Request
from dnsserver.wire.consts import REFUSED, SERVFAIL, TYPE_AXFR, TYPE_IXFR, TYPE_SOA

log = plugin_log("secondary")

FIRST_RETRY = 0.25  # seconds before the first transfer is tried again, doubled up to
MAX_FIRST_RETRY = 10.0
REFRESH_JITTER = 5.0
RETRY_JITTER = 2.0
TRANSFER_TIMEOUT = 60.0  # a whole transfer, every message included
QUERY_TIMEOUT = 5.0  # an SOA query
MAX_RECORDS = 2_000_000  # a primary that never ends a transfer must not fill the memory
SERIAL_HALF = 2**31  # RFC 1982: serials compare within half their space

Address = tuple[str, int]


@dataclass
class SecondaryConfig:
    """The `secondary` directive parsed: zones, where they come from, fallthrough."""

    zones: list[str]
    primaries: list[Address] = field(default_factory=list)
    fallthrough: Fallthrough = field(default_factory=Fallthrough)


def parse(d: Dispenser, ctx: SetupContext) -> SecondaryConfig:
    d.next()
    cfg = SecondaryConfig(plugin_zones(d.remaining_args(), ctx))
    while d.next_block():
        prop = d.val()
        if prop == "transfer":
            args = d.remaining_args()
            if len(args) < 2:
                raise d.arg_err()
            if args[0] != "from":
                raise d.err(f"secondary can only transfer from a primary, not {args[0]!r}")
            for a in args[1:]:
                try:
                    specs = parse_to(a, ctx)
                except ValueError as e:
                    raise d.err(str(e)) from None
                if any(s.transport != "dns" for s in specs):
                    raise d.err(f"{a!r}: zones are transferred over plain DNS (TCP) only")
                cfg.primaries += [(s.host, s.port) for s in specs]
        elif prop == "fallthrough":
            cfg.fallthrough.set(d.remaining_args(), ctx)
        elif prop == "catalog":
            raise d.err("catalog zones are not supported")
        else:
            raise d.unknown_property()
    if not cfg.primaries:
        raise d.err("secondary zones require a transfer from property")
    return cfg


# -- the wire: SOA queries and AXFR over TCP -----------------------------------------------------------


class TransferError(Exception):
    """A transfer or SOA query that gave nothing usable."""


async def _exchange(primary: Address, query: DNSRecord, on_message: Callable[[DNSRecord], bool],
                    timeout: float) -> None:
    """Send `query` over TCP and hand each reply message to `on_message` until it returns True."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(*primary)
        try:
            data = query.pack()
            writer.write(struct.pack("!H", len(data)) + data)
            await writer.drain()
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                msg = DNSRecord.parse(await reader.readexactly(size))
                if msg.header.id != query.header.id:
                    raise TransferError(f"reply with ID {msg.header.id}, not {query.header.id}")
                if msg.header.rcode != 0:
                    raise TransferError(f"rcode {wire.rcode_name(msg.header.rcode)}")
                if on_message(msg):
                    return
        finally:
            writer.close()


def _query(origin: str, qtype: int) -> DNSRecord:
    q = DNSRecord(q=DNSQuestion(origin, qtype))
    q.header.id = random.randrange(1, 65536)
    q.header.rd = 0
    return q


async def primary_serial(primary: Address, origin: str, timeout: float = QUERY_TIMEOUT) -> int:
    """The SOA serial `primary` has for `origin` (over TCP, as CoreDNS asks, against spoofing)."""
    found: list[int] = []

    def take(msg: DNSRecord) -> bool:
        found.extend(int(r.rdata.times[0]) for r in msg.rr if r.rtype == TYPE_SOA)
        return True

    await _exchange(primary, _query(origin, TYPE_SOA), take, timeout)
    if not found:
        raise TransferError("no SOA in the answer")
    return found[0]


async def axfr(primary: Address, origin: str, timeout: float = TRANSFER_TIMEOUT,
               max_records: int = MAX_RECORDS) -> Zone:
    """The zone `origin` transferred whole from `primary` (RFC 5936: SOA first, records, SOA last)."""
    records: list[RR] = []

    def take(msg: DNSRecord) -> bool:
        for r in msg.rr:
            if not records and r.rtype != TYPE_SOA:
                raise TransferError("the transfer does not start with the SOA")
            if records and r.rtype == TYPE_SOA:
                return True  # the closing SOA
            if not in_zone(str(r.rname).lower(), origin):
                raise TransferError(f"record outside the zone: {r.rname}")
            records.append(r)
            if len(records) > max_records:
                raise TransferError(f"more than {max_records} records")
        return False

    await _exchange(primary, _query(origin, TYPE_AXFR), take, timeout)
    where = f"axfr:{primary[0]}:{primary[1]}"
    soa = Record(records[0], where, 0)
    return Zone(ParsedZone(origin, [soa, *(Record(r, where, 0) for r in records[1:])], soa))


def _why(e: BaseException) -> str:
    """An exception as a log line's reason (a timeout's text is empty: its type says it)."""
    return str(e) or type(e).__name__


def serial_less(a: int, b: int) -> bool:
    """RFC 1982: serial `a` is older than `b`."""
    return a != b and ((a < b and b - a < SERIAL_HALF) or (a > b and a - b > SERIAL_HALF))


# -- one zone and its timers ---------------------------------------------------------------------------


class SecondaryZone:
    """One zone: what is served, and the task that keeps it fresh."""

    def __init__(self, origin: str, primaries: list[Address], *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 jitter: Callable[[float], float] = lambda cap: random.uniform(0, cap)) -> None:
        self.origin = origin
        self.primaries = primaries
        self.zone: Zone | None = None
        self.expired = False
        self.transfers = 0
        self.refreshed_at = 0.0  # when a primary last confirmed the zone (a transfer or the same serial)
        # Injectable, so that tests run the SOA timers without waiting for them.
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self.task: asyncio.Task[None] | None = None

    def timers(self) -> tuple[float, float, float]:
        """REFRESH, RETRY, EXPIRE of the zone's SOA, in seconds (at least 1 each)."""
        assert self.zone is not None
        times = self.zone.soa.rdata.times
        return max(int(times[1]), 1), max(int(times[2]), 1), max(int(times[3]), 1)

    async def transfer_in(self) -> None:
        """AXFR from the first primary that gives a whole zone; raises TransferError if none does."""
        errors = []
        for p in self.primaries:
            try:
                zone = await axfr(p, self.origin)
            except (TransferError, OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                log.error("Failed to transfer `%s' from %s:%d: %s", self.origin, p[0], p[1], _why(e))
                errors.append(f"{p[0]}:{p[1]}: {_why(e)}")
                continue
            self.zone = zone
            self.expired = False
            self.transfers += 1
            self.refreshed_at = self._clock()
            log.info("Transferred: %s from %s:%d (serial %d, %d records)", self.origin, p[0], p[1], zone.serial,
                     zone.size)
            return
        raise TransferError("; ".join(errors))

    async def should_transfer(self) -> bool:
        """Whether a primary has a newer serial; raises TransferError when none answers."""
        assert self.zone is not None
        errors = []
        for p in self.primaries:
            try:
                serial = await primary_serial(p, self.origin)
            except (TransferError, OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                errors.append(f"{p[0]}:{p[1]}: {_why(e)}")
                continue
            return serial_less(self.zone.serial, serial)
        raise TransferError("; ".join(errors))

    async def refresh(self) -> bool:
        """One refresh: True if a primary confirmed or replaced the zone."""
        try:
            if await self.should_transfer():
                await self.transfer_in()
            else:
                self.refreshed_at = self._clock()
                self.expired = False
            return True
        except TransferError as e:
            log.warning("Failed refresh of %s: %s", self.origin, e)
            return False

    async def run(self) -> None:
        delay = FIRST_RETRY
        while self.zone is None:
            try:
                await self.transfer_in()
            except TransferError as e:
                log.warning("All '%s' masters failed to transfer, retrying in %gs: %s", self.origin, delay, e)
                await self._sleep(delay)
                delay = min(delay * 2, MAX_FIRST_RETRY)
        ok = True
        while True:
            refresh, retry, expire = self.timers()
            wait, cap = (refresh, REFRESH_JITTER) if ok else (retry, RETRY_JITTER)
            await self._sleep(wait + self._jitter(min(cap, wait / 4)))
            ok = await self.refresh()
            if not ok and self._clock() - self.refreshed_at >= expire and not self.expired:
                self.expired = True
                log.error("Zone %s is expired: no primary answered for %ds", self.origin, expire)

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run(), name=f"secondary {self.origin}")

    async def stop(self) -> None:
        task, self.task = self.task, None
        await cancel_task(task)


class Secondary(Plugin):
    """`secondary`: zones transferred from primaries, answered as *file* answers its zones."""

    name = "secondary"

    def __init__(self, cfg: SecondaryConfig) -> None:
        self.cfg = cfg
        self.zones = {z: SecondaryZone(z, cfg.primaries) for z in cfg.zones}
        self.origins = list(self.zones)

    async def start(self) -> None:
        for z in self.zones.values():
            z.start()

    async def stop(self) -> None:
        for z in self.zones.values():
            await z.stop()

    def transfer(self, zone: str) -> list[RR] | None:
        """The Transferer protocol (dnsplugins.transfer): the zone's records, SOA first and last."""
        z = self.zones.get(zone)
        if z is None or z.zone is None or z.expired:
            return None
        return z.zone.axfr

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        origin = match_zone(self.origins, req.name)
        if origin is None:
            return await next(req)
        if req.qtype in (TYPE_AXFR, TYPE_IXFR):
            return req.reply(REFUSED)  # only reached when no `transfer` in the block took it
        sz = self.zones[origin]
        zone = sz.zone
        if zone is None or sz.expired:
            return req.reply(SERVFAIL)
        found = zone.lookup(req.name, req.qtype, req.do)
        if found.kind == NXDOMAIN and self.cfg.fallthrough.covers(req.name):
            return await next(req)
        reply = req.reply(wire.NXDOMAIN if found.kind == NXDOMAIN else 0, aa=found.kind != DELEGATION)
        reply.rr, reply.auth, reply.ar = found.answer, found.ns, found.extra
        return reply


def setup(d: Dispenser, ctx: SetupContext) -> Secondary:
    return Secondary(parse(d, ctx))


__all__ = ["QTYPE", "Secondary", "SecondaryConfig", "SecondaryZone", "axfr", "parse", "primary_serial", "setup"]
