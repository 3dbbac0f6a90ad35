"""transfer: outgoing zone transfers (AXFR, and IXFR answered in full) of zones other plugins serve.

## Syntax

```
transfer [ZONES...] {
    to ADDRESS...
}
```

* **ZONES** are the zones transfers are answered for; default the server block's zones. A transfer
  also needs a plugin of the same block that serves the zone and can hand over its records: today
  that is *file*.
* `to` lists who may transfer: `*` (anyone), IP addresses, `IP:PORT` (only the address is
  compared) or networks in CIDR notation. `to` may be repeated; at least one is required.

`transfer` may be used several times in a block; for a query the one with the longest matching
zone applies.

AXFR and IXFR queries:

* over UDP: REFUSED;
* for a name outside every ZONES: passed to the next plugin;
* from an address not in `to`: REFUSED;
* for a zone no plugin transfers (or a name that is not a zone's apex): passed to the next plugin
  (*file* then answers REFUSED);
* otherwise the whole zone, SOA first and last, in as many TCP messages as it needs (each under
  16 KiB, so that every name compression pointer is valid). An IXFR (which must carry the client's
  SOA in its authority section, else SERVFAIL) whose serial is the zone's or newer (RFC 1982) gets
  the zone's SOA alone; an older one gets the full zone, which RFC 1995 allows in place of the
  differences.

Each transfer is logged: `[INFO] plugin/transfer: Outgoing transfer of N records of zone "Z" to IP
for S SOA serial`.

## Examples

```corefile
example.org {
    file db.example.org
    transfer {
        to *
    }
}
```

```corefile
. {
    file db.example.org example.org
    file db.example.net example.net
    transfer example.org example.net {
        to 10.240.1.1 192.0.2.0/24
        to 2001:db8::53
    }
}
```

## Writing a plugin that transfers

A plugin offers its zones by having a method `transfer(zone: str) -> list[RR] | None`: every record of
`zone` (lower-case, with the trailing dot), the SOA first and last, or None if it does not serve
exactly that zone. The list may be shared: the transfer plugin never changes it, and keeps how it
cut the list into messages for as long as the same list object comes back, so a plugin should hand
out one list per version of the zone. The plugins of the block are asked in chain order when the
configuration starts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from dnslib import RR, DNSRecord
from dnslib.label import DNSBuffer

from corefile import Dispenser
from dnsserver.logs import plugin_log
from dnsserver.plugin import Next, Plugin, SetupContext, match_zone, plugin_zones
from dnsserver.request import Request
from dnsserver.wire.consts import REFUSED, SERVFAIL, TYPE_AXFR, TYPE_IXFR, TYPE_SOA

log = plugin_log("transfer")

# A TCP message may hold 64 KiB, but a compression pointer holds a 14-bit offset: names past 16 KiB
# cannot be pointed at (dnsserver.dnslib_ext stops dnslib from writing wrapped pointers there). Each
# transfer message stays below 16 KiB, where every name can be compressed.
SAFE_MESSAGE = 0x3FFF
# Room for what the server adds to every message: header (12), question (at most 255 + 4), an OPT (11).
MESSAGE_OVERHEAD = 512

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@runtime_checkable
class Transferer(Protocol):
    """A plugin whose zones may be transferred (file): every record of `zone`, SOA first and last."""

    def transfer(self, zone: str) -> list[RR] | None: ...


class TransferReply(DNSRecord):  # type: ignore[misc]  # dnslib has no annotations: its DNSRecord is Any to mypy
    """The first message of a reply that goes on over several TCP messages; `more` holds the rest.

    The server finalizes each of them like any reply (ID, question, EDNS) and frames them one after
    the other on the connection (see Dispatcher.handle).
    """

    more: list[DNSRecord]


@dataclass
class Xfr:
    """One `transfer` directive: its zones and who may transfer them."""

    zones: list[str]
    anyone: bool = False
    to: list[Network] = field(default_factory=list)

    def allows(self, client_ip: str) -> bool:
        if self.anyone:
            return True
        try:
            ip = ipaddress.ip_address(client_ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d
        return any(ip in net for net in self.to)


def parse_to(value: str) -> Network:
    """`to` ADDRESS: an IP, [IPv6]:PORT / IPv4:PORT (the port is not compared), or a CIDR network."""
    text = value
    if text.startswith("["):  # [2001:db8::1]:53
        end = text.find("]")
        if end < 0:
            raise ValueError(value)
        text = text[1:end]
    elif text.count(":") == 1:  # 192.0.2.1:53
        text = text.split(":", 1)[0]
    return ipaddress.ip_network(text, strict=False) if "/" in text else ipaddress.ip_network(text)


def serial_newer_or_same(theirs: int, ours: int) -> bool:
    """RFC 1982 comparison: is serial `theirs` equal to or after `ours`?"""
    diff = (theirs - ours) % (1 << 32)
    return diff == 0 or diff < (1 << 31)


def wire_size(rr: RR) -> int:
    """The record's size packed on its own: an upper bound for its share of a compressed message."""
    buf = DNSBuffer()
    rr.pack(buf)
    return len(buf.data)


