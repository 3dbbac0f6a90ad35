"""dns64: make AAAA answers from A records for IPv6-only clients behind NAT64 (RFC 6147).

## Syntax

```
dns64 [PREFIX]
dns64 [PREFIX] {
    prefix PREFIX
    translate_all
    allow_ipv4
}
```

* **PREFIX** (or `prefix`) is the IPv6 prefix the IPv4 addresses are embedded in, as RFC 6052 lays
  them out; default the well-known `64:ff9b::/96`. Its length must be 32, 40, 48, 56, 64 or 96.
* `translate_all` translates every AAAA reply but name errors, even one that has AAAA records.
* `allow_ipv4` translates queries that came in over IPv4 too; by default only IPv6 clients' are.

An IN-class AAAA query goes through the rest of the chain first. Unless the reply is a name error, or
holds AAAA records (without `translate_all`), the name's A records are looked up again from the top of
the block's own chain (as CoreDNS's upstream lookup asks the server itself), and the reply becomes
that lookup's answer with each A record turned into an AAAA in the prefix. A synthesised record's TTL
is the A record's, capped at the original reply's SOA minimum TTL (600 without one); other answer
records (CNAMEs) are kept. The lookup's authority and additional sections and its TC bit are kept.

`coredns_dns64_requests_translated_total{server}` counts the replies synthesised.

The block does not answer from stored wire answers (the hot path) while `dns64` is in it: a store
after it (cache, hosts) holds the replies as they were before any synthesis.

## Examples

```corefile
. {
    dns64
    forward . 127.0.0.1:5301
}
```

```corefile
. {
    dns64 64:1337::/96 {
        translate_all
        allow_ipv4
    }
    forward . 127.0.0.1:5301
}
```
"""

from __future__ import annotations

import ipaddress

from dnslib import AAAA, QTYPE, RR, DNSRecord
from prometheus_client import Counter

from corefile import Dispenser
from dnsserver.metrics import REGISTRY
from dnsserver.plugin import Next, Plugin, SetupContext
from dnsserver.request import Request
from dnsserver.wire.consts import NXDOMAIN

TRANSLATED = Counter(
    "coredns_dns64_requests_translated", "Counter of DNS requests translated by dns64.", ["server"], registry=REGISTRY
)
DEFAULT_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
DEFAULT_SOA_TTL = 600  # the cap on synthesised TTLs when the original reply has no SOA (CoreDNS's)


def embed(prefix: ipaddress.IPv6Network, v4: str) -> ipaddress.IPv6Address:
    """`v4` embedded in `prefix` as RFC 6052 section 2.2 lays it out: bits 64-71 (the u octet) stay zero."""
    out = bytearray(prefix.network_address.packed)
    addr = ipaddress.IPv4Address(v4).packed
    i = prefix.prefixlen // 8
    for octet in addr:
        if i == 8:
            i += 1
        out[i] = octet
        i += 1
    return ipaddress.IPv6Address(bytes(out))


def parse_prefix(text: str) -> ipaddress.IPv6Network:
    """A translation prefix; ValueError with CoreDNS's wording."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"invalid CIDR address: {text}") from None
    if not isinstance(net, ipaddress.IPv6Network):
        raise ValueError(f'invalid netmask 32 IPv6 address: "{net}"')
    n = net.prefixlen
    if n % 8 or n < 32 or n > 96:
        raise ValueError(f'invalid prefix length "{net}"')
    return net


class Dns64(Plugin):
    """`dns64`: synthesises AAAA records from A records."""

    name = "dns64"

    def __init__(
        self,
        ctx: SetupContext,
        prefix: ipaddress.IPv6Network = DEFAULT_PREFIX,
        translate_all: bool = False,
        allow_ipv4: bool = False,
    ) -> None:
        self.ctx = ctx
        self.prefix = prefix
        self.translate_all = translate_all
        self.allow_ipv4 = allow_ipv4

    async def serve(self, req: Request, next: Next) -> DNSRecord | None:
        if req.qtype != QTYPE.AAAA or req.qclass != 1 or (req.family == 1 and not self.allow_ipv4):
            return await next(req)
        reply = await next(req)
        if reply is None or not self._translates(reply):
            return reply
        block = self.ctx.block
        if block is None:
            return reply
        # The A lookup starts at the top of the block, as a fresh query would (it passes this plugin).
        found = await block.chain(req.clone_for(req.qname, QTYPE.A))
        if found is None:
            return None  # the server answers SERVFAIL, as CoreDNS does when its lookup fails
        TRANSLATED.labels(req.server).inc()
        return self.synthesize(req, reply, found)

    def _translates(self, reply: DNSRecord) -> bool:
        if reply.header.rcode == NXDOMAIN:
            return False
        return self.translate_all or not any(r.rtype == QTYPE.AAAA for r in reply.rr)

    def synthesize(self, req: Request, original: DNSRecord, found: DNSRecord) -> DNSRecord:
        """The reply to `req`: `found` (the A lookup's reply) with its A records as AAAA records."""
        cap = next((r.rdata.minttl for r in original.auth if r.rtype == QTYPE.SOA), DEFAULT_SOA_TTL)
        out = req.reply(rcode=found.header.rcode)
        out.header.tc = found.header.tc
        for r in found.rr:
            if r.rtype == QTYPE.A:
                v6 = embed(self.prefix, str(r.rdata))
                out.add_answer(RR(r.rname, QTYPE.AAAA, r.rclass, min(r.ttl, cap), AAAA(str(v6))))
            else:
                out.add_answer(r)
        out.auth = list(found.auth)
        out.ar = [r for r in found.ar if r.rtype != QTYPE.OPT]
        return out


def setup(d: Dispenser, ctx: SetupContext) -> Dns64:
    plugin = Dns64(ctx)
    while d.next():
        args = d.remaining_args()
        if len(args) > 1:
            raise d.arg_err()
        if args:
            plugin.prefix = _prefix(d, args[0])
        while d.next_block():
            prop = d.val()
            if prop == "prefix":
                vals = d.remaining_args()
                if len(vals) != 1:
                    raise d.arg_err()
                plugin.prefix = _prefix(d, vals[0])
            elif prop == "translate_all":
                plugin.translate_all = True
            elif prop == "allow_ipv4":
                plugin.allow_ipv4 = True
            else:
                raise d.unknown_property()
    return plugin


def _prefix(d: Dispenser, text: str) -> ipaddress.IPv6Network:
    try:
        return parse_prefix(text)
    except ValueError as e:
        raise d.err(str(e)) from None