def split(records: list[RR], budget: int = SAFE_MESSAGE - MESSAGE_OVERHEAD) -> list[list[RR]]:
    """`records` in order, cut into runs that each fit in one message."""
    chunks: list[list[RR]] = []
    current: list[RR] = []
    size = 0
    for rr in records:
        n = wire_size(rr)
        if current and size + n > budget:
            chunks.append(current)
            current, size = [], 0
        current.append(rr)
        size += n
    if current:
        chunks.append(current)
    return chunks


class Transfer(Plugin):
    """`transfer`: answers AXFR and IXFR for the zones of the plugins that can hand them out."""

    name = "transfer"

    def __init__(self, xfrs: list[Xfr], ctx: SetupContext | None = None) -> None:
        self.xfrs = xfrs
        self.ctx = ctx
        self.transferers: list[Transferer] = []
        # zone -> (the record list last transferred, its messages). Transferers hand out the same list
        # until the zone reloads, so sizing every record again on each transfer is wasted work.
        self._chunks: dict[str, tuple[list[RR], list[list[RR]]]] = {}

    async def start(self) -> None:
        # Sibling plugins are only known once the whole block is built; ctx.block is set by then.
        block = self.ctx.block if self.ctx is not None else None
        plugins = block.plugins if block is not None else []
        self.transferers = [p for p in plugins if p is not self and isinstance(p, Transferer)]

    def _match(self, name: str) -> Xfr | None:
        best: Xfr | None = None
        best_len = -1
        for x in self.xfrs:
            z = match_zone(x.zones, name)
            if z is not None and len(z) > best_len:
                best, best_len = x, len(z)
        return best

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        if req.qtype != TYPE_AXFR and req.qtype != TYPE_IXFR:
            return await next(req)
        if req.proto == "udp":
            return req.reply(REFUSED)
        x = self._match(req.name)
        if x is None:
            return await next(req)
        if not x.allows(req.client_ip):
            return req.reply(REFUSED)
        client_serial: int | None = None
        if req.qtype == TYPE_IXFR:
            auth = req.msg.auth
            if len(auth) != 1 or auth[0].rtype != TYPE_SOA:
                return req.reply(SERVFAIL)
            client_serial = int(auth[0].rdata.times[0])
        records = None
        for p in self.transferers:
            records = p.transfer(req.name)
            if records is not None:
                break
        if not records:
            return await next(req)
        soa = records[0]
        serial = int(soa.rdata.times[0])
        if client_serial is not None and serial_newer_or_same(client_serial, serial):
            reply = req.reply(aa=True)
            reply.rr = [soa]
            log.info('Outgoing noop, incremental transfer for up to date zone "%s" to %s '
                     'for %d SOA serial', req.name, req.client_ip, serial)
            return reply
        return self._messages(req, records, serial)

    def _split(self, zone: str, records: list[RR]) -> list[list[RR]]:
        cached = self._chunks.get(zone)
        if cached is None or cached[0] is not records:
            cached = self._chunks[zone] = (records, split(records))
        return cached[1]

    def _messages(self, req: Request, records: list[RR], serial: int) -> DNSRecord:
        chunks = self._split(req.name, records)
        first = req.reply(aa=True)
        reply = TransferReply(first.header, q=first.q)
        reply.rr = list(chunks[0])
        reply.more = []
        for chunk in chunks[1:]:
            msg = req.reply(aa=True)
            msg.rr = list(chunk)
            reply.more.append(msg)
        log.info('Outgoing transfer of %d records of zone "%s" to %s for %d SOA serial',
                 len(records), req.name, req.client_ip, serial)
        return reply


def parse(d: Dispenser, ctx: SetupContext) -> list[Xfr]:
    xfrs: list[Xfr] = []
    while d.next():
        missing_to = d.err("'to' is required")
        x = Xfr(plugin_zones(d.remaining_args(), ctx))
        while d.next_block():
            if d.val() != "to":
                raise d.unknown_property()
            args = d.remaining_args()
            if not args:
                raise d.arg_err()
            for a in args:
                if a == "*":
                    x.anyone = True
                    continue
                try:
                    x.to.append(parse_to(a))
                except ValueError:
                    raise d.err(f"'{a}' in 'to' is not an IP address, IP:port or CIDR network") from None
        if not x.anyone and not x.to:
            raise missing_to
        xfrs.append(x)
    return xfrs


def setup(d: Dispenser, ctx: SetupContext) -> Transfer:
    return Transfer(parse(d, ctx), ctx)
